"""The job status an agent reads: one shape for every kind, filled in by the kind's handler.

The jobs layer fills the common fields (state, progress, timing, queue position). What is particular to a kind (its
next steps, extra fields such as a train job's `training_result`) comes from its `KindHandler`; nothing here names a
kind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SerializeAsAny

from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase, Progress
from lora_mcp.jobs.records import LAUNCH_NOTES_NAME, read_launch_notes, write_launch_notes
from lora_mcp.jobs.store import JobRecord

if TYPE_CHECKING:  # the manager imports nothing from here; at run time the argument is duck-typed the same way
    from lora_mcp.jobs.manager import JobManager

__all__ = [
    "LAUNCH_NOTES_NAME",
    "NEXT_STEP",
    "JobList",
    "JobLogs",
    "JobOutputs",
    "JobStatus",
    "StatusPart",
    "build_status",
    "job_outputs",
    "job_status",
    "read_launch_notes",
    "redacted",
    "write_launch_notes",
]

NEXT_STEP = {
    JobState.QUEUED: "Call wait_for_job to follow it; it starts when its lane is free.",
    JobState.RUNNING: "Call wait_for_job again (it returns within ~45 s) until the state is final.",
    JobState.SUCCEEDED: "Done. outputs lists what the job produced.",
    JobState.FAILED: "Read error.hint, fix the cause, then start the job again.",
    JobState.CANCELLED: "Cancelled.",
}
"""The generic next step per state; a kind's `next_steps` replaces the ones it knows better."""

EXTRA_FIELDS = ("training_result", "upload", "webhooks")
"""JobStatus fields filled from outside the jobs layer (each a StatusPart subclass, or None): `training_result` by
the train kind's `status_extras` (the name it had before kinds described themselves, so the JSON an agent reads did
not change); `upload` and `webhooks` by the manager's `status_parts`, which the application wires in."""

StatusParts = Callable[[JobRecord], dict[str, Any]]
"""Fills some EXTRA_FIELDS of any job's status (e.g. where its LoRA was uploaded, how its webhooks went)."""


class StatusPart(BaseModel):
    """A part of a job's status that a layer above the jobs layer describes (its fields are that layer's)."""


class JobOutputs(BaseModel):
    """Files a job produced: a LoRA, its checkpoints and samples where the kind makes them; anything else in details."""

    lora_path: str | None = None
    checkpoints: list[str] = Field(default_factory=list)
    samples: list[str] = Field(default_factory=list)
    output_dir: str | None = None
    lora_metadata: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)


class JobStatus(BaseModel):
    """Where a job stands."""

    job_id: str
    kind: JobKind
    state: JobState
    phase: Phase
    step: int
    total_steps: int | None
    loss: float | None
    learning_rate: float | None
    eta_seconds: float | None
    elapsed_seconds: float | None
    queue_position: int | None = Field(description="1 = next to start on its lane; null unless queued.")
    message: str = Field(description="The newest meaningful log line, or what happened.")
    error: JobError | None
    outputs: JobOutputs
    resumed_from: str | None = None
    cancel_requested: bool = False
    launch_notes: list[str] = Field(
        default_factory=list,
        description="What lora-mcp did just before the job started, e.g. asking ComfyUI and Ollama to free GPU memory.",
    )
    training_result: SerializeAsAny[StatusPart] | None = Field(
        None,
        description="For a finished train job: success, lora_path, output_dir, config_path, steps, "
        "training_time_seconds, started_at, finished_at and error in one place.",
    )
    upload: SerializeAsAny[StatusPart] | None = Field(
        None,
        description="With LORA_MCP_UPLOAD_ON_SUCCESS: the automatic S3 upload of the LoRA (state pending, done or "
        "failed; uri, a presigned url, attempts, error).",
    )
    webhooks: SerializeAsAny[StatusPart] | None = Field(
        None,
        description="With LORA_MCP_WEBHOOK_URLS: this job's webhook deliveries (delivered, pending, failed, "
        "last_error, last_delivered_at).",
    )
    next_step: str = Field(description="What to call next.")


class JobList(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobStatus]


class JobLogs(BaseModel):
    """The last lines of a job's log (carriage-return repaints collapsed to their final state, secrets redacted)."""

    job_id: str
    lines: list[str]


def job_outputs(raw: dict[str, Any]) -> JobOutputs:
    """Shape a kind's raw outputs dict for the agent (keys JobOutputs names go to their fields, the rest to details)."""
    known = {k: raw.get(k) for k in ("lora_path", "output_dir") if raw.get(k) is not None}
    return JobOutputs(
        **known,
        checkpoints=[c["path"] if isinstance(c, dict) else str(c) for c in raw.get("checkpoints", [])],
        samples=[s["path"] if isinstance(s, dict) else str(s) for s in raw.get("samples", [])],
        lora_metadata=raw.get("lora_metadata") or {},
        details={
            k: v
            for k, v in raw.items()
            if k not in {"lora_path", "output_dir", "checkpoints", "samples", "lora_metadata"}
        },
    )


def build_status(
    job: JobRecord, *, progress: Progress, queue_position: int | None, outputs: dict[str, Any]
) -> JobStatus:
    """Combine the stored record, the freshest progress and the current outputs."""
    end = job.finished_at or time.time()
    return JobStatus(
        job_id=job.id,
        kind=job.kind,
        state=job.state,
        phase=progress.phase,
        step=progress.step,
        total_steps=progress.total_steps or job.params.get("steps"),
        loss=progress.loss,
        learning_rate=progress.learning_rate,
        eta_seconds=progress.eta_seconds if job.state == JobState.RUNNING else None,
        elapsed_seconds=round(end - job.started_at, 1) if job.started_at else None,
        queue_position=queue_position,
        message=progress.message,
        error=job.error,
        outputs=job_outputs(outputs),
        resumed_from=job.resumed_from,
        cancel_requested=job.cancel_requested_at is not None,
        launch_notes=read_launch_notes(job.job_dir),
        next_step=NEXT_STEP[job.state],
    )


def job_status(manager: JobManager, job: JobRecord) -> JobStatus:
    """The status of `job` as `manager` sees it now (live progress while it runs, fresh outputs)."""
    handler = manager.handlers.get(job.kind)
    outputs = job.outputs
    if (not job.state.final or not outputs) and handler is not None and job.state != JobState.QUEUED:
        outputs = handler.outputs(job)
    status = build_status(
        job, progress=manager.live_progress(job), queue_position=manager.queue_position(job), outputs=outputs
    )
    update: dict[str, Any] = {}
    # Handlers that leave the optional parts out (small test kinds) get the generic status.
    next_step = getattr(handler, "next_steps", {}).get(job.state)
    if next_step:
        update["next_step"] = next_step
    extras = getattr(handler, "status_extras", None)
    if extras is not None:
        update.update({k: v for k, v in extras(job, outputs).items() if k in EXTRA_FIELDS})
    for parts in getattr(manager, "status_parts", ()):
        update.update({k: v for k, v in parts(job).items() if k in EXTRA_FIELDS})
    if update:
        status = status.model_copy(update=update)
    return redacted(status, manager.redact)


def redacted(status: JobStatus, redact: Callable[[str], str]) -> JobStatus:
    """The status with every text in it passed through `redact` (messages and errors come from the trainer's log)."""
    text = status.model_dump_json()
    clean = redact(text)
    if clean == text:
        return status
    data = json.loads(clean)
    # A kind's extra model is rebuilt as its own class (the field is typed as any model).
    for name in EXTRA_FIELDS:
        value = getattr(status, name)
        if isinstance(value, StatusPart) and data.get(name) is not None:
            data[name] = type(value).model_validate(data[name])
    return JobStatus.model_validate(data)
