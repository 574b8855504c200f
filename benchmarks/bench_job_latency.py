"""Progress latency over stdio: a line the trainer writes -> the progress notification in an MCP client.

A stand-in AI-Toolkit (a temp folder holding a `run.py`, via LORA_MCP_AI_TOOLKIT_DIR) repaints the training bar once
per step, as tqdm does, and records `step wall-clock-time` in a side file right after each write. The client runs
`python -m lora_mcp serve` over stdio, starts the job with start_training and calls wait_for_job in a loop with a
progress callback; the arrival time of the first notification for each step, minus the time the step was written,
is one sample. Prints p50/p90/p99/max (target p99 < 250 ms) and the server's CPU use while it watched the job.
Usage: python benchmarks/bench_job_latency.py [--steps 250] [--step-delay 0.2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

# Parses the config like AI-Toolkit would need to (name, steps), repaints the bar, writes the final LoRA.
TRAINER = r"""
import json, os, sys, time, yaml
config = yaml.safe_load(open(sys.argv[1]))
process = config["config"]["process"][0]
name, steps = config["config"]["name"], int(process["train"]["steps"])
delay = float(os.environ["BENCH_STEP_DELAY"])
stamps = open(os.environ["BENCH_STAMPS"], "a", buffering=1)
print(f"# Running job: {name}", flush=True)
for step in range(1, steps + 1):
    time.sleep(delay)
    sys.stderr.write(
        f"\r{name}:  {100 * step // steps:3d}%|#         | {step}/{steps} [00:{step % 60:02d}<00:10,  5.00it/s, "
        f"lr: 1.0e-04 loss: 4.123e-01]"
    )
    sys.stderr.flush()
    stamps.write(f"{step} {time.time()}\n")
sys.stderr.write("\n")
out = os.path.join(process["training_folder"], name)
os.makedirs(out, exist_ok=True)
header = json.dumps({"__metadata__": {"training_info": json.dumps({"step": steps})}}).encode()
with open(os.path.join(out, f"{name}.safetensors"), "wb") as fh:
    fh.write(len(header).to_bytes(8, "little") + header)
print(f"Saved checkpoint to {out}/{name}.safetensors", flush=True)
"""


def make_dataset(folder: Path, count: int = 10) -> None:
    """Small real images with captions, so the preflight's inspect_dataset passes."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize((512, 512), Image.Resampling.BILINEAR).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a photo of ohwx, picture {i}")


def write_config(root: Path, steps: int) -> Path:
    from lora_mcp.settings import get_settings
    from lora_mcp.training.config import LoRATrainingConfig
    from lora_mcp.training.generate import generate_training_config

    make_dataset(root / "dataset")
    fields = {"name": "latency", "dataset_folder": str(root / "dataset"), "trigger_word": "ohwx", "steps": steps}
    config = LoRATrainingConfig(**fields, save_every=steps, sample_every=steps, vram_gb=24)
    return Path(generate_training_config(config, get_settings()).config_path)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid() -> int | None:
    """The pid of the `lora_mcp serve` child of this process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if ppid == os.getpid() and b"serve" in cmdline:
            return int(entry)
    return None


async def follow(client: Client, job_id: str, arrivals: dict[int, float]) -> dict[str, object]:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        arrivals.setdefault(int(progress), time.time())

    while True:
        result = await client.call_tool(
            "wait_for_job", {"job_id": job_id, "timeout_seconds": 30}, progress_callback=on_progress
        )
        status = result.structured_content
        assert not result.is_error and status is not None, result.content
        if status["state"] in ("succeeded", "failed", "cancelled"):
            return status


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(steps: int, delay: float) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        toolkit, root, stamps = tmp / "aitk", tmp / "root", tmp / "stamps.txt"
        toolkit.mkdir()
        root.mkdir()
        (toolkit / "run.py").write_text(TRAINER)
        env = {
            **os.environ,
            "LORA_MCP_HOME": str(tmp / "state"),
            "LORA_MCP_ROOTS": str(root),
            "LORA_MCP_AI_TOOLKIT_DIR": str(toolkit),
            "LORA_MCP_AI_TOOLKIT_PYTHON": sys.executable,
            "BENCH_STEP_DELAY": str(delay),
            "BENCH_STAMPS": str(stamps),
        }
        os.environ.update(env)
        config = write_config(root, steps)
        arrivals: dict[int, float] = {}
        params = StdioServerParameters(command=sys.executable, args=["-m", "lora_mcp", "serve"], env=env)
        async with Client(params) as client:
            started = await client.call_tool("start_training", {"config_path": str(config)})
            assert not started.is_error, started.content
            job_id = started.structured_content["job_id"]
            pid = server_pid()
            cpu0, wall0 = (cpu_seconds(pid) if pid else 0.0), time.monotonic()
            status = await follow(client, job_id, arrivals)
            cpu = (cpu_seconds(pid) - cpu0) if pid else float("nan")
            wall = time.monotonic() - wall0
        written = {int(s): float(t) for s, t in (line.split() for line in stamps.read_text().splitlines())}
    latencies = [(arrivals[s] - t) * 1000 for s, t in written.items() if s in arrivals]
    missed = len(written) - len(latencies)
    print(
        f"job {status['state']}; {steps} steps, {delay} s per step; {len(latencies)} samples, {missed} steps coalesced"
    )
    print(
        f"latency ms: p50 {percentile(latencies, 50):.1f}  p90 {percentile(latencies, 90):.1f}  "
        f"p99 {percentile(latencies, 99):.1f}  max {max(latencies):.1f}  mean {statistics.mean(latencies):.1f}"
    )
    print(f"server CPU while watching: {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.1f}% of one core")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="training steps = samples (default 250, min 100)")
    parser.add_argument("--step-delay", type=float, default=0.2, help="seconds per step (default 0.2)")
    args = parser.parse_args()
    anyio.run(run, args.steps, args.step_delay)


if __name__ == "__main__":
    main()
