"""Calibrate the VRAM estimate: real LoRA training steps on a random-weight Z-Image, placed as each tier places it.

  python scripts/calibrate_vram.py --device cuda --out calib.json            # full model, every tier (GPU)
  python scripts/calibrate_vram.py --weights-only                            # exact weights term, meta device
  python scripts/calibrate_vram.py --arch tiny --device cpu --out tiny.json  # scaled-down end-to-end check

Writes the JSON to --out and a Markdown table beside it (same name, .md). Needs torch; transformers for the text
encoder of the tiers that keep it resident; bitsandbytes only for a true adamw8bit (else AdamW stands in, and the
estimate it is compared with is computed for AdamW). No download: every weight is random.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch

from lora_mcp.training.presets import TIERS
from lora_mcp.training.vram_calib import RunSettings, calibrate_tier, markdown, report, weights_table
from lora_mcp.training.zimage_arch import TINY, ZIMAGE_TURBO

ARCHS = {"full": ZIMAGE_TURBO, "tiny": TINY}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--out", type=Path, default=Path("calib.json"), help="JSON path; the .md goes beside it")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="full")
    parser.add_argument("--tiers", default=",".join(t.name for t in TIERS), help="comma-separated tier names")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--optimizer", choices=["adamw8bit", "adamw", "adafactor"], default="adamw8bit")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per resolution (first is warm-up)")
    parser.add_argument("--caption-tokens", type=int, default=128)
    parser.add_argument("--resolutions", default="", help="comma-separated sides instead of each tier's own")
    parser.add_argument("--weights-only", action="store_true", help="print the exact weights term table and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the calibration; 0 when every tier ran (an out-of-memory resolution is a result, not a failure)."""
    args = parse_args(argv)
    arch = ARCHS[args.arch]
    by_name = {t.name: t for t in TIERS}
    unknown = [n for n in args.tiers.split(",") if n not in by_name]
    if unknown:
        print(f"unknown tier(s) {unknown}; choose from {sorted(by_name)}", file=sys.stderr)
        return 2
    tiers = [by_name[n] for n in args.tiers.split(",")]
    if args.weights_only:
        print(weights_table(arch, tiers), end="")
        return 0
    device = torch.device(args.device)
    sides = tuple(int(r) for r in args.resolutions.split(",") if r) or None
    settings = RunSettings(args.rank, args.optimizer, args.steps, args.caption_tokens, sides)
    header = {
        "arch": arch.name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        **vars(settings),
    }
    results = []
    for tier in tiers:
        print(f"tier {tier.name} ...", flush=True)
        results.append(calibrate_tier(arch, tier, device, settings))
        args.out.write_text(json.dumps(report(results, header), indent=2))  # keep what ran if a later tier dies
    args.out.with_suffix(".md").write_text(markdown(results, header))
    print(markdown(results, header), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
