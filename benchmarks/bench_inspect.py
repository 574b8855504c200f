"""inspect_dataset on 1,000 generated images of 256-1024 px: 1 worker vs all cores, and the quality checks' cost.

The images (70% JPEG, 30% PNG; blurred noise or gradients, random sizes) are generated once into a cache folder
and reused. Each series runs in a child process of its own, as a freshly started server: the worker count comes
from LORA_MCP_INSPECT_WORKERS, the child calls pool.start_early() as `lora-mcp serve` does at start, and the first
inspection (fresh facts cache) starts `--start-gap` seconds later (default 0.75 s: a started `lora-mcp serve`
answers tools/list after ~0.75 s, docs/benchmarks.md "Cold start", so no call can come sooner; 0: at once); then a
second one in the same process (as in a long-running server). Series, alternated `--repeat` times, medians printed:
- `1`: one worker (in-process); `all`: one per CPU;
- `1 noq`: one worker with the quality checks off (images.MEASURE_QUALITY), for their cost per image on one core;
- `all cold` (with --cold): all cores without start_early, the fork server started by the first call.
Peak RSS is that of the whole process tree (the child, its fork server and its decoder workers), summed from /proc
every 50 ms as PSS (a page shared by the forked workers counts once), and never below the child's own ru_maxrss (all
there is off Linux).
Targets: all cores >= 1.8x faster than 1 worker on 2 cores, peak RSS < 300 MB, quality checks < 4 ms per image.
Usage: python benchmarks/bench_inspect.py [--count N] [--repeat R] [--start-gap S] [--cold] [--threads-vs-processes]
[--data DIR] [--regenerate]
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
from lora_mcp.dataset import images, pool
from lora_mcp.dataset.factcache import FactsCache
from lora_mcp.dataset.inspect import inspect_dataset
images.MEASURE_QUALITY = "noq" not in sys.argv[3:]
if "cold" not in sys.argv[3:]:
    pool.start_early()  # what `lora-mcp serve` does at start; returns at once
time.sleep(float(sys.argv[2]))  # the server's own start and the MCP handshake, before the first call can come
seconds = []
for _ in range(2):
    calls = []
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        report = inspect_dataset(Path(sys.argv[1]), progress=lambda done, total: calls.append(done),
                                 facts_cache=FactsCache(Path(cache)))
        seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds[0], "again": seconds[1], "images": report.usable_image_count,
                  "workers": pool.configured_workers(), "progress_calls": len(calls),
                  "problems": sorted({p.code.value for p in report.problems})}))
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


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[str, float, float]:
    """Run a child Python; return its stdout, the peak RSS in MiB of its whole process tree and the tree's CPU s."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, *args], stdout=out, env=env)
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
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each series; medians shown.")
    parser.add_argument("--start-gap", type=float, default=0.75, help="Seconds from start_early to the first call.")
    parser.add_argument("--cold", action="store_true", help="Also all cores without start_early (the old first call).")
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
    print(f"dataset: {args.count} images, {size_mb:.0f} MB on disk; first call {args.start_gap} s after start")

    if args.threads_vs_processes:
        print("decode_image alone, serial vs threads vs the process pool (fork server already up):")
        subprocess.run(
            [sys.executable, "-c", THREADS_VS_PROCESSES, str(folder), "600", str(os.cpu_count()), str(args.repeat)],
            check=True,
        )
    series = ["1", "all", "1 noq", *(["all cold"] if args.cold else [])]
    runs: dict[str, list[Run]] = {name: [] for name in series}
    for _ in range(args.repeat):
        for name in series:
            runs[name].append(run_series(folder, name, args.start_gap))
    summarize(runs, args.count)
    peak = max(r.peak_mb for results in runs.values() for r in results)
    return 0 if peak < 300 else 1


@dataclass(frozen=True)
class Run:
    """One child: the first and second inspection's seconds, its tree's peak memory and CPU."""

    first: float
    again: float
    peak_mb: float
    cpu: float


def run_series(folder: Path, name: str, gap: float) -> Run:
    """One child process of series `name` (`1`, `all`, `1 noq`, `all cold`); prints its line."""
    workers, *flags = name.split()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LORA_MCP_")}
    if workers != "all":
        env["LORA_MCP_INSPECT_WORKERS"] = workers
    out, peak_mb, cpu = run_child(["-c", CHILD, str(folder), str(gap), *flags], env)
    result = json.loads(out)
    print(
        f"  {name} ({result['workers']} worker(s)): {result['seconds']:.2f} s "
        f"({result['images'] / result['seconds']:.0f} images/s), again in the same process {result['again']:.2f} s,"
        f" tree CPU {cpu:.1f} s for both, peak RSS {peak_mb:.0f} MB, {result['progress_calls']} progress calls,"
        f" problems {result['problems']}",
        flush=True,
    )
    return Run(result["seconds"], result["again"], peak_mb, cpu)


def summarize(runs: dict[str, list[Run]], count: int) -> None:
    """Medians of each series and the ratios the targets are about, with every pair's ratio."""
    first = {name: statistics.median(r.first for r in results) for name, results in runs.items()}
    again = {name: statistics.median(r.again for r in results) for name, results in runs.items()}
    pairs = [a.first / b.first for a, b in zip(runs["1"], runs["all"], strict=True)]
    print(
        f"median of {len(runs['1'])}, 1 worker vs all {os.cpu_count()} cores: first call {first['1']:.2f} s vs "
        f"{first['all']:.2f} s = {first['1'] / first['all']:.2f}x (per pair {', '.join(f'{r:.2f}' for r in pairs)});"
        f" second call {again['1']:.2f} s vs {again['all']:.2f} s = {again['1'] / again['all']:.2f}x"
    )
    if "all cold" in runs:
        print(
            f"without start_early (fork server started by the first call): first call {first['all cold']:.2f} s = "
            f"{first['1'] / first['all cold']:.2f}x; second call {again['all cold']:.2f} s"
        )
    with_q = [r.first for r in runs["1"]] + [r.again for r in runs["1"]]
    without_q = [r.first for r in runs["1 noq"]] + [r.again for r in runs["1 noq"]]
    on, off = statistics.median(with_q), statistics.median(without_q)
    print(
        f"quality checks, 1 worker, median of {len(with_q)} calls: with {on:.2f} s vs without {off:.2f} s = "
        f"{on / off:.2f}x, {(on - off) / count * 1000:.2f} ms per image "
        f"({on / count * 1000:.2f} vs {off / count * 1000:.2f} ms per image in all)"
    )
    peak = max(r.peak_mb for results in runs.values() for r in results)
    print(f"highest peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    raise SystemExit(main())
