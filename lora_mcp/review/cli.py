"""`lora-mcp review FOLDER` (a review job, followed live) and `lora-mcp apply-review FILE`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_mcp.jobs.models import JobState
from lora_mcp.paths import local_folder
from lora_mcp.review.models import LoraType, Style
from lora_mcp.review.params import ReviewParams


def review_params(args: argparse.Namespace) -> ReviewParams:
    """The ReviewParams of `lora-mcp review` (the same request model the review_captions tool builds)."""
    from lora_mcp.settings import get_settings

    return ReviewParams.request(
        get_settings(),
        folder=str(local_folder(args.folder)),
        trigger_word=args.trigger_word,
        style=Style(args.style),
        lora_type=LoraType(args.lora_type),
        use_images=not args.no_images,
        model=args.model,
        caption_ext=args.caption_ext,
        concurrency=args.concurrency,
        banned_words=args.banned_word,
        output_mode=args.output_mode,
    )


def cmd_review(args: argparse.Namespace) -> int:
    from lora_mcp.jobs_cli import follow, open_manager, show
    from lora_mcp.review.service import review_status, start_review

    manager = open_manager()
    status = start_review(manager, review_params(args), resume=not args.fresh)
    print(
        f"queued {status.job_id}" + (f" (resumes {status.resumed_from})" if status.resumed_from else ""),
        file=sys.stderr,
    )
    if not args.no_wait:
        follow(manager, status.job_id)
        status = review_status(manager, manager.get(status.job_id))
    show(status, args.json)
    details = status.outputs.details
    if not args.json and details.get("review_file"):
        print(f"  review file: {details['review_file']}\n  summary: {details.get('summary')}")
    return 0 if status.state in (JobState.SUCCEEDED, JobState.QUEUED, JobState.RUNNING) else 1


def cmd_apply(args: argparse.Namespace) -> int:
    from lora_mcp.review.apply import Approve, apply_review

    approve: Approve = args.approve if args.approve in ("all", "decided") else args.approve.split(",")
    result = apply_review(Path(args.review_file).expanduser().resolve(), approve)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    for item in result.applied:
        print(f"applied  {item.caption_file} ({item.source})")
    for skipped in result.skipped:
        print(f"skipped  {skipped.image}: {skipped.reason}")
    for conflict in result.conflicts:
        print(f"CONFLICT {conflict.image}: {conflict.reason}")
    print(f"{len(result.applied)} applied, {len(result.skipped)} skipped, {len(result.conflicts)} conflicts")
    if result.backup_folder:
        print(f"old captions kept in {result.backup_folder}")
    return 1 if result.conflicts else 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `review` and `apply-review` to the top-level parser."""
    review = sub.add_parser("review", help="Review the captions of a folder (rules + optional LLM); changes nothing.")
    review.add_argument("folder")
    review.add_argument("--trigger-word", required=True)
    review.add_argument("--style", choices=[s.value for s in Style], default=Style.TERSE.value)
    review.add_argument("--lora-type", choices=[t.value for t in LoraType], default=LoraType.CHARACTER.value)
    review.add_argument("--no-images", action="store_true", help="Send captions only (for text-only models).")
    review.add_argument("--model", help="Review model (default LORA_MCP_REVIEW_MODEL; unset: rules only).")
    review.add_argument("--caption-ext", default="txt", help="Caption file extension (default txt).")
    review.add_argument("--concurrency", type=int, default=4, help="Captions reviewed at once (default 4).")
    review.add_argument("--banned-word", action="append", help="A word no caption may contain (repeatable).")
    review.add_argument(
        "--output-mode", choices=["tool", "prompted"], default="tool", help="prompted: for servers without tools."
    )
    review.add_argument("--fresh", action="store_true", help="Do not resume an interrupted review.")
    review.add_argument("--no-wait", action="store_true", help="Queue the job and return.")
    review.add_argument("--json", action="store_true")
    review.set_defaults(handler=cmd_review)

    apply = sub.add_parser("apply-review", help="Write the approved captions of a review file (with backups).")
    apply.add_argument("review_file")
    apply.add_argument(
        "--approve", default="all", help="all (default), decided, or comma-separated image names, e.g. a.png,b.png."
    )
    apply.add_argument("--json", action="store_true")
    apply.set_defaults(handler=cmd_apply)
