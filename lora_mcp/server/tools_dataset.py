"""Tool adapter: inspect_dataset. The domain module (Pillow, numpy) is imported on first call, not at start-up."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from lora_mcp.dataset.models import DatasetReport
from lora_mcp.paths import confine_existing_dir
from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.server.progress import thread_progress


def register(server: MCPServer, state: AppState) -> None:
    """Register the dataset tools."""

    @server.tool(name="inspect_dataset")
    @tool_errors
    async def inspect_dataset_tool(
        folder: Annotated[str, Field(description="Folder of training images (inside the allowed roots).")],
        ctx: Context,
        trigger_word: Annotated[
            str | None, Field(description="Trigger word every caption should contain, if any.")
        ] = None,
        resolutions: Annotated[
            list[int] | None,
            Field(description="Target side lengths for AI-Toolkit bucketing, e.g. [512, 768, 1024]."),
        ] = None,
    ) -> DatasetReport:
        """Read-only check of a training folder: decodes every image and lists problems with fixes."""
        from lora_mcp.dataset.factcache import facts_cache_for
        from lora_mcp.dataset.inspect import inspect_dataset

        path = confine_existing_dir(folder, state.settings.roots)

        progress = thread_progress(ctx, "decoded")
        cache = facts_cache_for(state.settings)
        return await anyio.to_thread.run_sync(
            partial(
                inspect_dataset,
                path,
                trigger_word=trigger_word,
                resolutions=resolutions,
                progress=progress,
                facts_cache=cache,
            )
        )
