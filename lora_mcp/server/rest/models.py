"""Request and response bodies of the REST API that no domain module already defines.

Where an operation has a domain request model (CaptionRequest, LoRATrainingConfig), the API takes that model; the
others mirror the MCP tool's parameters, with the same descriptions. The OpenAPI document is generated from these.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.status import JobList, JobLogs
from lora_mcp.review.models import LoraType, Style
from lora_mcp.training.config import LoRATrainingConfig

PREFIX = "/api/v1"
"""Where `lora_mcp.server.http` mounts the REST API."""

__all__ = ["JobList", "JobLogs"]  # shared with the MCP tools (lora_mcp.jobs.status)


class Body(BaseModel):
    """A request body: unknown fields are refused, so a typo is an error and not a silent default."""

    model_config = ConfigDict(extra="forbid")


class InspectRequest(Body):
    """POST /datasets/inspect: the inspect_dataset tool's parameters."""

    folder: str = Field(description="Folder of training images (inside the allowed roots).")
    trigger_word: str | None = Field(default=None, description="Trigger word every caption should contain, if any.")
    resolutions: list[int] | None = Field(
        default=None, description="Target side lengths for AI-Toolkit bucketing, e.g. [512, 768, 1024]."
    )


class ReviewRequest(Body):
    """POST /reviews: the review_captions tool's parameters."""

    folder: str = Field(description="Dataset folder of image + caption pairs (inside the roots).")
    trigger_word: str = Field(min_length=1, description="The LoRA's trigger word.")
    style: Style = Field(default=Style.TERSE, description="terse: comma-separated phrases; descriptive: sentences.")
    use_images: bool = Field(default=True, description="Show the model each image (needs a vision model).")
    model: str | None = Field(default=None, description="Review model; default LORA_MCP_REVIEW_MODEL. Unset: rules.")
    lora_type: LoraType = Field(
        default=LoraType.CHARACTER, description="character enables the identity-trait check (hair/eye colour...)."
    )
    banned_words: list[str] | None = Field(default=None, description="Words no caption may contain.")
    caption_ext: str = Field(default="txt", description="Caption file extension.")


class ApplyReviewRequest(Body):
    """POST /reviews/apply: the apply_caption_review tool's parameters."""

    review_file: str = Field(description="outputs.details.review_file of a review job.")
    approve: Literal["all", "decided"] | list[str] = Field(
        default="all",
        description='"all": every pending fix with a suggestion plus approve/edit decisions; "decided": only '
        "approve/edit decisions; or a list of image names to apply.",
    )


class ConfigOptions(Body):
    """The generate_training_config options beside the training settings."""

    dry_run: bool = Field(default=False, description="Return the YAML without writing anything.")
    overwrite: bool = Field(default=False, description="Replace a different existing config of that name.")


class ConfigRequest(ConfigOptions, LoRATrainingConfig):
    """POST /configs: the training settings (LoRATrainingConfig) plus the generate_training_config options."""


class TrainRequest(Body):
    """POST /jobs/train: the start_training tool's parameters."""

    config_path: str = Field(description="AI-Toolkit YAML from POST /configs (inside the roots).")
    idempotency_key: str | None = Field(
        default=None, description="Retry-safe key: the same key returns the same job instead of a new one."
    )


class JobFilter(Body):
    """GET /jobs query parameters."""

    kind: JobKind | None = Field(default=None, description="Only jobs of this kind.")
    state: JobState | None = Field(default=None, description="Only jobs in this state.")


class TailQuery(Body):
    """GET /jobs/{id}/log query parameters."""

    tail: int = Field(default=200, ge=1, le=5000, description="How many of the last lines to return.")


class EventsQuery(Body):
    """GET /jobs/{id}/events query parameters (the Last-Event-ID header, when sent, wins over `after`)."""

    after: int = Field(
        default=0, ge=-1, description="Replay the events with a larger seq; 0: the whole log; -1: only new events."
    )


class LossPoint(BaseModel):
    """The loss AI-Toolkit printed at one step."""

    step: int
    loss: float


class LossSeries(BaseModel):
    """A train job's loss by step, read from its log (and the logs of the jobs it resumed)."""

    job_id: str
    points: list[LossPoint]


class SampleImage(BaseModel):
    """One sample image a train job rendered."""

    file: str = Field(description="The file name: GET /jobs/{id}/samples/{file} returns the image.")
    step: int
    prompt_index: int
    url: str = Field(description="The image's path on this server.")


class SampleList(BaseModel):
    """A train job's sample images, by step then prompt."""

    job_id: str
    samples: list[SampleImage]


class EventRecord(BaseModel):
    """One job event, the `data` of a server-sent event whose `id` is `seq` and whose `event` is `type`."""

    seq: int
    job_id: str
    type: str = Field(description="job.queued, job.started, job.progress, job.checkpoint, job.sample, ...")
    data: dict[str, Any]
    created_at: float
