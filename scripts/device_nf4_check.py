"""On a CUDA machine: load the tiny JoyCaption-shaped LLaVA through JoyCaptioner in bf16 and in 4-bit nf4.

Checks the GPU paths the CPU tests cannot: bf16 placement, batched generation on CUDA, and that nf4 quantizes the
language model while leaving the vision tower and projector unquantized. Prints one JSON report.

    python scripts/device_nf4_check.py [cuda|cpu]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def module_kinds(model: object, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, module in model.named_modules():  # type: ignore[attr-defined]
        if prefix in name and type(module).__name__.startswith("Linear"):
            counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts


def main(device: str) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from tiny_llava import build_tiny_joycaption

    from lora_mcp.captioning.joycaption import JoyCaptioner

    report: dict[str, object] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    report["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    try:
        import bitsandbytes

        report["bitsandbytes"] = bitsandbytes.__version__
    except ImportError as exc:
        report["bitsandbytes"] = f"missing: {exc}"
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for _ in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_joycaption(Path(tmp) / "tiny", hidden=64, layers=2)
        for quantization in ("none", "nf4"):
            entry: dict[str, object] = {}
            try:
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                cap = JoyCaptioner(
                    str(model_dir),
                    batch_size=4,
                    max_new_tokens=12,
                    temperature=0,
                    quantization=quantization,
                    device=device,
                )  # type: ignore[arg-type]
                entry["dtype"] = str(cap.dtype)
                entry["param_devices"] = sorted({str(p.device) for p in cap.model.parameters()})
                entry["language_model_linears"] = module_kinds(cap.model, "language_model")
                entry["vision_tower_linears"] = module_kinds(cap.model, "vision_tower")
                entry["projector_linears"] = module_kinds(cap.model, "multi_modal_projector")
                batched = [str(r) for r in cap.caption(images, "Write a short caption.")]
                single = [str(cap.caption([im], "Write a short caption.")[0]) for im in images]
                entry["batched_equals_single"] = batched == single
                entry["captions"] = batched[:2]
                if torch.cuda.is_available():
                    entry["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            except Exception as exc:  # report, keep going: this is a check script
                entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
            report[quantization] = entry
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cuda")
