"""start_training's latency on a 1,000-image folder, with the dataset facts cache cold and warm.

start_training's preflight runs inspect_dataset on the config's folder. The normal agent flow calls
generate_training_config first, which inspects the same folder and fills the facts cache
(`<home>/cache/dataset_facts`), so start_training should only stat the images and read their captions.

- warm: the cache is emptied, `generate_training_config` (the Python function) fills it, then start_training is
  timed through an in-memory MCP client (`Client(build_server(settings))`).
- cold: the cache is emptied right before start_training.
- inspect_dataset is also timed alone, without a cache and with a filled one.
Each queued job (the fake AI-Toolkit in tests/fake_aitk) is cancelled and waited for before the next timing.

The images (bench_inspect's generator: 256-1024 px, 70% JPEG / 30% PNG) and one caption each are written once into
`$TMPDIR/lora-mcp-bench-start/dataset-<count>` and reused; state (jobs.db, the cache) lives in a fresh temp home.
Target: warm start_training < 2 s (exit 1 if missed).
Usage: python benchmarks/bench_start_training.py [--count N] [--runs N] [--regenerate]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from bench_inspect import generate  # the sibling script: python puts benchmarks/ first on sys.path
from mcp import Client

from lora_mcp.dataset.factcache import RACY_NS, facts_cache_for
from lora_mcp.dataset.inspect import inspect_dataset
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings, get_settings
from lora_mcp.training.config import LoRATrainingConfig
from lora_mcp.training.generate import generate_training_config

REPO = Path(__file__).resolve().parents[1]
FAKE_AITK = REPO / "tests" / "fake_aitk"
TRIGGER = "ohwx"
TARGET_WARM_S = 2.0


def prepare_dataset(folder: Path, count: int, regenerate: bool) -> None:
    """Generate `count` images with a caption each (once; reused while the marker matches)."""
    marker = folder / ".captioned"
    if not regenerate and marker.exists() and marker.read_text() == str(count):
        return
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    generate(folder, count)
    for image in folder.iterdir():
        if not image.name.startswith("."):
            image.with_suffix(".txt").write_text(f"a photo of {TRIGGER}, picture {image.stem}", encoding="utf-8")
    marker.write_text(str(count))
    print(f"generated {count} captioned images in {folder} ({time.perf_counter() - start:.0f} s)")


def settle(folder: Path) -> None:
    """Wait until every file is older than the cache's racy window (files changed moments ago are not stored)."""
    newest = max(p.stat().st_mtime_ns for p in folder.iterdir())
    wait = (newest + RACY_NS - time.time_ns()) / 1e9
    if wait > 0:
        time.sleep(wait + 0.1)


def make_settings(root: Path, home: Path) -> Settings:
    """Settings pointing at the fake AI-Toolkit (as tests/jobs_fixtures.py use_fake_aitk does)."""
    os.environ.update(
        LORA_MCP_HOME=str(home),
        LORA_MCP_ROOTS=str(root),
        LORA_MCP_AI_TOOLKIT_DIR=str(FAKE_AITK),
        LORA_MCP_AI_TOOLKIT_PYTHON=sys.executable,
        FAKE_AITK_STEP_DELAY="0.01",
    )
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    return settings


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def start_once(client: Client, config_path: str) -> float:
    """Time one start_training call, then cancel its job and wait until it has ended."""
    start = time.perf_counter()
    started = await client.call_tool("start_training", {"config_path": config_path})
    elapsed = time.perf_counter() - start
    if started.is_error:
        raise SystemExit(f"start_training failed: {started.content}")
    job_id = started.structured_content["job_id"]
    await client.call_tool("cancel_job", {"job_id": job_id})
    while True:
        status = await client.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 10})
        if status.structured_content["state"] in ("succeeded", "failed", "cancelled"):
            return elapsed


async def measure(settings: Settings, dataset: Path, runs: int) -> dict[str, list[float]]:
    """Every timing, `runs` times each."""
    cache = facts_cache_for(settings)
    config = LoRATrainingConfig(
        name="bench_lora",
        dataset_folder=str(dataset),
        trigger_word=TRIGGER,
        steps=100,
        save_every=50,
        sample_every=50,
        vram_gb=24,
    )
    results: dict[str, list[float]] = {k: [] for k in ("generate", "warm", "cold", "inspect_plain", "inspect_cached")}
    config_path = ""

    def fill() -> None:
        nonlocal config_path
        config_path = generate_training_config(config, settings, overwrite=True).config_path

    async with Client(build_server(settings)) as client:
        for _ in range(runs):
            shutil.rmtree(cache.directory, ignore_errors=True)
            results["generate"].append(await anyio.to_thread.run_sync(timed, fill))
            results["warm"].append(await start_once(client, config_path))
        for _ in range(runs):
            shutil.rmtree(cache.directory, ignore_errors=True)
            results["cold"].append(await start_once(client, config_path))
    for _ in range(runs):
        results["inspect_plain"].append(timed(lambda: inspect_dataset(dataset, trigger_word=TRIGGER)))
    for _ in range(runs):
        results["inspect_cached"].append(
            timed(lambda: inspect_dataset(dataset, trigger_word=TRIGGER, facts_cache=cache))
        )
    return results


LABELS = {
    "warm": "start_training, warm (cache filled by generate)",
    "cold": "start_training, cold (cache emptied)",
    "generate": "generate_training_config, cold (fills the cache)",
    "inspect_plain": "inspect_dataset, no cache",
    "inspect_cached": "inspect_dataset, cache filled",
}


def report(results: dict[str, list[float]]) -> bool:
    """Print the table and the ratios; True when the warm target is met."""
    medians = {k: statistics.median(v) for k, v in results.items()}
    runs = len(results["warm"])
    print("| measure | " + " | ".join(f"run {i + 1}" for i in range(runs)) + " | median |")
    print("|---|" + "---|" * (runs + 1))
    for key, label in LABELS.items():
        cells = " | ".join(f"{s:.2f} s" for s in results[key])
        print(f"| {label} | {cells} | {medians[key]:.2f} s |")
    print(f"start_training cold / warm: {medians['cold'] / medians['warm']:.1f}x")
    print(f"inspect_dataset uncached / cached: {medians['inspect_plain'] / medians['inspect_cached']:.1f}x")
    met = max(results["warm"]) < TARGET_WARM_S
    print(f"target warm start_training < {TARGET_WARM_S:.0f} s: {'met' if met else 'MISSED'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.gettempdir()) / "lora-mcp-bench-start"
    dataset = root / f"dataset-{args.count}"
    prepare_dataset(dataset, args.count, args.regenerate)
    settle(dataset)
    home = Path(tempfile.mkdtemp(prefix="lora-mcp-bench-home-"))
    logging.getLogger("lora_mcp").setLevel(logging.WARNING)  # not a line per job started and ended
    try:
        results = anyio.run(measure, make_settings(root, home), dataset, args.runs)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(root / "lora-mcp", ignore_errors=True)  # the configs and training folders written
    size_mb = sum(p.stat().st_size for p in dataset.iterdir()) / 1e6
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"dataset: {args.count} images + captions, {size_mb:.0f} MB on disk, {dataset}")
    return 0 if report(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
