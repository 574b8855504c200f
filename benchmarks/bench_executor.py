"""Executor latency, local vs Ray: submit -> first progress, and each step written -> that step seen by the manager.

A stand-in trainer repaints AI-Toolkit's tqdm bar once per step and records `step wall-clock-time` in a side file
right after each write. One job runs through each executor: `local` (the supervisor on this machine) and `ray` (a
one-node CPU Ray head on 127.0.0.1 started here, stopped at the end) at two poll intervals. A thread samples
`JobManager.live_progress` (what wait_for_job reads) every 2 ms; the first time a step is seen minus the time it was
written is one sample (a step counts as seen when it or any later step is first shown: a poll may skip steps).
Prints submit -> first step written, submit -> first progress seen, p50/p90/max per step, and how many distinct
steps were shown. The first Ray job runs on a freshly started head (poll 0.5 s), the second on a warm one.
Usage: python benchmarks/bench_executor.py [--steps 60] [--step-delay 0.1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

TRAINER = r"""
import os, sys, time
steps, delay = int(sys.argv[1]), float(sys.argv[2])
stamps = open(sys.argv[3], "a", buffering=1)
print("# Running job: bench", flush=True)
for step in range(1, steps + 1):
    time.sleep(delay)
    sys.stderr.write(
        f"\rbench:  {100 * step // steps:3d}%|#         | {step}/{steps} [00:{step % 60:02d}<00:10,  5.00it/s, "
        f"lr: 1.0e-04 loss: 4.123e-01]"
    )
    sys.stderr.flush()
    stamps.write(f"{step} {time.time()}\n")
sys.stderr.write("\n")
"""


class BenchKind:
    """A train-lane kind whose child is the stand-in trainer (the executor is what is measured, not the kind)."""

    def __init__(self, trainer: Path, steps: int, delay: float) -> None:
        from lora_mcp.jobs.models import JobKind

        self.kind, self.lane_kind = JobKind.TRAIN, "gpu"
        self.trainer, self.steps, self.delay = trainer, steps, delay

    def launch_spec(self, job: Any, settings: Any) -> Any:
        from lora_mcp.jobs.kinds import LaunchSpec

        stamps = job.job_dir / "stamps.txt"
        command = [sys.executable, str(self.trainer), str(self.steps), str(self.delay), str(stamps)]
        return LaunchSpec(command=command, cwd=job.job_dir)

    def make_parser(self, job: Any) -> Any:
        from lora_mcp.training.logparse import AitkLogParser

        return AitkLogParser(job_name="bench", total_steps=self.steps)

    def outputs(self, job: Any) -> dict[str, Any]:
        return {}

    def outcome(self, job: Any, returncode: int | None, parser: Any, cancel_requested: bool) -> Any:
        from lora_mcp.jobs.kinds import Outcome
        from lora_mcp.jobs.models import JobState

        return Outcome(JobState.SUCCEEDED if returncode == 0 else JobState.FAILED)


def run_one(executor_name: str, home: Path, steps: int, delay: float, **ray: Any) -> dict[str, Any]:
    """One job through one executor; returns the measured latencies (seconds)."""
    from lora_mcp.jobs.executors import LocalExecutor
    from lora_mcp.jobs.executors.ray import RayExecutor
    from lora_mcp.jobs.manager import JobManager
    from lora_mcp.jobs.models import JobKind
    from lora_mcp.settings import Settings

    settings = Settings(home=home, roots=[home / "root"])
    settings.ensure_dirs()
    trainer = home / "trainer.py"
    trainer.write_text(TRAINER)
    executor = RayExecutor(**ray) if executor_name == "ray" else LocalExecutor()
    manager = JobManager(settings, [BenchKind(trainer, steps, delay)], executor=executor)  # type: ignore[list-item]
    manager.start()
    seen: dict[int, float] = {}
    t_submit = time.time()
    job = manager.submit(JobKind.TRAIN, {"name": "bench"})
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            step = manager.live_progress(manager.get(job.id)).step
            seen.setdefault(step, time.time())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    while not manager.get(job.id).state.final:
        time.sleep(0.05)
    stop.set()
    watcher.join()
    manager.stop()
    final = manager.get(job.id)
    stamps = dict(
        (int(a), float(b))
        for a, b in (line.split() for line in (final.job_dir / "stamps.txt").read_text().split("\n") if line)
    )
    # A step counts as seen when the manager first shows it or any later step (a poll may skip steps).
    lat = [min(t for k, t in seen.items() if k >= s) - stamps[s] for s in range(1, steps + 1) if s in stamps]
    first_seen = min(t for s, t in seen.items() if s >= 1)
    return {
        "state": final.state.value,
        "first_written": stamps[1] - t_submit,
        "first_seen": first_seen - t_submit,
        "steps_shown": sum(1 for k in seen if k >= 1),
        "p50": statistics.median(lat),
        "p90": statistics.quantiles(lat, n=10)[-1],
        "max": max(lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--step-delay", type=float, default=0.1)
    args = parser.parse_args()
    from real_ray_check import start_head

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; {args.steps} steps of {args.step_delay}s")
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-exec-") as tmp:
        rows.append(("local", run_one("local", Path(tmp) / "local", args.steps, args.step_delay)))
        t0 = time.monotonic()
        address, temp = start_head()
        print(f"ray head started in {time.monotonic() - t0:.1f}s at {address}")
        try:
            for interval in (0.5, 0.1):
                home = Path(tmp) / f"ray-{interval}"
                rows.append(
                    (
                        f"ray (poll {interval}s)",
                        run_one("ray", home, args.steps, args.step_delay, address=address, gpus_per_job=0,
                                poll_interval=interval),
                    )
                )  # fmt: skip
        finally:
            import shutil
            import subprocess

            subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
            shutil.rmtree(temp, ignore_errors=True)
    print(
        "| executor | state | submit -> first step written | submit -> first progress seen | step written -> seen "
        "p50 | p90 | max | distinct steps shown |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['state']} | {r['first_written']:.2f} s | {r['first_seen']:.2f} s | "
            f"{1000 * r['p50']:.0f} ms | {1000 * r['p90']:.0f} ms | {1000 * r['max']:.0f} ms | "
            f"{r['steps_shown']} of {args.steps} |"
        )


if __name__ == "__main__":
    main()
