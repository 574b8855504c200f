"""TrainingResult: how a finished (or failed) training run is reported, wherever that happens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from lora_mcp.jobs.models import JobState
from lora_mcp.jobs.status import StatusPart
from lora_mcp.jobs.store import JobRecord


class TrainingResult(StatusPart):
    """The outcome of one training run, in the shape the service lora-mcp replaces used."""

    success: bool = Field(description="True when the run ended and the final LoRA file exists.")
    lora_path: str | None = Field(None, description="The final <name>.safetensors, when it exists.")
    output_dir: str | None = Field(None, description="The run's folder: <training_folder>/<name>.")
    config_path: str | None = Field(None, description="The AI-Toolkit YAML the run used.")
    steps: int | None = Field(None, description="Steps completed (the last one AI-Toolkit reported or saved).")
    training_time_seconds: float | None = Field(None, description="Wall time from start to end.")
    started_at: datetime | None = Field(None, description="When the trainer started (UTC).")
    finished_at: datetime | None = Field(None, description="When it ended (UTC).")
    error: str | None = Field(None, description="Why it failed; None on success.")


def training_result(job: JobRecord, outputs: dict[str, Any]) -> TrainingResult:
    """The TrainingResult of a finished train job."""
    started = datetime.fromtimestamp(job.started_at, UTC) if job.started_at else None
    finished = datetime.fromtimestamp(job.finished_at, UTC) if job.finished_at else None
    elapsed = round(job.finished_at - job.started_at, 1) if job.started_at and job.finished_at else None
    error = f"{job.error.code}: {job.error.message}" if job.error else None
    if job.state == JobState.CANCELLED:
        error = "cancelled"
    return TrainingResult(
        success=job.state == JobState.SUCCEEDED,
        lora_path=outputs.get("lora_path") if job.state == JobState.SUCCEEDED else None,
        output_dir=outputs.get("output_dir"),
        config_path=str(job.job_dir / "config.yaml"),
        steps=job.progress.step,
        training_time_seconds=elapsed,
        started_at=started,
        finished_at=finished,
        error=error,
    )
