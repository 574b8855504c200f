"""`lora-mcp caption FOLDER ...` (a job with a progress bar) and `lora-mcp conform FOLDER ...`."""

from __future__ import annotations

import argparse
import sys
import typing

from lora_mcp.captioning.files import OverwritePolicy
from lora_mcp.captioning.params import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    Backend,
    CaptionRequest,
    CaptionType,
    ExtraOption,
    NamedLength,
    Quantization,
)
from lora_mcp.jobs.models import JobState
from lora_mcp.paths import local_folder

LENGTHS = typing.get_args(NamedLength)


def parse_length(text: str) -> str | int:
    """`--length`: a named length or a number of words (1-1000)."""
    value = " ".join(text.split()).lower()
    if value in LENGTHS:
        return value
    if value.isdigit() and 1 <= int(value) <= 1000:
        return int(value)
    raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LENGTHS)} nor a number of words (1-1000)")


def caption_request(args: argparse.Namespace) -> CaptionRequest:
    """The CaptionRequest of `lora-mcp caption` (the same model the caption_images tool builds)."""
    return CaptionRequest(
        folder=local_folder(args.folder),
        trigger_word=args.trigger_word,
        caption_type=args.caption_type,
        length=args.length,
        extra_options=args.extra or [],
        backend=args.backend,
        model=args.model,
        overwrite=OverwritePolicy(args.overwrite),
        batch_size=args.batch_size,
        caption_ext=args.caption_ext,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        quantization=args.quantization,
    )


def cmd_caption(args: argparse.Namespace) -> int:
    from lora_mcp.captioning.service import start_captioning
    from lora_mcp.jobs_cli import follow, open_manager, show

    manager = open_manager()
    status = start_captioning(manager, caption_request(args))
    print(f"queued {status.job_id}", file=sys.stderr)
    if not args.no_wait:
        status = follow(manager, status.job_id)
    show(status, args.json)
    if not args.json:
        details = status.outputs.details
        print(f"  captions written: {len(details.get('captions_written', []))}")
        for failure in details.get("failed", []):
            print(f"  failed {failure['image']}: {failure['reason']}")
    return 0 if status.state in (JobState.SUCCEEDED, JobState.QUEUED, JobState.RUNNING) else 1


def cmd_conform(args: argparse.Namespace) -> int:
    from lora_mcp.dataset.conform import conform_filenames, undo_conform

    folder = local_folder(args.folder)
    if args.undo:
        result = undo_conform(folder, (folder / args.undo).resolve())
    else:
        result = conform_filenames(folder, pattern=args.pattern, trigger_word=args.trigger_word, dry_run=not args.apply)
    if args.json:
        print(result.model_dump_json(indent=2, by_alias=True))
        return 0
    for r in result.renames:
        print(f"{r.source} -> {r.target}")
    print(f"{len(result.renames)} moves, {result.unchanged} unchanged{' (dry run)' if result.dry_run else ''}")
    if result.map_file:
        print(f"rename map: {result.map_file}")
    print(f"next: {result.next_step}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `caption` and `conform` to the top-level parser."""
    from lora_mcp.dataset.conform import DEFAULT_PATTERN

    caption = sub.add_parser("caption", help="Caption a folder of images (a job, with a progress bar).")
    caption.add_argument("folder")
    caption.add_argument("--trigger-word")
    caption.add_argument(
        "--type", dest="caption_type", choices=typing.get_args(CaptionType), default="descriptive", help="Caption type."
    )
    caption.add_argument(
        "--length",
        type=parse_length,
        default="medium-length",
        help=f"{', '.join(LENGTHS)}, or a number of words (default medium-length).",
    )
    caption.add_argument(
        "--extra", action="append", choices=typing.get_args(ExtraOption), help="Extra option (repeatable)."
    )
    caption.add_argument("--backend", choices=typing.get_args(Backend))
    caption.add_argument("--model", help="Hub id / local path (joycaption) or the server's model name.")
    caption.add_argument("--overwrite", choices=[p.value for p in OverwritePolicy], default="skip")
    caption.add_argument("--batch-size", type=int)
    caption.add_argument("--caption-ext", default="txt")
    caption.add_argument(
        "--temperature", type=float, default=DEFAULT_TEMPERATURE, help=f"0 = greedy (default {DEFAULT_TEMPERATURE})."
    )
    caption.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    caption.add_argument(
        "--quantization", choices=typing.get_args(Quantization), default="none", help="nf4 needs bitsandbytes."
    )
    caption.add_argument("--no-wait", action="store_true", help="Queue the job and return at once.")
    caption.add_argument("--json", action="store_true")
    caption.set_defaults(handler=cmd_caption)

    conform = sub.add_parser("conform", help="Rename image+caption pairs to a pattern (dry run unless --apply).")
    conform.add_argument("folder")
    conform.add_argument("--trigger-word")
    conform.add_argument("--pattern", default=DEFAULT_PATTERN)
    conform.add_argument("--apply", action="store_true", help="Rename for real and write a rename map.")
    conform.add_argument("--undo", metavar="MAP_FILE", help="Revert the renames of a rename map.")
    conform.add_argument("--json", action="store_true")
    conform.set_defaults(handler=cmd_conform)
