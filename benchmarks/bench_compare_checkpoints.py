"""compare_checkpoints on a long run: 40 step checkpoints + the final LoRA, 3 prompts of 1024 px sample JPEGs.

The output folder is laid out as AI-Toolkit leaves it (`<name>_<step:09d>.safetensors` every 250 steps up to 10,000,
the final `<name>.safetensors` at 10,250 with `training_info` metadata, and `samples/<ms>__<step:09d>_<i>.jpg` for
every saved step and step 0), with a job record, its frozen config (3 sample prompts) and a log whose training bar
carries a loss every 10 steps. The samples are 1024 x 1024 JPEGs (quality 90) of smooth gradients, blurred blobs and
fine grain, closer to a diffusion sample than pure noise; they are written once into
`$TMPDIR/lora-mcp-bench-compare/` and reused.

Each call is one `compare_checkpoints` through an in-memory `mcp.Client(build_server(settings))`; response bytes are
the whole `CallToolResult` as JSON (text part, structured content, base64 PNG). The first call decodes the 63 JPEGs
the 20 drawn rows need with the page cache warm; later calls repeat it (nothing is cached by the tool).
Target: the grid PNG <= 1.5 MB and a call < 5 s (exit 1 if missed).
Usage: python benchmarks/bench_compare_checkpoints.py [--runs N] [--regenerate]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
import yaml
from mcp import Client
from PIL import Image, ImageFilter
from safetensors.numpy import save_file

from lora_mcp.jobs.models import JobState
from lora_mcp.jobs.store import JobStore
from lora_mcp.server.app import build_server
from lora_mcp.settings import get_settings

NAME, TRIGGER, PROMPTS = "bench_lora", "ohwx", ["a photo of [trigger]", "[trigger] in a park", "[trigger], studio"]
SAVE_EVERY, CHECKPOINTS, FINAL_STEP = 250, 40, 10_250
TARGET_BYTES, TARGET_S = 1_500_000, 5.0


def sample_image(step: int, index: int, side: int = 1024) -> Image.Image:
    """A photo-like 1024 px picture: a gradient, blurred blobs, fine grain (seeded by step and prompt)."""
    rng = np.random.default_rng(step * 7 + index)
    y, x = np.mgrid[0:side, 0:side] / side
    base = np.stack([x * 200 + 30 * index, y * 180 + 20, (1 - x) * 150 + step % 97], axis=-1)
    blobs = Image.fromarray(rng.integers(0, 255, (side // 32, side // 32, 3), dtype=np.uint8)).resize((side, side))
    blobs = blobs.filter(ImageFilter.GaussianBlur(12))
    pixels = 0.55 * base + 0.45 * np.asarray(blobs, dtype=np.float64) + rng.normal(0, 6, (side, side, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_run(folder: Path, regenerate: bool) -> Path:
    """The AI-Toolkit output folder `<folder>/<NAME>` (generated once, reused while its marker is there)."""
    out = folder / NAME
    marker = out / ".complete"
    if marker.exists() and not regenerate:
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "samples").mkdir(parents=True)
    start = time.perf_counter()
    ms = 1_764_000_000_000
    for step in [0, *(SAVE_EVERY * k for k in range(1, CHECKPOINTS + 1)), FINAL_STEP]:
        for i in range(len(PROMPTS)):
            ms += 1
            sample_image(step, i).save(out / "samples" / f"{ms}__{step:09d}_{i}.jpg", quality=90)
        if 0 < step <= SAVE_EVERY * CHECKPOINTS:
            (out / f"{NAME}_{step:09d}.safetensors").write_bytes(os.urandom(1 << 16))
    tensors = {"lora_A": np.zeros((16, 64), dtype=np.float16)}
    save_file(tensors, str(out / f"{NAME}.safetensors"), metadata={"training_info": f'{{"step": {FINAL_STEP}}}'})
    marker.touch()
    print(f"generated {len(list((out / 'samples').iterdir()))} samples in {time.perf_counter() - start:.1f} s")
    return out


def make_job(training_folder: Path) -> str:
    """A succeeded train job record for the run, with its frozen config and a log with the loss bar."""
    settings = get_settings()
    settings.ensure_dirs()
    job_id = "train-20261130-000000-bench0"
    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    process = {
        "type": "diffusion_trainer",
        "training_folder": str(training_folder),
        "trigger_word": TRIGGER,
        "save": {"save_every": SAVE_EVERY},
        "sample": {"samples": [{"prompt": p} for p in PROMPTS]},
    }
    config = {"job": "extension", "config": {"name": NAME, "process": [process]}}
    (job_dir / "config.yaml").write_text(yaml.safe_dump(config))
    bar = "".join(
        f"\r{NAME}: {s * 100 // FINAL_STEP:3d}%| | {s}/{FINAL_STEP} [00:10<00:10, 1.00it/s, lr: 1.0e-04 "
        f"loss: {0.3 + 0.2 * np.exp(-s / 3000):.3e}]"
        for s in range(10, FINAL_STEP + 1, 10)
    )
    (job_dir / "log.txt").write_text(f"Running 1 job\n{bar}\n")
    params = {"name": NAME, "training_folder": str(training_folder), "steps": FINAL_STEP}
    store = JobStore(settings.db_path, settings.jobs_dir)
    store.insert(id=job_id, kind="train", lane_kind="gpu", job_dir=job_dir, params=params)
    store.update(job_id, state=JobState.SUCCEEDED.value, started_at=time.time() - 60, finished_at=time.time())
    return job_id


async def call(job_id: str, runs: int) -> tuple[list[float], int, int, tuple[int, int], int, int]:
    """Time `runs` compare_checkpoints calls; sizes of the last response."""
    times: list[float] = []
    async with Client(build_server(get_settings())) as client:
        for _ in range(runs):
            start = time.perf_counter()
            result = await client.call_tool("compare_checkpoints", {"job_id": job_id})
            times.append(time.perf_counter() - start)
            assert not result.is_error, result.content
    image = next(c for c in result.content if c.type == "image")
    png = base64.b64decode(image.data)  # type: ignore[union-attr]
    with Image.open(io.BytesIO(png)) as grid:
        size = grid.size
    data = result.structured_content or {}
    response = len(result.model_dump_json(by_alias=True, exclude_none=True))
    drawn = sum(1 for c in data.get("checkpoints", []) if c["in_grid"])
    return times, response, len(png), size, int(data.get("tile_px", 0)), drawn


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "lora-mcp-bench-compare"
    out = make_run(cache / "training", args.regenerate)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(LORA_MCP_HOME=str(Path(tmp) / "state"), LORA_MCP_ROOTS=str(cache))
        get_settings.cache_clear()
        job_id = make_job(out.parent)
        times, response, png, size, tile, drawn = anyio.run(call, job_id, args.runs)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"checkpoints: {CHECKPOINTS} + final, prompts: {len(PROMPTS)}, samples 1024 px JPEG; rows drawn: {drawn}")
    print(f"grid: {size[0]} x {size[1]} px, tiles {tile} px, PNG {png:,} bytes; response {response:,} bytes")
    print(f"time per call: first {times[0]:.2f} s, median {statistics.median(times):.2f} s over {len(times)} calls")
    ok = png <= TARGET_BYTES and statistics.median(times) < TARGET_S
    print("target met" if ok else f"TARGET MISSED (PNG <= {TARGET_BYTES:,} bytes, < {TARGET_S} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
