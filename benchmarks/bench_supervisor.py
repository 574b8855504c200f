"""Supervisor overhead: a child that writes 50 MB of log lines, alone vs under `python -m lora_mcp.jobs.supervisor`.

alone:      the child spawned with stdout and stderr on a file, timed from spawn to its exit.
supervised: the supervisor spawned with the same child, timed from spawn to JOB_DIR/exit_code.json appearing.
managed:    (with --managed) the same child submitted to a JobManager whose thread tails and parses the log every
            0.1 s, timed from submit to exit_code.json.
Runs alternate (alone, supervised[, managed]) after one warm-up each; medians and ratios are printed
(target: supervised <= 1.05 x alone). Nothing is subtracted. Usage:
    python benchmarks/bench_supervisor.py [--runs N] [--mb 50] [--managed]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The child: tqdm-like repaints of a training bar plus a plain line every 50 steps, ~100 bytes each, written
# unbuffered the way the manager starts trainers (PYTHONUNBUFFERED=1); one write per line.
CHILD = r"""
import sys
target = int(sys.argv[1])
write = sys.stderr.write
written = step = 0
while written < target:
    step += 1
    line = f"\rbench:  42%|####      | {step}/999999 [01:02<01:30,  3.21it/s, lr: 1.0e-04 loss: 4.123e-01]"
    if step % 50 == 0:
        line += f"\nSaving at step {step} (a plain line between repaints, as AI-Toolkit prints them)\n"
    write(line)
    written += len(line)
"""
POLL = 0.002  # how often the timer looks for the end (the same for every mode)


def child_command(tmp: Path, size: int) -> list[str]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), str(size)]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_alone(tmp: Path, command: list[str]) -> float:
    log = tmp / "alone.log"
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=child_env()
        )
        while proc.poll() is None:
            time.sleep(POLL)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {proc.returncode}")
    log.unlink()
    return elapsed


def run_supervised(tmp: Path, command: list[str], n: int) -> float:
    job_dir = tmp / f"sup-{n}"
    job_dir.mkdir()
    exit_file = job_dir / "exit_code.json"
    supervisor = [sys.executable, "-m", "lora_mcp.jobs.supervisor", str(job_dir), str(tmp), "--", *command]
    start = time.perf_counter()
    proc = subprocess.Popen(
        supervisor, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=child_env(), start_new_session=True
    )
    while not exit_file.exists():
        if proc.poll() is not None and not exit_file.exists():
            raise RuntimeError(f"supervisor exited {proc.returncode} without an exit code file")
        time.sleep(POLL)
    elapsed = time.perf_counter() - start
    proc.wait()
    for path in job_dir.iterdir():
        path.unlink()
    job_dir.rmdir()
    return elapsed


class BenchKind:
    """A job kind whose child is the log writer (the real AI-Toolkit parser tails it)."""

    lane_kind = "cpu"

    def __init__(self, command: list[str]) -> None:
        from lora_mcp.jobs.models import JobKind

        self.kind = JobKind.TRAIN
        self.command = command

    def launch_spec(self, job: Any, settings: Any) -> Any:
        from lora_mcp.jobs.kinds import LaunchSpec

        return LaunchSpec(command=self.command, cwd=job.job_dir)

    def make_parser(self, job: Any) -> Any:
        from lora_mcp.training.logparse import AitkLogParser

        return AitkLogParser(job_name="bench", total_steps=999999)

    def outputs(self, job: Any) -> dict[str, Any]:
        return {}

    def outcome(self, job: Any, returncode: int | None, parser: Any, cancel_requested: bool) -> Any:
        from lora_mcp.jobs.kinds import Outcome
        from lora_mcp.jobs.models import JobState

        return Outcome(JobState.SUCCEEDED if returncode == 0 else JobState.FAILED)


def run_managed(manager: Any, kind: Any) -> tuple[float, int]:
    """Seconds from submit to exit_code.json, and the step the manager's parser had read by then."""
    start = time.perf_counter()
    job = manager.submit(kind, {"name": "bench"})
    exit_file = job.job_dir / "exit_code.json"
    while not exit_file.exists():
        time.sleep(POLL)
    elapsed = time.perf_counter() - start
    while not manager.get(job.id).state.final:
        time.sleep(0.05)
    return elapsed, manager.get(job.id).progress.step


def summary(name: str, values: list[float], base: list[float] | None) -> str:
    """Median and min; against `base` (paired runs): ratio of medians, ratio of mins, median paired difference."""
    line = f"{name:<11} median {statistics.median(values):.3f} s  min {min(values):.3f} s  max {max(values):.3f} s"
    if base:
        diffs = [(v - b) * 1000 for v, b in zip(values, base, strict=True)]
        line += (
            f"  ratio of medians {statistics.median(values) / statistics.median(base):.3f}"
            f"  ratio of mins {min(values) / min(base):.3f}  median paired diff {statistics.median(diffs):+.0f} ms"
        )
    return line


def fixed_cost(tmp: Path, runs: int = 15) -> tuple[float, float]:
    """Median seconds to run `/bin/true` alone and under the supervisor: the cost that does not grow with the log."""
    true = ["/bin/true"]
    alone = statistics.median(run_alone(tmp, true) for _ in range(runs))
    supervised = statistics.median(run_supervised(tmp, true, 1000 + n) for n in range(runs))
    return alone, supervised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per mode (default 7)")
    parser.add_argument("--mb", type=float, default=50, help="MB of log the child writes (default 50)")
    parser.add_argument("--managed", action="store_true", help="also run through a ticking JobManager")
    args = parser.parse_args()
    size = int(args.mb * 1e6)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        command = child_command(tmp, size)
        manager = kind = None
        if args.managed:
            from lora_mcp.jobs.manager import JobManager
            from lora_mcp.jobs.models import JobKind
            from lora_mcp.settings import Settings

            settings = Settings(home=tmp / "state", roots=[tmp])
            settings.jobs_dir.mkdir(parents=True)
            manager = JobManager(settings, [BenchKind(command)])
            manager.start()
            kind = JobKind.TRAIN
        times: dict[str, list[float]] = {"alone": [], "supervised": [], "managed": []}
        steps: list[int] = []
        run_alone(tmp, command)
        run_supervised(tmp, command, -1)
        for n in range(args.runs):
            times["alone"].append(run_alone(tmp, command))
            times["supervised"].append(run_supervised(tmp, command, n))
            if manager is not None:
                elapsed, step = run_managed(manager, kind)
                times["managed"].append(elapsed)
                steps.append(step)
            print(
                f"run {n + 1}: "
                + "  ".join(f"{name} {values[-1]:.3f} s" for name, values in times.items() if values)
                + f"  (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
        if manager is not None:
            manager.stop()
    print(f"\n{args.mb:g} MB of log lines, {args.runs} runs per mode, Python {platform.python_version()}, ", end="")
    print(f"{os.cpu_count()} CPUs")
    print(summary("alone", times["alone"], None))
    print(summary("supervised", times["supervised"], times["alone"]))
    if times["managed"]:
        print(summary("managed", times["managed"], times["alone"]))
        print(f"managed: the step the parser had read at the end, every run: {sorted(set(steps))}")
    with tempfile.TemporaryDirectory() as tmp_name:
        alone, supervised = fixed_cost(Path(tmp_name))
    print(f"fixed cost (/bin/true as the child): alone {alone * 1000:.1f} ms, supervised {supervised * 1000:.1f} ms")


if __name__ == "__main__":
    main()
