"""Tool adapters: inspect_dataset, view_dataset, set_caption. Pillow and numpy are imported on first call, not at
start-up."""

from __future__ import annotations

import base64
from functools import partial
from typing import Annotated

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel, Field

from lora_mcp.dataset.models import DatasetReport
from lora_mcp.dataset.view import MAX_PAGE_SIZE, DatasetPage, SetCaptionResult, page_of_dataset, replace_caption
from lora_mcp.paths import confine_existing_dir
from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.server.progress import thread_progress

Page = Annotated[int, Field(ge=1, description="1-based page number.")]
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="Images per page (one contact sheet).")]


def with_sheet(model: BaseModel, sheet: bytes | None) -> CallToolResult:
    """A tool result: the model as structured content and JSON text, plus the contact sheet as a JPEG image."""
    content: list[TextContent | ImageContent] = [TextContent(type="text", text=model.model_dump_json())]
    if sheet is not None:
        content.append(ImageContent(type="image", data=base64.b64encode(sheet).decode(), mime_type="image/jpeg"))
    return CallToolResult(content=content, structured_content=model.model_dump(mode="json"))


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

    @server.tool()
    @tool_errors
    async def view_dataset(
        folder: Annotated[str, Field(description="Folder of training images (inside the allowed roots).")],
        ctx: Context,
        page: Page = 1,
        page_size: PageSize = 16,
    ) -> Annotated[CallToolResult, DatasetPage]:
        """See a dataset page: a numbered contact sheet plus each image's size, caption and problem codes."""
        from lora_mcp.dataset.factcache import facts_cache_for

        path = confine_existing_dir(folder, state.settings.roots)
        cache = facts_cache_for(state.settings)
        progress = thread_progress(ctx, "decoded")  # the first view of a big folder decodes every image
        view = partial(page_of_dataset, path, page, page_size, facts_cache=cache, progress=progress)
        result, sheet = await anyio.to_thread.run_sync(view)
        return with_sheet(result, sheet)

    @server.tool()
    @tool_errors
    async def set_caption(
        folder: Annotated[str, Field(description="Dataset folder (inside the allowed roots).")],
        image: Annotated[str, Field(description="Image path relative to the folder, as view_dataset lists it.")],
        caption: Annotated[str, Field(min_length=1, description="The full caption text to write.")],
    ) -> SetCaptionResult:
        """Replace one image's caption atomically; the old caption is backed up to _caption_backups first."""
        path = confine_existing_dir(folder, state.settings.roots)
        return await anyio.to_thread.run_sync(partial(replace_caption, path, image, caption))
