"""The review workflow as a LangGraph graph: scan -> rules -> review (a loop, one batch per step) -> write.

Why a loop and not one `Send` fan-out: LangGraph checkpoints after each superstep, and a fan-out of 100 captions is
one superstep, so a kill would lose every answer. Here each step reviews at most `concurrency` captions at once and
the checkpoint (SQLite in the job directory, `durability="sync"`) then holds their reviews: a resumed run asks the
LLM only about captions no finished step has reviewed (at most one batch is asked again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic_ai.exceptions import UnexpectedModelBehavior

from lora_mcp.review.collect import collect_captions
from lora_mcp.review.models import CaptionItem, Finding, Severity, Verdict
from lora_mcp.review.params import ReviewParams
from lora_mcp.review.reviewer import LlmReview, ReviewRequest, review_caption
from lora_mcp.review.reviewfile import FORMAT_VERSION, FindingEntry, ImageReview, ReviewDocument, write_review
from lora_mcp.review.rules import RuleSet, check_caption, duplicate_findings, rules_suggestion, rules_verdict

ProgressFn = Callable[[int, int, str], None]


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class ReviewState(TypedDict, total=False):
    """Checkpointed state: plain JSON-able values only."""

    items: list[dict[str, Any]]
    findings: dict[str, list[dict[str, Any]]]
    reviews: Annotated[dict[str, dict[str, Any]], _merge]
    created_at: str
    review_file: str


@dataclass
class ReviewRun:
    """What the nodes need besides the state (not checkpointed)."""

    params: ReviewParams
    rules: RuleSet
    reviewer: Any | None
    """A pydantic-ai agent, or None when the LLM part is skipped."""
    model: Any | None
    llm_note: str
    job_id: str | None = None
    on_progress: ProgressFn | None = None

    @property
    def folder(self) -> Path:
        return Path(self.params.folder)


def _findings(state: ReviewState, image: str) -> list[Finding]:
    return [Finding(f["code"], Severity(f["severity"]), f["message"]) for f in state["findings"].get(image, [])]


def build_graph(run: ReviewRun) -> StateGraph[ReviewState]:
    """The workflow graph for one run (compile it with a checkpointer)."""

    def scan(state: ReviewState) -> ReviewState:
        items = collect_captions(run.folder, run.params.caption_ext)
        return {"items": [asdict(i) for i in items], "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def rules(state: ReviewState) -> ReviewState:
        items = [CaptionItem(**i) for i in state["items"]]
        duplicates = duplicate_findings(items)
        p = run.params
        found = {
            item.image: [
                f.to_dict()
                for f in check_caption(item, p.trigger_word, run.rules, p.style, p.lora_type)
                + ([duplicates[item.image]] if item.image in duplicates else [])
            ]
            for item in items
        }
        return {"findings": found, "reviews": {}}

    async def review(state: ReviewState) -> ReviewState:
        done = state.get("reviews", {})
        pending = [CaptionItem(**i) for i in state["items"] if i["image"] not in done]
        batch = pending if run.reviewer is None else pending[: run.params.concurrency]
        total, finished = len(state["items"]), len(done)
        out: dict[str, dict[str, Any]] = {}

        async def one(item: CaptionItem) -> None:
            nonlocal finished
            out[item.image] = await _review_one(run, item, _findings(state, item.image))
            finished += 1
            if run.on_progress is not None:
                run.on_progress(finished, total, f"reviewed {item.image}")

        async with asyncio.TaskGroup() as group:
            for item in batch:
                group.create_task(one(item))
        return {"reviews": out}

    def more(state: ReviewState) -> str:
        return "review" if len(state.get("reviews", {})) < len(state["items"]) else "write"

    def write(state: ReviewState) -> ReviewState:
        return {"review_file": str(write_review(document(run, state), run.folder))}

    graph = StateGraph(ReviewState)
    graph.add_node("scan", scan)
    graph.add_node("rules", rules)
    graph.add_node("review", review)
    graph.add_node("write", write)
    graph.add_edge(START, "scan")
    graph.add_edge("scan", "rules")
    graph.add_conditional_edges("rules", more, ["review", "write"])
    graph.add_conditional_edges("review", more, ["review", "write"])
    graph.add_edge("write", END)
    return graph


async def _review_one(run: ReviewRun, item: CaptionItem, findings: list[Finding]) -> dict[str, Any]:
    """The review entry of one caption: the LLM's when it can answer, else the rules' verdict."""
    p = run.params
    base: dict[str, Any] = {
        "verdict": rules_verdict(findings).value,
        "reviewed_by": "rules",
        "issues": [],
        "suggested_caption": rules_suggestion(item.caption, p.trigger_word, run.rules),
        "llm_error": None,
    }
    has_text = bool(item.caption and item.caption.strip())
    if run.reviewer is None or run.model is None or not (has_text or p.use_images):
        return base
    request = ReviewRequest(
        item=item,
        findings=findings,
        trigger_word=p.trigger_word,
        style=p.style,
        lora_type=p.lora_type,
        image_path=run.folder / item.image if p.use_images else None,
    )
    try:
        answer: LlmReview = await review_caption(run.reviewer, run.model, request)
    except UnexpectedModelBehavior as exc:  # a bad answer for this caption; transport errors stop the run
        return {**base, "llm_error": str(exc)[:300]}
    # An error finding means fix even if the model found the caption fine.
    verdict = Verdict.FIX if answer.verdict == "fix" or base["verdict"] == Verdict.FIX.value else Verdict.OK
    return {
        "verdict": verdict.value,
        "reviewed_by": "llm",
        "issues": answer.issues,
        "suggested_caption": answer.suggested_caption or base["suggested_caption"],
        "llm_error": None,
    }


def document(run: ReviewRun, state: ReviewState) -> ReviewDocument:
    """The review file's content from a finished state."""
    p = run.params
    images = [
        ImageReview(
            image=i["image"],
            caption=i["caption"],
            caption_sha256=i["sha256"],
            findings=[FindingEntry(**f) for f in state["findings"].get(i["image"], [])],
            **state["reviews"][i["image"]],
        )
        for i in state["items"]
    ]
    return ReviewDocument(
        version=FORMAT_VERSION,
        folder=p.folder,
        caption_ext=p.caption_ext,
        created_at=state.get("created_at") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        job_id=run.job_id,
        model=p.model if run.reviewer is not None else None,
        llm=run.llm_note,
        style=p.style,
        lora_type=p.lora_type,
        trigger_word=p.trigger_word,
        images=images,
    )
