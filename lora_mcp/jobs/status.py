"""The job status an agent reads: one shape for every kind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase
from lora_mcp.jobs.store import JobRecord
from lora_mcp.training.result import TrainingResult, training_result

LAUNCH_NOTES_NAME = "launch_notes.json"

NEXT_STEP = {
    JobState.QUEUED: "Call wait_for_job to follow it; it starts when its lane is free.",
    JobState.RUNNING: "Call wait_for_job again (it returns within ~45 s) until the state is final.",
    JobState.SUCCEEDED: "Done. outputs.lora_path is the LoRA; get_job(include_images=True) shows samples; "
    "export_lora copies it into ComfyUI's LoRA folder.",
    JobState.FAILED: "Read error.hint, fix the cause, then resume_training (training continues from its last "
    "checkpoint).",
    JobState.CANCELLED: "Cancelled. resume_training continues from the last saved checkpoint.",
}


class JobOutputs(BaseModel):
    """Files a job produced. Train jobs fill lora_path, checkpoints and samples; other kinds use details."""

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
    training_result: TrainingResult | None = Field(
        None, description="For a finished train job: success, paths and timing in one place."
    )
    next_step: str = Field(description="What to call next.")


def job_outputs(raw: dict[str, Any]) -> JobOutputs:
    """Shape a kind's raw outputs dict for the agent."""
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


def write_launch_notes(job_dir: Path, notes: list[str]) -> None:
    """Record what happened just before a job started (read back by `read_launch_notes`)."""
    (job_dir / LAUNCH_NOTES_NAME).write_text(json.dumps(notes, indent=2), encoding="utf-8")


def read_launch_notes(job_dir: Path) -> list[str]:
    """The launch notes of a job, or [] when it has none (or they cannot be read)."""
    try:
        notes = json.loads((job_dir / LAUNCH_NOTES_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(n) for n in notes] if isinstance(notes, list) else []


def build_status(job: JobRecord, *, progress: Any, queue_position: int | None, outputs: dict[str, Any]) -> JobStatus:
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


def job_status(manager: Any, job: JobRecord) -> JobStatus:
    """The status of `job` as `manager` sees it now (live progress while it runs, fresh outputs)."""
    outputs = job.outputs
    if not job.state.final or not outputs:
        handler = manager.handlers.get(job.kind)
        outputs = handler.outputs(job) if handler is not None and job.state != JobState.QUEUED else outputs
    status = build_status(
        job, progress=manager.live_progress(job), queue_position=manager.queue_position(job), outputs=outputs
    )
    if job.kind == JobKind.TRAIN and job.state.final:
        status = status.model_copy(update={"training_result": training_result(job, outputs)})
    next_step = getattr(manager.handlers.get(job.kind), "next_steps", {}).get(job.state)
    if next_step:
        status = status.model_copy(update={"next_step": next_step})
    return redacted(status, manager.redact)


def redacted(status: JobStatus, redact: Callable[[str], str]) -> JobStatus:
    """The status with every text in it passed through `redact` (messages and errors come from the trainer's log)."""
    text = status.model_dump_json()
    clean = redact(text)
    return status if clean == text else JobStatus.model_validate_json(clean)
