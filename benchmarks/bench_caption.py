"""JoyCaption-path generation: batched (one `generate` per 8 images) vs one image per call, same model, same run.

Builds the tiny random JoyCaption-shaped LLaVA of the tests (tests/tiny_llava.py; `--hidden/--layers` make a larger
one) and captions the shared images (repeated to `--images`) through `JoyCaptioner`, the code the caption worker
runs: chat template, processor, left padding, greedy decoding of exactly `--tokens` new tokens per image (EOS is
suppressed with min_new_tokens, so both modes do the same work). Each mode runs in its own child process, so the
peak RSS (os.wait4's ru_maxrss) and, on CUDA, torch.cuda.max_memory_allocated belong to that mode alone.
Each child times `--repeats` passes and reports the median. Target: >= 2x images/s at batch 8.
Usage: python benchmarks/bench_caption.py [--device cuda] [--runs 3] [--hidden 512 --layers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "images"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout, installed or not
PROMPT = "Write a medium-length detailed description for this image."


def child(args: argparse.Namespace) -> None:
    """Caption `--images` images in batches of `--batch` and print one JSON line of figures."""
    import torch

    from lora_mcp.captioning.base import load_image
    from lora_mcp.captioning.joycaption import JoyCaptioner

    captioner = JoyCaptioner(
        args.model, batch_size=args.batch, max_new_tokens=args.tokens, temperature=0, device=args.device
    )
    captioner.model.generation_config.min_new_tokens = args.tokens
    images = [sample_image(i, load_image) for i in range(args.images)]
    captioner.caption(images[: args.batch], PROMPT)  # warm-up: kernels, allocator, caches
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        captions = []
        for i in range(0, len(images), args.batch):
            captions += captioner.caption(images[i : i + args.batch], PROMPT)
        if cuda:
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    seconds = statistics.median(timings)
    result = {
        "batch": args.batch,
        "images": len(captions),
        "seconds": seconds,
        "images_per_s": len(captions) / seconds,
        "best_images_per_s": len(captions) / min(timings),
        "dtype": str(captioner.dtype).removeprefix("torch."),
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
    }
    print(json.dumps(result))


def sample_image(i: int, load: Any) -> Any:
    """The i-th shared test image (cycled), or a seeded noise image where ../shared is absent (a GPU machine)."""
    if IMAGES.is_dir():
        sources = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        return load(sources[i % len(sources)])
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(i % 8).integers(0, 256, (384, 512, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def run_child(model: Path, batch: int, args: argparse.Namespace) -> dict[str, float | str | None]:
    command = [sys.executable, __file__, "--child", "--model", str(model), "--batch", str(batch)]
    command += ["--images", str(args.images), "--tokens", str(args.tokens), "--device", args.device]
    command += ["--repeats", str(args.repeats)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(command)}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return dict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes per child; the median counts.")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--model")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from tiny_llava import build_tiny_joycaption

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_joycaption(Path(tmp) / "model", hidden=args.hidden, layers=args.layers)
        print(f"model: hidden {args.hidden}, layers {args.layers}; {args.images} images x {args.tokens} tokens")
        for run in range(1, args.runs + 1):
            single = run_child(model, 1, args)
            batched = run_child(model, args.batch, args)
            for r in (single, batched):
                cuda = f", cuda peak {r['cuda_peak_mib']:.1f} MiB" if r["cuda_peak_mib"] is not None else ""
                print(
                    f"run {run} batch {r['batch']}: {r['images_per_s']:.2f} img/s median "
                    f"({r['best_images_per_s']:.2f} best, {r['seconds']:.2f} s per pass), "
                    f"peak RSS {r['peak_rss_mib']:.0f} MiB{cuda} [{r['dtype']} on {r['device_name']}]"
                )
            ratio = float(batched["images_per_s"]) / float(single["images_per_s"])  # type: ignore[arg-type]
            print(f"run {run} ratio batch {args.batch} / batch 1: {ratio:.2f}x")


if __name__ == "__main__":
    main()
