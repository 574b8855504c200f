"""Run one review to the end: pick the reviewer from settings, run the graph on a SQLite checkpoint, summarise."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, cast

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from pydantic_ai.models import Model

from lora_mcp.review.graph import ProgressFn, ReviewRun, ReviewState, build_graph
from lora_mcp.review.params import ReviewParams
from lora_mcp.review.reviewer import CONFIGURE_HINT, build_agent, build_model, llm_unavailable
from lora_mcp.review.rules import load_rules
from lora_mcp.settings import Settings


def make_run(
    params: ReviewParams,
    settings: Settings,
    *,
    model: Model | None = None,
    job_id: str | None = None,
    on_progress: ProgressFn | None = None,
) -> ReviewRun:
    """The run's context: the rules, and the reviewer unless no model is configured (`model` overrides settings)."""
    rules = load_rules(params.banned_words, params.identity_traits)
    reason = None if model is not None else llm_unavailable(params.model, settings)
    if reason is not None:
        note = f"skipped: {reason}. Only the rules ran. {CONFIGURE_HINT}"
        return ReviewRun(params, rules, None, None, note, job_id, on_progress)
    chosen = model if model is not None else build_model(str(params.model), settings)
    return ReviewRun(params, rules, build_agent(params.output_mode), chosen, "used", job_id, on_progress)


async def run_review(run: ReviewRun, checkpoint: Path, thread_id: str) -> dict[str, Any]:
    """Run (or resume, when `checkpoint` holds an unfinished run of `thread_id`) and return the job outputs."""
    graph = build_graph(run)
    config: Any = {"configurable": {"thread_id": thread_id}, "recursion_limit": 1_000_000}
    async with AsyncSqliteSaver.from_conn_string(str(checkpoint)) as saver:
        app = graph.compile(checkpointer=saver)
        snapshot = await app.aget_state(config)
        earlier = len(snapshot.values.get("reviews", {})) if snapshot.values else 0
        if snapshot.values and not snapshot.next:
            state = snapshot.values
        else:
            state = await app.ainvoke(None if snapshot.values else {}, config, durability="sync")
    return summarize(cast(ReviewState, state), run, resumed=bool(snapshot.values), reused=earlier)


def summarize(state: ReviewState, run: ReviewRun, *, resumed: bool, reused: int) -> dict[str, Any]:
    """Job outputs: the review file and counts an agent can act on."""
    reviews = state["reviews"]
    findings = Counter(f["code"] for found in state["findings"].values() for f in found)
    summary = {
        "images": len(state["items"]),
        "by_verdict": dict(Counter(r["verdict"] for r in reviews.values())),
        "reviewed_by": dict(Counter(r["reviewed_by"] for r in reviews.values())),
        "top_findings": [{"code": code, "count": n} for code, n in findings.most_common(5)],
        "llm": run.llm_note,
        "llm_errors": sum(1 for r in reviews.values() if r.get("llm_error")),
        "resumed": resumed,
        "reused_reviews": reused,
    }
    return {"review_file": state["review_file"], "summary": summary}
