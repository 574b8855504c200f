"""Tool adapter: system_check."""

from __future__ import annotations

import anyio.to_thread
from mcp.server import MCPServer

from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.system import SystemReport, system_check


def register(server: MCPServer, state: AppState) -> None:
    """Register the system tools."""

    @server.tool(name="system_check")
    @tool_errors
    async def system_check_tool() -> SystemReport:
        """Report GPUs, AI-Toolkit install, free disk and the allowed roots, with a list of problems to fix."""
        return await anyio.to_thread.run_sync(system_check, state.settings)
