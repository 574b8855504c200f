"""Tool adapters: caption_images (a job), conform_filenames and undo_conform (quick, synchronous renames)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio.to_thread
from mcp.server import MCPServer
from pydantic import Field

from lora_mcp.captioning.files import OverwritePolicy
from lora_mcp.captioning.params import Backend, CaptionRequest, CaptionType, ExtraOption, Length
from lora_mcp.dataset.conform import DEFAULT_PATTERN, ConformResult
from lora_mcp.jobs.status import JobStatus
from lora_mcp.paths import confine_existing_dir, confine_existing_file
from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors

Folder = Annotated[str, Field(description="Dataset folder of images (inside the allowed roots).")]
Trigger = Annotated[
    str | None, Field(description="Trigger word: placed once in every caption (prefix, or as the 'name' option).")
]


def register(server: MCPServer, state: AppState) -> None:
    """Register the captioning tools."""

    @server.tool()
    @tool_errors
    async def caption_images(
        folder: Folder,
        trigger_word: Trigger = None,
        caption_type: Annotated[
            CaptionType, Field(description="Caption type or style; sd-prompt is stable-diffusion-prompt.")
        ] = "descriptive",
        length: Annotated[Length, Field(description="A named length, or a number of words (1-1000).")] = (
            "medium-length"
        ),
        extra_options: Annotated[
            list[ExtraOption],
            Field(description="Extra instructions; name refers to the person/character by the trigger word."),
        ] = [],  # noqa: B006  (never mutated; the agent sees [] as the default)
        backend: Annotated[
            Backend | None, Field(description="joycaption (local GPU), ollama, openai, template. Default: settings.")
        ] = None,
        model: Annotated[str | None, Field(description="Hub id / local path, or the server's model name.")] = None,
        overwrite: Annotated[
            OverwritePolicy, Field(description="skip existing captions, or backup them and caption again.")
        ] = OverwritePolicy.SKIP,
        batch_size: Annotated[
            int | None, Field(ge=1, le=64, description="Images per batch (GPU) or requests in flight (servers).")
        ] = None,
        caption_ext: Annotated[str, Field(description="Caption file extension AI-Toolkit reads.")] = "txt",
    ) -> JobStatus:
        """Caption every image of a folder as a job; follow it with wait_for_job (progress per image)."""
        from lora_mcp.captioning.service import start_captioning

        request = CaptionRequest(
            folder=confine_existing_dir(folder, state.settings.roots),
            trigger_word=trigger_word,
            caption_type=caption_type,
            length=length,
            extra_options=extra_options,
            backend=backend,
            model=model,
            overwrite=overwrite,
            batch_size=batch_size,
            caption_ext=caption_ext,
        )
        return await anyio.to_thread.run_sync(partial(start_captioning, state.manager, request))

    @server.tool()
    @tool_errors
    async def conform_filenames(
        folder: Folder,
        trigger_word: Trigger = None,
        pattern: Annotated[
            str, Field(description="Fields {trigger}, {index}, {slug} (caption words), {stem} (old name).")
        ] = DEFAULT_PATTERN,
        dry_run: Annotated[bool, Field(description="Only report the renames (default).")] = True,
    ) -> ConformResult:
        """Rename image+caption pairs from the trigger word and caption; writes a rename map for undo_conform."""
        from lora_mcp.dataset.conform import conform_filenames as conform

        path = confine_existing_dir(folder, state.settings.roots)
        return await anyio.to_thread.run_sync(
            partial(conform, path, pattern=pattern, trigger_word=trigger_word, dry_run=dry_run)
        )

    @server.tool()
    @tool_errors
    async def undo_conform(
        folder: Folder,
        map_file: Annotated[str, Field(description="The map_file conform_filenames returned.")],
    ) -> ConformResult:
        """Restore the names a conform_filenames run changed."""
        from lora_mcp.dataset.conform import undo_conform as undo

        path = confine_existing_dir(folder, state.settings.roots)
        raw = map_file if "/" in map_file or "\\" in map_file else str(path / map_file)
        map_path = confine_existing_file(raw, state.settings.roots, what="map_file")
        return await anyio.to_thread.run_sync(undo, path, map_path)
