"""Tool adapter: export_lora (a trained LoRA into ComfyUI's LoRA folder)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio.to_thread
from mcp.server import MCPServer
from pydantic import Field

from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.training.export import Destination, ExportResult


def register(server: MCPServer, app: AppState) -> None:
    """Register the export tool."""

    @server.tool()
    @tool_errors
    async def export_lora(
        job_id: Annotated[str, Field(description="A finished train job's id (list_jobs shows them).")],
        destination: Annotated[Destination, Field(description="Where to copy it; only ComfyUI for now.")] = "comfyui",
        checkpoint: Annotated[
            int | str | None,
            Field(
                description="A saved step (e.g. 400) or a path from get_job's outputs.checkpoints; omit for the "
                "final LoRA."
            ),
        ] = None,
        name: Annotated[
            str | None,
            Field(description="File name without .safetensors (default: the job's name); a checkpoint adds _step<N>."),
        ] = None,
    ) -> ExportResult:
        """Copy a trained LoRA into ComfyUI's LoRA folder with a sidecar JSON holding its trigger word."""
        from lora_mcp.training.export import export_lora as export

        run = partial(export, app.manager, job_id, destination, checkpoint, name)
        return await anyio.to_thread.run_sync(run)
