"""The parameters of a review run, as the tool builds them and the worker reads them from params.json."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, Field

from lora_mcp.review.models import LoraType, Style

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
    caption_ext: str = "txt"
    concurrency: int = Field(default=4, ge=1, le=64, description="Captions reviewed at once.")
    banned_words: list[str] = Field(default_factory=list)
    identity_traits: list[str] | None = Field(default=None, description="Replaces the default trait patterns.")
    output_mode: Literal["tool", "prompted"] = "tool"
    thread_id: str | None = Field(
        default=None, description="Checkpoint thread: the id of the job that started this review (resumes keep it)."
    )

    def fingerprint(self) -> str:
        """Identifies 'the same review' for resuming: everything but concurrency and the thread."""
        data = self.model_dump(mode="json", exclude={"concurrency", "thread_id"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
