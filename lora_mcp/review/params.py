"""The parameters of a review run: the one request model the review_captions tool and `lora-mcp review` both
build (`ReviewParams.request`, which normalises the inputs once), and what the worker reads from params.json.
Normalising in the model keeps one fingerprint for the same review, whichever way it was asked for."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator

from lora_mcp.dataset.captions import CaptionExt
from lora_mcp.errors import InvalidInput
from lora_mcp.review.models import LoraType, Style

if TYPE_CHECKING:
    from lora_mcp.settings import Settings

CHECKPOINT_NAME = "review.sqlite"
"""The LangGraph checkpoint in the job directory."""


class ReviewParams(BaseModel):
    """One review run."""

    folder: str = Field(description="Absolute path of the dataset folder (already confined).")
    trigger_word: str
    style: Style = Style.TERSE
    lora_type: LoraType = LoraType.CHARACTER
    use_images: bool = True
    model: str | None = Field(default=None, description="Review model name; null: rules only.")
    caption_ext: CaptionExt = "txt"
    concurrency: int = Field(default=4, ge=1, le=64, description="Captions reviewed at once.")
    banned_words: list[str] = Field(default_factory=list)
    identity_traits: list[str] | None = Field(default=None, description="Replaces the default trait patterns.")
    output_mode: Literal["tool", "prompted"] = "tool"
    thread_id: str | None = Field(
        default=None, description="Checkpoint thread: the id of the job that started this review (resumes keep it)."
    )

    @field_validator("trigger_word")
    @classmethod
    def _trigger_word(cls, value: str) -> str:
        if not value.strip():
            raise InvalidInput(
                "The trigger word is empty.", hint="Pass the LoRA's trigger word, e.g. ohwx.", field="trigger_word"
            )
        return value.strip()

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("banned_words")
    @classmethod
    def _banned_words(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(word.strip() for word in value if word.strip()))

    @classmethod
    def request(cls, settings: Settings, **values: Any) -> ReviewParams:
        """A review as the tool or the CLI asks for it: normalised, the model defaulting to LORA_MCP_REVIEW_MODEL."""
        params = cls(**{name: value for name, value in values.items() if value is not None})
        return params if params.model else params.model_copy(update={"model": settings.review_model})

    def fingerprint(self) -> str:
        """Identifies 'the same review' for resuming: everything but concurrency and the thread."""
        data = self.model_dump(mode="json", exclude={"concurrency", "thread_id"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
