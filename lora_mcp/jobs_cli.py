"""`lora-mcp train` and `lora-mcp jobs ...`: the job system for people at a terminal (application layer: it opens
the manager with every kind, through lora_mcp.assembly)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio

from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState, Progress
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import get_settings


def open_manager() -> JobManager:
    from lora_mcp.assembly import open_manager as open_for

    return open_for(get_settings())


def bar(progress: Progress, state: JobState, width: int = 30) -> str:
    """One line: a bar, step/total, loss, ETA and the newest message."""
    total = progress.total_steps or 0
    filled = int(width * progress.step / total) if total else 0
    parts = [
        f"[{'#' * filled}{'.' * (width - filled)}]",
        f"{progress.step}/{total or '?'}",
        state.value,
        progress.phase.value,
    ]
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4g}")
    if progress.eta_seconds:
        parts.append(f"eta {int(progress.eta_seconds // 60)}m{int(progress.eta_seconds % 60):02d}s")
    return " ".join(parts)[:160]


def follow(manager: JobManager, job_id: str) -> JobStatus:
    """Print a live progress line on stderr until the job ends; Ctrl-C detaches and leaves the job running."""
    manager.start()
    tty = sys.stderr.isatty()

    async def on_change(job: JobRecord, progress: Progress) -> None:
        line = bar(progress, job.state)
        print(f"\r{line:<160}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        while True:
            job = anyio.run(manager.wait, job_id, 30.0, on_change)
            if job.state.final:
                break
    except KeyboardInterrupt:
        print(f"\nDetached; the job keeps running. Stop it with: lora-mcp jobs cancel {job_id}", file=sys.stderr)
    finally:
        if tty:
            print(file=sys.stderr)
        manager.stop()
    return job_status(manager, manager.get(job_id))


def show(status: JobStatus, as_json: bool) -> None:
    if as_json:
        print(status.model_dump_json(indent=2))
        return
    print(
        f"{status.job_id}  {status.kind.value}  {status.state.value}  {status.phase.value}  "
        f"step {status.step}/{status.total_steps or '?'}"
    )
    if status.message:
        print(f"  {status.message}")
    if status.error:
        print(f"  error {status.error.code}: {status.error.message}\n  hint: {status.error.hint}")
    if status.outputs.lora_path:
        print(f"  lora: {status.outputs.lora_path}")
    print(f"  next: {status.next_step}")


def cmd_train(args: argparse.Namespace) -> int:
    from lora_mcp.training.service import start_training

    manager = open_manager()
    status = start_training(manager, args.config, args.idempotency_key)
    print(f"queued {status.job_id}", file=sys.stderr)
    if args.wait:
        status = follow(manager, status.job_id)
    show(status, args.json)
    return 0 if status.state in (JobState.SUCCEEDED, JobState.QUEUED, JobState.RUNNING) else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    manager = open_manager()
    if args.jobs_command == "list":
        kind = JobKind(args.kind) if args.kind else None
        state = JobState(args.state) if args.state else None
        statuses = [job_status(manager, job) for job in manager.store.list_jobs(kind=kind, state=state)]
        if args.json:  # one JSON document, so `| jq` works
            print(json.dumps([s.model_dump(mode="json") for s in statuses], indent=2))
            return 0
        for status in statuses:
            show(status, False)
        return 0
    if args.jobs_command == "logs":
        lines = manager.tail(args.job_id, args.tail)
        print(json.dumps({"job_id": args.job_id, "lines": lines}, indent=2) if args.json else "\n".join(lines))
        return 0
    if args.jobs_command == "cancel":
        manager.cancel(args.job_id)
        if args.wait:
            # SIGINT is sent; finishing the record needs someone watching, so watch until it ends.
            deadline = time.monotonic() + manager.cancel_grace_seconds + 30
            while not manager.get(args.job_id).state.final and time.monotonic() < deadline:
                manager.tick()
                time.sleep(manager.poll_interval)
    status = (
        follow(manager, args.job_id) if args.jobs_command == "wait" else job_status(manager, manager.get(args.job_id))
    )
    show(status, args.json)
    return 1 if args.jobs_command == "wait" and status.state in (JobState.FAILED, JobState.CANCELLED) else 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `train` and `jobs` to the top-level parser."""
    train = sub.add_parser("train", help="Queue an AI-Toolkit config as a training job.")
    train.add_argument("config", help="Path of the AI-Toolkit YAML (inside LORA_MCP_ROOTS).")
    train.add_argument("--wait", action="store_true", help="Follow the job with a progress bar until it ends.")
    train.add_argument("--idempotency-key")
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=cmd_train)

    jobs = sub.add_parser("jobs", help="List, show, wait for, cancel jobs and read their logs.")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = jobs_sub.add_parser("list")
    listing.add_argument("--kind", choices=[k.value for k in JobKind])
    listing.add_argument("--state", choices=[s.value for s in JobState])
    for name in ("show", "wait", "cancel", "logs"):
        p = jobs_sub.add_parser(name)
        p.add_argument("job_id")
        if name == "logs":
            p.add_argument("--tail", type=int, default=200)
        if name == "cancel":
            p.add_argument("--wait", action="store_true", help="Wait until the job has stopped.")
    for p in [listing, *(jobs_sub.choices[n] for n in ("show", "wait", "cancel", "logs"))]:
        p.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=cmd_jobs)
