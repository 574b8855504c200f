"""Job state, progress snapshots and errors: the vocabulary shared by the store, the parsers and the tools."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class JobState(StrEnum):
    """Lifecycle of a job. succeeded, failed and cancelled are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True once the job can no longer change."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobKind(StrEnum):
    """What a job runs. Each kind has its own command builder and log parser."""

    TRAIN = "train"
    CAPTION = "caption"
    REVIEW = "review"
    IMPORT = "import"


class Phase(StrEnum):
    """Coarse phase of a running job, read from its log."""

    QUEUED = "queued"
    STARTING = "starting"
    LOADING_MODEL = "loading_model"
    CACHING_LATENTS = "caching_latents"
    CACHING_TEXT_EMBEDDINGS = "caching_text_embeddings"
    GENERATING_SAMPLES = "generating_samples"
    TRAINING = "training"
    SAVING = "saving"
    WORKING = "working"
    DONE = "done"


class JobError(BaseModel):
    """Why a job failed, classified, with a hint a person can act on."""

    code: str = Field(
        description="oom | model_not_found | gated_model | missing_dependency | config_error | disk_full | killed | "
        "trainer_error | preflight | lost"
    )
    message: str
    hint: str


class Progress(BaseModel):
    """What a parser has learned from a job's log so far."""

    phase: Phase = Phase.STARTING
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    learning_rate: float | None = None
    it_per_second: float | None = None
    eta_seconds: float | None = None
    message: str = ""
    checkpoints_saved: list[str] = Field(default_factory=list)
    resumed_from_step: int | None = None
