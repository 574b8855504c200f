"""A caption run as asked for (`CaptionRequest`, built alike by the caption_images tool and `lora-mcp caption`) and
as queued (`CaptionJobParams`, written to the job's params.json): pydantic, they cross the agent and process edges.

The Literal types repeat the ids of lora_mcp/prompts/caption/joycaption.yaml so that the tool schema lists them;
tests/test_request_models.py checks that they match the catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lora_mcp.captioning.files import OverwritePolicy
from lora_mcp.captioning.prompts import resolve_caption_type
from lora_mcp.dataset.captions import CaptionExt

Backend = Literal["joycaption", "ollama", "openai", "template"]
CaptionType = Literal[
    "descriptive",
    "descriptive-casual",
    "straightforward",
    "stable-diffusion-prompt",
    "sd-prompt",
    "training-prompt",
    "midjourney",
    "danbooru",
    "e621",
    "rule34",
    "booru-like",
    "art-critic",
    "product-listing",
    "social-media-post",
]
"""Caption type ids and style aliases (`sd-prompt` = `stable-diffusion-prompt`)."""
NamedLength = Literal["any", "very short", "short", "medium-length", "long", "very long"]
Length = NamedLength | Annotated[int, Field(ge=1, le=1000)]
"""A named length or a number of words."""
ExtraOption = Literal[
    "name",
    "no-immutable-traits",
    "lighting",
    "camera-angle",
    "watermark-presence",
    "jpeg-artifacts",
    "camera-details",
    "keep-pg",
    "no-resolution",
    "aesthetic-quality",
    "composition",
    "no-text",
    "depth-of-field",
    "lighting-sources",
    "no-ambiguity",
    "content-rating",
    "important-only",
    "no-artist",
    "orientation",
    "vulgar",
    "blunt",
    "ages",
    "shot-type",
    "no-mood",
    "vantage-height",
    "mention-watermark",
    "no-meta-phrases",
]
Quantization = Literal["none", "nf4"]
DEFAULT_OLLAMA_MODEL = "qwen2.5vl:7b"
# Generation defaults used upstream by JoyCaption; the one place they are written.
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.9
DEFAULT_MAX_NEW_TOKENS = 300


class CaptionRequest(BaseModel):
    """A caption run as an agent or a person asks for it, normalised once (the folder is already confined or
    resolved); `captioning.service.job_params` resolves it against the settings into CaptionJobParams."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folder: Path
    trigger_word: str | None = None
    """Stripped; blank means none."""
    caption_type: CaptionType = "descriptive"
    """A style alias is replaced by its caption type id."""
    length: Length = "medium-length"
    extra_options: list[ExtraOption] = Field(default_factory=list)
    """Duplicates dropped, order kept."""
    backend: Backend | None = None
    """None: the settings' caption backend."""
    model: str | None = None
    """None: the backend's default model from the settings."""
    overwrite: OverwritePolicy = OverwritePolicy.SKIP
    batch_size: int | None = Field(default=None, ge=1, le=64)
    caption_ext: CaptionExt = "txt"
    """Normalised by normalize_caption_ext (`.txt` -> `txt`); bad ones raise InvalidInput."""
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0, le=2)
    max_new_tokens: int = Field(default=DEFAULT_MAX_NEW_TOKENS, ge=1, le=2048)
    quantization: Quantization = "none"

    @field_validator("trigger_word", "model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("caption_type", "length", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = " ".join(value.split()).lower()
            return int(text) if text.isdigit() else text
        return value

    @field_validator("caption_type")
    @classmethod
    def _type_id(cls, value: str) -> str:
        return resolve_caption_type(value)

    @field_validator("extra_options")
    @classmethod
    def _unique(cls, value: list[ExtraOption]) -> list[ExtraOption]:
        return list(dict.fromkeys(value))


class CaptionJobParams(BaseModel):
    """Everything the caption worker needs; the prompt is resolved before the job is queued."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folder: str
    """Absolute dataset folder (already confined to the roots)."""
    backend: Backend
    model: str
    """Hub id / local folder (joycaption), or the server's model name."""
    prompt: str
    system_prompt: str
    trigger_word: str | None = None
    caption_type: str = "descriptive"
    length: str = "medium-length"
    extra_options: list[str] = Field(default_factory=list)
    overwrite: OverwritePolicy = OverwritePolicy.SKIP
    caption_ext: str = "txt"
    batch_size: int | None = Field(default=None, ge=1, le=64)
    """Images per generate call (joycaption) or requests in flight (ollama/openai)."""
    max_new_tokens: int = Field(default=DEFAULT_MAX_NEW_TOKENS, ge=1, le=2048)
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0, le=2)
    """0 = greedy decoding."""
    top_p: float = Field(default=DEFAULT_TOP_P, gt=0, le=1)
    quantization: Literal["none", "nf4"] = "none"
    base_url: str | None = None
    """Server URL for ollama/openai."""
    timeout_s: float = Field(default=120.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(default=1.0, ge=0)
