"""TrainingResult: how a finished (or failed) training run is reported, wherever that happens."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TrainingResult(BaseModel):
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
