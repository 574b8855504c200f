"""`lora-mcp export JOB_ID`: export_lora for people at a terminal."""

from __future__ import annotations

import argparse

from lora_mcp.settings import get_settings


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of `lora-mcp export`."""
    from lora_mcp.assembly import open_manager
    from lora_mcp.training.export import export_lora

    result = export_lora(open_manager(get_settings()), args.job_id, "comfyui", args.checkpoint, args.name)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    print(f"{'already there' if result.already_present else 'exported'}: {result.path}")
    print(f"  sidecar: {result.sidecar_path}")
    if result.trigger_word:
        print(f"  trigger word: {result.trigger_word}")
    print(f"  next: {result.next_step}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `export` to the top-level parser."""
    export = sub.add_parser("export", help="Copy a train job's LoRA into ComfyUI's LoRA folder.")
    export.add_argument("job_id")
    export.add_argument("--checkpoint", metavar="STEP", help="Export this saved step instead of the final LoRA.")
    export.add_argument("--name", help="File name without .safetensors (default: the job's name).")
    export.add_argument("--json", action="store_true")
    export.set_defaults(handler=cmd_export)
