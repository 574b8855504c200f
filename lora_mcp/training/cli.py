"""`lora-mcp config ...`: generate_training_config for people at a terminal; options generated from the model."""

from __future__ import annotations

import argparse
import os
import types
import typing
from typing import Any

from lora_mcp.errors import InvalidInput
from lora_mcp.training.config import LoRATrainingConfig, parse_config
from lora_mcp.training.generate import GeneratedConfig

PATH_FIELDS = ("dataset_folder", "model_path", "adapter_path", "output_folder")
"""Relative paths on the command line mean the current directory, not the first root."""


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or (isinstance(annotation, types.UnionType) and bool in typing.get_args(annotation))


def _choices(annotation: Any) -> list[str] | None:
    """The allowed values of a Literal field (shown by --help and checked by argparse), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(value) for value in typing.get_args(annotation)]
    return None


def parse_resolutions(text: str) -> list[int] | list[list[int]]:
    """`512,768,1024` or `1024x1024,768x1024`."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if any("x" in p for p in parts):
            return [[int(s) for s in p.split("x")] for p in parts]
        return [int(p) for p in parts]
    except ValueError:
        raise InvalidInput(
            f"--resolutions {text!r} is not a comma-separated list of sizes.",
            hint="Pass side lengths like 512,768,1024 (or WxH pairs like 1024x1024,768x1024).",
            field="resolutions",
        ) from None


def add_parser(sub: Any) -> None:
    """Add `config` to the `lora-mcp` subcommands, with one option per LoRATrainingConfig field."""
    parser = sub.add_parser(
        "config",
        help="Check a dataset and write an AI-Toolkit YAML for a Z-Image LoRA.",
        description="Options mirror the generate_training_config tool. Paths must lie inside LORA_MCP_ROOTS.",
    )
    for name, info in LoRATrainingConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        text = info.description or ""
        if _is_bool(info.annotation):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif name == "sample_prompts":
            parser.add_argument("--sample-prompt", dest=name, action="append", help=text + " (repeat the option)")
        elif name == "resolutions":
            parser.add_argument(flag, dest=name, type=parse_resolutions, help=text + " CLI: 512,768,1024.")
        else:  # the model parses numbers and literals from text, and reports bad values by field
            default = "" if info.is_required() else f" (default {info.default})"
            parser.add_argument(
                flag, dest=name, required=info.is_required(), choices=_choices(info.annotation), help=text + default
            )
    parser.add_argument("--dry-run", action="store_true", help="Print the YAML without writing anything.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a different existing config.")
    parser.add_argument("--json", action="store_true", help="Print the full result as JSON.")
    parser.set_defaults(handler=cmd_config)


def render_generated(result: GeneratedConfig, *, dry_run: bool) -> str:
    """The config path (and the YAML on a dry run), the summary, warnings and tier choices."""
    lines = [result.yaml.rstrip("\n"), ""] if dry_run else []
    if dry_run:
        state = "not written (dry run)"
    else:
        state = "written" if result.written else "unchanged (an identical config is already there)"
    lines += [f"{result.config_path}: {state}", result.summary]
    lines += [f"warning: {w}" for w in result.warnings]
    lines += [f"  - {c}" for c in result.tier_choices]
    return "\n".join(lines)


def cmd_config(args: argparse.Namespace) -> int:
    """Handler of `lora-mcp config`."""
    from lora_mcp.settings import get_settings
    from lora_mcp.training.generate import generate_training_config

    values = {name: getattr(args, name) for name in LoRATrainingConfig.model_fields}
    fields = {name: value for name, value in values.items() if value is not None}
    for name in PATH_FIELDS:
        if name in fields:
            fields[name] = os.path.abspath(os.path.expanduser(fields[name]))
    config = parse_config(fields)
    result = generate_training_config(config, get_settings(), dry_run=args.dry_run, overwrite=args.overwrite)
    print(result.model_dump_json(indent=2) if args.json else render_generated(result, dry_run=args.dry_run))
    return 0
