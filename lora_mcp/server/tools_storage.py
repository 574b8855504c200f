"""Tool adapter: import_dataset (images and captions from an S3-compatible bucket into a folder inside the roots)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.server.progress import thread_progress
from lora_mcp.storage.importer import ImportResult


def register(server: MCPServer, app: AppState) -> None:
    """Register the storage tools."""

    @server.tool()
    @tool_errors
    async def import_dataset(
        source: Annotated[str, Field(description="s3://bucket/prefix holding the images and caption .txt files.")],
        folder: Annotated[str, Field(description="Folder inside the roots to import into (created if missing).")],
        ctx: Context,
    ) -> ImportResult:
        """Download a dataset from S3 into a folder, skipping files already there; a large one becomes a job."""
        from lora_mcp.storage.service import import_dataset as run

        progress = thread_progress(ctx, "imported")
        call = partial(run, app.manager, source, folder, lambda done, total, _rel: progress(done, total))
        return await anyio.to_thread.run_sync(call)
