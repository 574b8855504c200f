"""Command line: `lora-mcp serve|doctor|inspect ...`. Readable text for people, `--json` for scripts."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from lora_mcp.errors import LoraMcpError

log = logging.getLogger("lora_mcp")

Handler = Callable[[argparse.Namespace], int]


def emit(result: BaseModel, as_json: bool, render: Callable[[BaseModel], str]) -> None:
    """Print a result as JSON or as text for people."""
    print(result.model_dump_json(indent=2) if as_json else render(result))


def cmd_serve(args: argparse.Namespace) -> int:
    from lora_mcp.server.app import build_server
    from lora_mcp.settings import get_settings

    settings = get_settings()
    server = build_server(settings)
    if args.transport == "stdio":
        server.run()
        return 0
    from lora_mcp.server.http import serve_http

    serve_http(
        server,
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
    from lora_mcp.render import render_dataset_report

    folder = Path(args.folder).expanduser().resolve()
    if not folder.is_dir():
        raise LoraMcpError(f"{args.folder} is not a folder.", hint="Pass the folder that holds the images.")
    resolutions = [int(r) for r in args.resolutions.split(",")] if args.resolutions else None
    report = inspect_dataset(folder, trigger_word=args.trigger_word, resolutions=resolutions)
    emit(report, args.json, render_dataset_report)  # type: ignore[arg-type]
    return 0 if report.ready_for_training else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lora-mcp", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="Log level for stderr (default INFO).")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="Run the MCP server.")
    serve.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="Address to bind over HTTP (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(handler=cmd_serve)

    doctor = sub.add_parser("doctor", help="Check GPUs, AI-Toolkit, disk and roots.")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(handler=cmd_doctor)

    inspect = sub.add_parser("inspect", help="Check a folder of training images (read-only).")
    inspect.add_argument("folder")
    inspect.add_argument("--trigger-word")
    inspect.add_argument("--resolutions", help="Comma-separated side lengths, e.g. 512,768,1024.")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=cmd_inspect)
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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
