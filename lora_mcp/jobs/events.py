"""The job event log: what happened to each job, in order, durable in jobs.db.

The manager records an event with the write that causes it (a state change and its event commit together), so
every manager sharing a database records each transition exactly once. Readers follow the log by `seq`: the REST
API's server-sent events resume from `Last-Event-ID`, and the webhook outbox keeps its own cursor, so an event
written before a crash is still delivered after it.

Progress is recorded when the phase changes at once, and step by step at most every PROGRESS_EVERY seconds per job.
Checkpoints and samples are recorded when the job's outputs list a new one (or when it ends).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lora_mcp.jobs.models import JobState, Progress

QUEUED = "job.queued"
STARTED = "job.started"
PROGRESS = "job.progress"
CHECKPOINT = "job.checkpoint"
SAMPLE = "job.sample"
SUCCEEDED = "job.succeeded"
FAILED = "job.failed"
CANCELLED = "job.cancelled"
LORA_EXPORTED = "lora.exported"

EVENT_TYPES = (QUEUED, STARTED, PROGRESS, CHECKPOINT, SAMPLE, SUCCEEDED, FAILED, CANCELLED, LORA_EXPORTED)
FINAL = {JobState.SUCCEEDED: SUCCEEDED, JobState.FAILED: FAILED, JobState.CANCELLED: CANCELLED}

PROGRESS_EVERY = 0.1
"""Seconds between two progress events of one job (a phase change is recorded at once)."""

ARTIFACT_EVENTS: Mapping[str, str] = {"checkpoints": CHECKPOINT, "samples": SAMPLE}
"""Which list in a job's outputs announces which event; a kind handler may set its own `artifact_events`."""


def progress_data(progress: Progress) -> dict[str, Any]:
    """The part of a progress snapshot an event carries."""
    return progress.model_dump(mode="json", exclude={"checkpoints_saved"})


def artifact_path(entry: Any) -> str:
    """The path of one outputs entry (a dict with `path`, or the path itself)."""
    return str(entry["path"]) if isinstance(entry, dict) else str(entry)


def new_artifacts(
    outputs: Mapping[str, Any], seen: set[str], mapping: Mapping[str, str] = ARTIFACT_EVENTS
) -> list[tuple[str, dict[str, Any]]]:
    """Events for the outputs entries whose path is not in `seen` (which this adds them to), in listing order."""
    found = []
    for key, kind in mapping.items():
        entries = outputs.get(key)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            path = artifact_path(entry)
            if path not in seen:
                seen.add(path)
                found.append((kind, dict(entry) if isinstance(entry, dict) else {"path": path}))
    return found


def preexisting(outputs: Mapping[str, Any], before: float, mapping: Mapping[str, str] = ARTIFACT_EVENTS) -> set[str]:
    """Paths listed in `outputs` whose files are older than `before`: left by an earlier run, not news."""
    old = set()
    for key in mapping:
        for entry in outputs.get(key) or []:
            path = artifact_path(entry)
            try:
                if Path(path).stat().st_mtime < before:
                    old.add(path)
            except OSError:
                continue
    return old


def scrub(data: Mapping[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    """`data` with every text passed through `redact` (event data comes from the trainer's log and outputs)."""
    text = json.dumps(data, default=str)
    return dict(json.loads(redact(text)))
