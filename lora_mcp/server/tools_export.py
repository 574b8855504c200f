"""Tool adapter: export_lora (a trained LoRA into ComfyUI's LoRA folder or an S3-compatible bucket)."""

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
        destination: Annotated[
            Destination,
            Field(
                description="'comfyui': copy into ComfyUI's LoRA folder; 's3': upload to the configured bucket "
                "(LORA_MCP_S3_*) and get a presigned download URL."
            ),
        ] = "comfyui",
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
        previews: Annotated[
            bool, Field(description="s3 only: also upload the samples' contact sheet and the loss curve (PNG).")
        ] = False,
    ) -> ExportResult:
        """Copy a trained LoRA into ComfyUI's LoRA folder, or upload it to S3, with a sidecar JSON (trigger word)."""
        from lora_mcp.training.export import export_lora as export

        run = partial(export, app.manager, job_id, destination, checkpoint, name, previews)
        return await anyio.to_thread.run_sync(run)
