"""Command line: `lora-mcp serve|doctor|inspect ...`. Readable text for people, `--json` for scripts."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ValidationError

from lora_mcp.errors import LoraMcpError

if TYPE_CHECKING:
    from lora_mcp.settings import Settings

log = logging.getLogger("lora_mcp")

Handler = Callable[[argparse.Namespace], int]


def emit(result: BaseModel, as_json: bool, render: Callable[[BaseModel], str]) -> None:
    """Print a result as JSON or as text for people."""
    print(result.model_dump_json(indent=2) if as_json else render(result))


def check_job_store(settings: Settings) -> None:
    """Open jobs.db once before serving: repair it from the job folders, or stop with one clear error."""
    from lora_mcp.jobs.store import JobStore

    JobStore(settings.db_path, settings.jobs_dir).close()  # raises StoreUnavailable, which main() prints


def cmd_serve(args: argparse.Namespace) -> int:
    from lora_mcp.dataset.pool import start_early
    from lora_mcp.server.app import build_server
    from lora_mcp.settings import get_settings

    settings = get_settings()
    start_early()  # the decoder pool's fork server imports Pillow and numpy while the server starts, not in the call
    if args.transport == "stdio":
        check_job_store(settings)
        build_server(settings).run()
        return 0
    from lora_mcp.server.http import check_bind, serve_http

    check_bind(args.host, settings.http_token)  # before anything is built or created
    check_job_store(settings)
    serve_http(
        build_server(settings),
        args.transport,
        host=args.host,
        port=args.port,
        token=settings.http_token,
        allowed_hosts=settings.allowed_hosts,
        log_level=args.log_level.lower(),
    )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from lora_mcp.render import render_system_report
    from lora_mcp.settings import get_settings
    from lora_mcp.system import system_check

    report = system_check(get_settings())
    emit(report, args.json, render_system_report)  # type: ignore[arg-type]
    return 0 if not report.problems else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from lora_mcp.dataset.inspect import inspect_dataset
    from lora_mcp.paths import local_folder
    from lora_mcp.render import render_dataset_report

    folder = local_folder(args.folder)  # a person at their own terminal: not confined to LORA_MCP_ROOTS
    try:
        resolutions = [int(r) for r in args.resolutions.split(",")] if args.resolutions else None
    except ValueError:
        raise LoraMcpError(
            f"--resolutions {args.resolutions!r} is not a comma-separated list of integers.",
            hint="Pass e.g. --resolutions 512,768,1024.",
        ) from None
    report = inspect_dataset(
        folder, trigger_word=args.trigger_word, resolutions=resolutions, caption_ext=args.caption_ext
    )
    emit(report, args.json, render_dataset_report)  # type: ignore[arg-type]
    return 0 if report.ready_for_training else 1


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes no abbreviations: `--model` must not silently mean `--model-path`.

    Subparsers inherit the class (argparse's `add_subparsers` defaults `parser_class` to `type(self)`), so every
    `lora-mcp` command and sub-command refuses an abbreviated option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lora-mcp", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="Log level for stderr (default INFO).")
    # Also accepted after the subcommand (`lora-mcp serve --log-level DEBUG`); SUPPRESS keeps the default above.
    common = Parser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, help="Log level for stderr (default INFO).")
    # Typed as the area modules take it; the parsers it makes are Parser instances (no abbreviations).
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", parser.add_subparsers(dest="command", required=True)
    )

    serve = sub.add_parser("serve", help="Run the MCP server.", parents=[common])
    serve.add_argument(
        "--transport",
        choices=["stdio", "sse", "streamable-http"],
        default="stdio",
        help="stdio (default; for Claude Desktop and the Inspector), streamable-http (endpoint /mcp) or sse (/sse).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="Address to bind over HTTP (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8765, help="Port over HTTP (default 8765).")
    serve.set_defaults(handler=cmd_serve)

    doctor = sub.add_parser("doctor", help="Check GPUs, AI-Toolkit, disk and roots.", parents=[common])
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(handler=cmd_doctor)

    inspect = sub.add_parser("inspect", help="Check a folder of training images (read-only).", parents=[common])
    inspect.add_argument("folder")
    inspect.add_argument("--trigger-word")
    inspect.add_argument("--resolutions", help="Comma-separated side lengths, e.g. 512,768,1024.")
    inspect.add_argument("--caption-ext", default="txt", help="Caption file extension (default txt).")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=cmd_inspect)

    from lora_mcp.captioning.cli import add_parsers as add_caption_parsers
    from lora_mcp.jobs_cli import add_parsers as add_job_parsers
    from lora_mcp.review.cli import add_parsers as add_review_parsers
    from lora_mcp.training.cli import add_parser as add_config_parser
    from lora_mcp.training.export_cli import add_parser as add_export_parser

    add_caption_parsers(sub)
    add_config_parser(sub)
    add_job_parsers(sub)
    add_review_parsers(sub)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lora-mcp` console script."""
    args = build_parser().parse_args(argv)
    # Logs always go to stderr: on stdio, stdout is the protocol wire.
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except LoraMcpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        print(f"error: a LORA_MCP_* environment variable has a bad value: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
