"""The parameters of one caption job, as written to the job's params.json (pydantic: they cross a process edge)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lora_mcp.captioning.files import OverwritePolicy

Backend = Literal["joycaption", "ollama", "openai", "template"]
DEFAULT_OLLAMA_MODEL = "qwen2.5vl:7b"
# Generation defaults used upstream by JoyCaption; the one place they are written.
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.9
DEFAULT_MAX_NEW_TOKENS = 300


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
