"""inspect_dataset throughput and memory on 1,000 generated images of 256-1024 px.

The images (70% JPEG, 30% PNG; blurred noise or gradients, random sizes) are generated once into a cache folder
and reused. inspect_dataset runs in a child process; the peak RSS printed is that child's own ru_maxrss (os.wait4).
Target: peak RSS < 300 MB. Usage: python benchmarks/bench_inspect.py [--count N] [--data DIR] [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, sys, time
from pathlib import Path
from lora_mcp.dataset.inspect import inspect_dataset
calls = []
start = time.perf_counter()
report = inspect_dataset(Path(sys.argv[1]), progress=lambda done, total: calls.append(done))
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "images": report.usable_image_count, "progress_calls": len(calls),
                  "problems": sorted({p.code.value for p in report.problems}), "ready": report.ready_for_training}))
"""


def make_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Blurred colour noise or a two-colour gradient with a little grain."""
    if rng.random() < 0.5:
        coarse = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
        return Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    horizontal = rng.random() < 0.5
    t = np.linspace(0.0, 1.0, width if horizontal else height)[:, None]
    ramp = a * (1 - t) + b * t
    grid = ramp[None, :, :] if horizontal else ramp[:, None, :]
    grid = np.broadcast_to(grid, (height, width, 3)) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8))


def generate(folder: Path, count: int) -> None:
    """Write `count` images into `folder` (seeded: the same set every time)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    pick = random.Random(1234)
    for i in range(count):
        width, height = pick.randint(256, 1024), pick.randint(256, 1024)
        image = make_image(rng, width, height)
        if pick.random() < 0.7:
            image.save(folder / f"img_{i:04d}.jpg", quality=90)
        else:
            image.save(folder / f"img_{i:04d}.png", compress_level=1)
    (folder / ".complete").write_text(str(count))


def run_child(args: list[str]) -> tuple[str, float]:
    """Run a child Python; return its stdout and its own peak RSS in MB (os.wait4 reports that child only)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, *args], stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"child {args[:2]} failed with exit code {proc.returncode}")
        out.seek(0)
        text = out.read().decode()
    return text, usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=None, help="Cache folder for the generated images.")
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.data or Path(tempfile.gettempdir()) / f"lora-mcp-bench-inspect-{args.count}"
    if args.generate_only:
        generate(folder, args.count)
        return 0
    marker = folder / ".complete"
    if args.regenerate or not marker.exists() or marker.read_text() != str(args.count):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        # In a child of its own, so this process stays small and its memory cannot leak into the figure below.
        run_child([__file__, "--generate-only", "--count", str(args.count), "--data", str(folder)])
        print(f"generated {args.count} images in {folder} ({time.perf_counter() - start:.0f} s)")
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6

    out, peak_mb = run_child(["-c", CHILD, str(folder)])
    result = json.loads(out)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"dataset: {args.count} images, {size_mb:.0f} MB on disk")
    print(
        f"inspect_dataset: {result['seconds']:.1f} s, {result['images'] / result['seconds']:.0f} images/s, "
        f"peak RSS {peak_mb:.0f} MB, {result['progress_calls']} progress calls, problems {result['problems']}"
    )
    return 0 if peak_mb < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
