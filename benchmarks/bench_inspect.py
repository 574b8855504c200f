"""inspect_dataset throughput and memory on 1,000 generated images of 256-1024 px: 1 worker vs all cores.

The images (70% JPEG, 30% PNG; blurred noise or gradients, random sizes) are generated once into a cache folder
and reused. Each inspection runs in a child process of its own with a fresh (cold) facts cache, as the server
would run it, then once more in the same process (fork server up, as in a long-running MCP server);
`--repeat` runs alternate 1 worker and all cores and the medians are printed. Peak RSS is that of
the whole process tree (the child, its fork server and its decoder workers), summed from /proc every 50 ms as
PSS (a page shared by the forked workers counts once), and never below the child's own ru_maxrss (all there is
off Linux).
Targets: all cores >= 1.8x faster than 1 worker on 2 cores, peak RSS < 300 MB.
Usage: python benchmarks/bench_inspect.py [--count N] [--repeat R] [--threads-vs-processes] [--data DIR]
[--regenerate]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, sys, tempfile, time
from pathlib import Path
from lora_mcp.dataset.factcache import FactsCache
from lora_mcp.dataset.inspect import inspect_dataset
workers = None if sys.argv[2] == "all" else int(sys.argv[2])
seconds = []
for _ in range(2):  # the first call starts the fork server; a long-running MCP server pays that once
    calls = []
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        report = inspect_dataset(Path(sys.argv[1]), progress=lambda done, total: calls.append(done),
                                 facts_cache=FactsCache(Path(cache)), workers=workers)
        seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds[0], "again": seconds[1], "images": report.usable_image_count,
                  "progress_calls": len(calls), "problems": sorted({p.code.value for p in report.problems})}))
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


@dataclass
class TreeUsage:
    """What the sampler saw of a process tree: peak summed RSS, and CPU seconds per process (last sample)."""

    peak_rss: int = 0
    cpu: dict[int, float] = field(default_factory=dict)


def run_child(args: list[str]) -> tuple[str, float, float]:
    """Run a child Python; return its stdout, the peak RSS in MiB of its whole process tree and the tree's CPU s."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, *args], stdout=out)
        seen = TreeUsage()
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_tree, args=(proc.pid, seen, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"child {args[:2]} failed with exit code {proc.returncode}")
        out.seek(0)
        text = out.read().decode()
    own = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # ru_maxrss: bytes on macOS, KiB elsewhere
    seen.cpu[proc.pid] = usage.ru_utime + usage.ru_stime  # exact for the child itself
    return text, max(seen.peak_rss, own) / (1024 * 1024), sum(seen.cpu.values())


def _memory(pid: int, page: int) -> int:
    """Proportional set size (shared pages split among their sharers) where the kernel has it, else RSS."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page


def _sample_tree(root: int, seen: TreeUsage, stop: threading.Event) -> None:
    """Every 50 ms, sum the memory (PSS) of `root` and its descendants and note each one's CPU time (Linux /proc)."""
    if not Path(f"/proc/{root}/task/{root}/children").exists():
        return  # not Linux, or a kernel without CONFIG_PROC_CHILDREN: the child's own figures stand alone
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    while not stop.wait(0.05):
        total, frontier = 0, [root]
        while frontier:
            pid = frontier.pop()
            try:
                total += _memory(pid, page)
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                seen.cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
                for children in Path(f"/proc/{pid}/task").glob("*/children"):
                    frontier += [int(child) for child in children.read_text().split()]
            except (OSError, ValueError, IndexError):
                continue  # ended meanwhile
        seen.peak_rss = max(seen.peak_rss, total)


THREADS_VS_PROCESSES = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from lora_mcp.dataset.images import decode_image
from lora_mcp.dataset.pool import decode_in_pool
paths = sorted(p for p in Path(sys.argv[1]).iterdir() if p.suffix in (".jpg", ".png"))[: int(sys.argv[2])]
workers = int(sys.argv[3])
list(decode_in_pool(paths[:64], workers))  # start the fork server, as a long-running server has it
for _ in range(int(sys.argv[4])):
    start = time.perf_counter()
    for path in paths:
        decode_image(path)
    serial = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(decode_image, paths))
    threads = time.perf_counter() - start
    start = time.perf_counter()
    list(decode_in_pool(paths, workers))
    processes = time.perf_counter() - start
    print(f"  {len(paths)} images: serial {serial:.2f} s | {workers} threads {threads:.2f} s ({serial / threads:.2f}x)"
          f" | {workers} processes {processes:.2f} s ({serial / processes:.2f}x)", flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each (1 worker, all cores); medians shown.")
    parser.add_argument(
        "--threads-vs-processes", action="store_true", help="Also time decode_image alone in threads vs processes."
    )
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
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"dataset: {args.count} images, {size_mb:.0f} MB on disk")

    if args.threads_vs_processes:
        print("decode_image alone, serial vs threads vs the process pool (fork server already up):")
        subprocess.run(
            [sys.executable, "-c", THREADS_VS_PROCESSES, str(folder), "600", str(os.cpu_count()), str(args.repeat)],
            check=True,
        )
    runs: dict[str, list[tuple[float, float, float, float]]] = {"1": [], "all": []}
    for _ in range(args.repeat):
        for workers in runs:
            out, peak_mb, cpu = run_child(["-c", CHILD, str(folder), workers])
            result = json.loads(out)
            runs[workers].append((result["seconds"], result["again"], peak_mb, cpu))
            print(
                f"  workers={workers}: {result['seconds']:.1f} s ({result['images'] / result['seconds']:.0f} images/s),"
                f" again in the same process {result['again']:.1f} s, tree CPU {cpu:.1f} s for both,"
                f" peak RSS {peak_mb:.0f} MB, {result['progress_calls']} progress calls, problems {result['problems']}"
            )
    first = [statistics.median(r[0] for r in runs[w]) for w in runs]
    again = [statistics.median(r[1] for r in runs[w]) for w in runs]
    ratios = [a[0] / b[0] for a, b in zip(runs["1"], runs["all"], strict=True)]
    peak = max(r[2] for series in runs.values() for r in series)
    print(
        f"median of {args.repeat}, 1 worker vs all {os.cpu_count()} cores: first call {first[0]:.1f} s vs "
        f"{first[1]:.1f} s = {first[0] / first[1]:.2f}x (per pair {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"second call {again[0]:.1f} s vs {again[1]:.1f} s = {again[0] / again[1]:.2f}x; "
        f"highest peak RSS {peak:.0f} MB"
    )
    return 0 if peak < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
