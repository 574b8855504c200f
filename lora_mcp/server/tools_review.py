"""Tool adapters: review_captions (a job), get_caption_review, decide_captions and apply_caption_review.
pydantic-ai/LangGraph run in the worker only."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

import anyio.to_thread
from mcp.server import MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from lora_mcp.jobs.status import JobStatus
from lora_mcp.paths import confine_existing_dir, confine_existing_file
from lora_mcp.review.apply import ApplyResult, apply_review
from lora_mcp.review.decide import (
    CaptionDecision,
    DecideResult,
    ReviewPage,
    StatusFilter,
    record_decisions,
    review_page,
)
from lora_mcp.review.models import LoraType, Style
from lora_mcp.review.params import ReviewParams
from lora_mcp.review.service import start_review
from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.server.tools_dataset import Page, PageSize, with_sheet

ReviewFile = Annotated[str, Field(description="outputs.details.review_file of a review job.")]


def register(server: MCPServer, app: AppState) -> None:
    """Register the caption review tools."""

    @server.tool()
    @tool_errors
    async def review_captions(
        folder: Annotated[str, Field(description="Dataset folder of image + caption pairs (inside the roots).")],
        trigger_word: Annotated[str, Field(min_length=1, description="The LoRA's trigger word.")],
        style: Annotated[Style, Field(description="terse: comma-separated phrases; descriptive: sentences.")] = (
            Style.TERSE
        ),
        use_images: Annotated[bool, Field(description="Show the model each image (needs a vision model).")] = True,
        model: Annotated[
            str | None, Field(description="Review model name; default LORA_MCP_REVIEW_MODEL. Unset: rules only.")
        ] = None,
        lora_type: Annotated[
            LoraType, Field(description="character enables the identity-trait check (hair/eye colour...).")
        ] = LoraType.CHARACTER,
        banned_words: Annotated[list[str] | None, Field(description="Words no caption may contain.")] = None,
        caption_ext: Annotated[str, Field(description="Caption file extension.")] = "txt",
    ) -> JobStatus:
        """Review captions (rules + LLM) as a job; never changes a caption. Follow with wait_for_job; outputs.details
        holds review_file and a summary. Same arguments after a failed/cancelled review resume it."""
        params = ReviewParams.request(
            app.settings,
            folder=str(confine_existing_dir(folder, app.settings.roots)),
            trigger_word=trigger_word,
            style=style,
            lora_type=lora_type,
            use_images=use_images,
            model=model,
            caption_ext=caption_ext,
            banned_words=banned_words,
        )
        return await anyio.to_thread.run_sync(partial(start_review, app.manager, params))

    @server.tool()
    @tool_errors
    async def apply_caption_review(
        review_file: ReviewFile,
        approve: Annotated[
            Literal["all", "decided"] | list[str],
            Field(
                description='"all": every pending fix with a suggestion plus approve/edit decisions; "decided": '
                "only approve/edit decisions; or a list of image names to apply."
            ),
        ] = "all",
    ) -> ApplyResult:
        """Write approved/edited captions from a review; old ones go to a backup folder, changed ones are conflicts."""
        path = confine_existing_file(review_file, app.settings.roots, what="review_file")
        return await anyio.to_thread.run_sync(partial(apply_review, path, approve, app.settings.roots))

    @server.tool()
    @tool_errors
    async def get_caption_review(
        review_file: ReviewFile,
        page: Page = 1,
        page_size: PageSize = 16,
        status: Annotated[
            StatusFilter | None,
            Field(description="Only items with this decision; undecided = pending, decided = the other three."),
        ] = None,
    ) -> Annotated[CallToolResult, ReviewPage]:
        """A page of a review: each image's caption, suggestion, issues and decision, with a numbered contact sheet."""
        path = confine_existing_file(review_file, app.settings.roots, what="review_file")
        page_of = partial(review_page, path, app.settings.roots, page, page_size, status)
        result, sheet = await anyio.to_thread.run_sync(page_of)
        return with_sheet(result, sheet)

    @server.tool()
    @tool_errors
    async def decide_captions(
        review_file: ReviewFile,
        decisions: Annotated[list[CaptionDecision], Field(min_length=1, description="One decision per image.")],
    ) -> DecideResult:
        """Record approve/reject/edit decisions in a review file, all or none; then call apply_caption_review."""
        path = confine_existing_file(review_file, app.settings.roots, what="review_file")
        return await anyio.to_thread.run_sync(partial(record_decisions, path, decisions))
