"""LoRATrainingConfig: the one typed description of a Z-Image LoRA run, validated before any YAML is written.

Every AI-Toolkit key lora-mcp writes comes from this model (through `aitk_yaml`); the MCP tool's parameters and the
`lora-mcp config` options are generated from its fields, so the flag list exists once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from lora_mcp.errors import InvalidInput
from lora_mcp.training.presets import OptimizerName
from lora_mcp.training.variants import VariantName

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Letters/digits (any script), then letters, digits, '_', '-', '.', with single inner spaces. No brackets (AI-Toolkit
# substitutes [trigger] and [name]), no '$' (it substitutes ${ENV}), no commas (captions are comma-split when
# tokens are shuffled), no path separators (the word is used in file names).
TRIGGER_RE = re.compile(r"^[^\W_][\w.\-]*(?: [\w.\-]+)*$")
_COMMON = (
    "a an the and or man woman person people girl boy dog cat photo picture image style art car house face "
    "portrait red blue green black white big small old new good cool"
)
COMMON_WORDS = frozenset(_COMMON.split(" "))
DEFAULT_SAMPLE_PROMPTS = (
    "a photo of [trigger]",
    "[trigger] in a sunlit park, wide shot",
    "a close-up of [trigger], studio lighting, detailed",
)
MIN_SIDE, MAX_SIDE, SIDE_ROUNDING = 64, 4096, 64


class LoRATrainingConfig(BaseModel):
    """Everything that decides one Z-Image LoRA training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[
        str,
        Field(
            description="Name of the LoRA; becomes a folder and file name: 1-64 of A-Z a-z 0-9 _ -, "
            "starting with a letter or digit.",
        ),
    ]
    dataset_folder: Annotated[
        str, Field(description="Folder of training images with caption files (inside the allowed roots).")
    ]
    trigger_word: Annotated[
        str,
        Field(
            description="Word that calls up the concept; replaces [trigger] in captions and sample prompts. Letters, "
            "digits, '_', '-', '.', single inner spaces; no brackets, commas, '$' or slashes; at most 50 characters.",
        ),
    ]
    variant: Annotated[
        VariantName,
        Field(
            description="zimage-turbo: Tongyi-MAI/Z-Image-Turbo with Ostris' training adapter v2 (fast 8-step "
            "inference); zimage-deturbo: ostris/Z-Image-De-Turbo (no adapter); zimage: the base Tongyi-MAI/Z-Image.",
        ),
    ] = "zimage-turbo"
    model_path: Annotated[
        str | None,
        Field(
            description="Local diffusers folder or .safetensors transformer to use instead of the variant's hub id "
            "(inside the allowed roots).",
        ),
    ] = None
    adapter_path: Annotated[
        str | None,
        Field(
            description="Local training-adapter .safetensors to use instead of the hub's v2 adapter "
            "(zimage-turbo only; inside the allowed roots).",
        ),
    ] = None
    steps: Annotated[
        int,
        Field(
            ge=100,
            le=20000,
            description="Training steps, 100-20000. Default 2500, as in the service lora-mcp replaces: about 100 steps "
            "per image for a 20-30 image set, just under AI-Toolkit's UI default of 3000.",
        ),
    ] = 2500
    rank: Annotated[int, Field(ge=1, le=256, description="LoRA rank (network.linear), 1-256.")] = 32
    alpha: Annotated[
        float | None,
        Field(gt=0, le=1024, description="LoRA alpha (network.linear_alpha), >0 and <=1024; default: the rank."),
    ] = None
    learning_rate: Annotated[
        float, Field(ge=1e-6, le=1e-2, description="Learning rate, 1e-6 to 1e-2 (AI-Toolkit's UI uses 1e-4).")
    ] = 1e-4
    optimizer: Annotated[OptimizerName, Field(description="Optimizer: adamw8bit (least memory), adamw, adafactor.")] = (
        "adamw8bit"
    )
    batch_size: Annotated[
        int | None, Field(ge=1, le=16, description="Images per step, 1-16; default: the VRAM tier's (1).")
    ] = None
    resolutions: Annotated[
        list[int] | list[list[int]] | None,
        Field(
            description="Side lengths for AI-Toolkit's aspect-ratio bucketing, e.g. [512, 768, 1024] (each is a "
            "pixel budget of side x side; the images keep their aspect ratio). [width, height] pairs are "
            "accepted and converted to sqrt(width*height) rounded to 64, with a warning. Default: the VRAM tier's.",
        ),
    ] = None
    caption_ext: Annotated[
        str, Field(pattern=r"^\.?[A-Za-z0-9]{1,10}$", description="Caption file extension, e.g. txt.")
    ] = "txt"
    caption_dropout_rate: Annotated[
        float,
        Field(ge=0, le=0.5, description="Share of steps trained with an empty caption, 0-0.5 (UI default 0.05)."),
    ] = 0.05
    cache_latents: Annotated[
        bool | None,
        Field(
            description="Encode every image once and cache the latents on disk beside the images (_latent_cache/); "
            "default: the VRAM tier's (on in every tier).",
        ),
    ] = None
    save_every: Annotated[int, Field(ge=10, le=20000, description="Save a checkpoint every N steps.")] = 250
    max_saves_to_keep: Annotated[
        int, Field(ge=1, le=100, description="How many step checkpoints to keep (older ones are removed).")
    ] = 4
    sample_every: Annotated[
        int, Field(ge=0, le=20000, description="Generate sample images every N steps; 0 turns sampling off.")
    ] = 250
    sample_prompts: Annotated[
        list[str] | None,
        Field(
            max_length=20,
            description="Up to 20 sample prompts; write [trigger] where the trigger word goes. Default: three "
            "generic prompts with [trigger].",
        ),
    ] = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1, description="Seed for training and samples.")] = 42
    output_folder: Annotated[
        str | None,
        Field(
            description="AI-Toolkit's training_folder (inside the allowed roots); the run writes <output_folder>/"
            "<name>/. Default: <first root>/lora-mcp/output.",
        ),
    ] = None
    vram_gb: Annotated[
        float | Literal["auto"],
        Field(
            description="GPU memory in GB that picks the memory settings (tiers 8, 12, 16, 24, 32+), or 'auto' to "
            "read it from nvidia-smi.",
        ),
    ] = "auto"

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a safe name: use 1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit"
            )
        return value

    @field_validator("trigger_word")
    @classmethod
    def _check_trigger(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the trigger word is empty or only whitespace")
        if len(value) > 50:
            raise ValueError(f"{value[:20]!r}... is {len(value)} characters long; use at most 50")
        if not TRIGGER_RE.match(value):
            raise ValueError(
                f"{value!r} cannot be used in captions and file names: use letters, digits, '_', '-', '.' and single "
                "inner spaces (no brackets, commas, '$', quotes, slashes, or spaces at the ends)"
            )
        return value

    @field_validator("resolutions")
    @classmethod
    def _check_resolutions(cls, value: list[int] | list[list[int]] | None) -> list[int] | list[list[int]] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("the list is empty; pass side lengths such as [512, 768, 1024] or leave it out")
        if len(value) > 8:
            raise ValueError("at most 8 resolutions: each one is another full copy of the dataset per epoch")
        for item in value:
            sides = item if isinstance(item, list) else [item]
            if isinstance(item, list) and len(item) != 2:
                raise ValueError(f"{item} is not a [width, height] pair")
            for side in sides:
                if not MIN_SIDE <= side <= MAX_SIDE:
                    raise ValueError(f"{side} is outside {MIN_SIDE}-{MAX_SIDE} pixels")
        return value

    @field_validator("sample_prompts")
    @classmethod
    def _check_prompts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for prompt in value:
            if not prompt.strip():
                raise ValueError("a sample prompt is empty")
            if len(prompt) > 1000:
                raise ValueError(f"the prompt {prompt[:30]!r}... is longer than 1000 characters")
            if "${" in prompt:
                raise ValueError(f"{prompt!r} contains '${{', which AI-Toolkit replaces with an environment variable")
            if "\n" in prompt or "--" in prompt:
                raise ValueError(f"{prompt!r} contains a newline or '--' (AI-Toolkit reads '--' as prompt flags)")
        return value

    @field_validator("vram_gb")
    @classmethod
    def _check_vram(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not (1 <= value <= 2048 and math.isfinite(value)):
            raise ValueError(f"{value} GB is not a GPU memory size; pass a number such as 24, or 'auto'")
        return value

    @model_validator(mode="after")
    def _check_adapter(self) -> LoRATrainingConfig:
        if self.adapter_path is not None and self.variant != "zimage-turbo":
            raise ValueError(
                f"adapter_path: only zimage-turbo uses a training adapter, but variant is {self.variant!r}; "
                "leave adapter_path out or use variant zimage-turbo"
            )
        return self

    @property
    def effective_alpha(self) -> float:
        """network.linear_alpha: the given alpha, else the rank (AI-Toolkit would default to 1.0)."""
        return float(self.rank) if self.alpha is None else self.alpha

    @property
    def effective_prompts(self) -> list[str]:
        """The sample prompts, or the defaults."""
        return list(self.sample_prompts) if self.sample_prompts else list(DEFAULT_SAMPLE_PROMPTS)


def _describe_error(error: ErrorDetails) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"] if isinstance(part, int) or "[" not in str(part)]
    message = error["msg"].removeprefix("Value error, ")
    if not loc:  # a model-level rule names its field first: "adapter_path: ..."
        head, _, rest = message.partition(": ")
        if head in LoRATrainingConfig.model_fields:
            loc, message = [head], rest
    field = loc[0] if loc else "arguments"
    where = field + "".join(f"[{p}]" for p in loc[1:])
    if error["type"] == "missing":
        return field, f"{where}: required but missing"
    if error["type"] == "extra_forbidden":
        return field, f"{where}: not a parameter of generate_training_config"
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return field, f"{where}: {message} (got {shown})"


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    """Turn a pydantic ValidationError on LoRATrainingConfig into one InvalidInput naming every bad field."""
    seen: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        field, text = _describe_error(error)
        seen.setdefault(field, text)  # one message per field (a union reports each of its arms)
    fields = list(seen)
    rules = []
    for field in fields:
        info = LoRATrainingConfig.model_fields.get(field)
        if info is not None and info.description:
            rules.append(f"{field}: {info.description}")
    return InvalidInput(
        "Invalid training config: " + "; ".join(seen.values()) + ".",
        hint="Fix " + ", ".join(fields) + " and call generate_training_config again. Rules: " + " ".join(rules),
        field=fields[0] if fields else None,
    )


def parse_config(data: Mapping[str, Any]) -> LoRATrainingConfig:
    """Validate raw arguments into a LoRATrainingConfig; InvalidInput (naming the fields) when they are wrong."""
    try:
        return LoRATrainingConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise invalid_input_from(exc) from None


def normalize_resolutions(value: list[int] | list[list[int]]) -> tuple[list[int], list[str]]:
    """AI-Toolkit side lengths from side lengths or [width, height] pairs, with a warning when pairs were converted.

    A pair becomes sqrt(width * height) rounded to 64: AI-Toolkit's `resolution: N` is a pixel budget of N*N that
    each image fills at its own aspect ratio (toolkit/buckets.py), so this keeps the pair's pixel count and a
    3:4 image lands on the pair's own shape ([768, 1024] -> 896, whose budget buckets a 3:4 image at 768x1024).
    max(w, h) would instead inflate every non-square pair to a larger budget (more VRAM, slower steps) than asked.
    """
    if all(isinstance(v, int) for v in value):
        sides = sorted({int(v) for v in value})  # type: ignore[arg-type]
        return sides, []
    pairs = [tuple(v) for v in value if isinstance(v, list)]
    converted = {p: int(round(math.sqrt(p[0] * p[1]) / SIDE_ROUNDING) * SIDE_ROUNDING) for p in pairs}
    sides = sorted({max(MIN_SIDE, s) for s in converted.values()})
    detail = ", ".join(f"{list(p)} -> {s}" for p, s in converted.items())
    warning = (
        f"resolutions: converted [width, height] pairs to AI-Toolkit side lengths {sides} ({detail}). AI-Toolkit's "
        "resolution is a list of square pixel budgets with aspect-ratio bucketing, not width x height buckets: "
        "each pair became sqrt(width*height) rounded to 64, which keeps its pixel count, and every image keeps its "
        f"own aspect ratio. Pass resolutions={sides} to say this directly."
    )
    return sides, [warning]


def trigger_word_warnings(word: str) -> list[str]:
    """Soft problems with a valid trigger word."""
    warnings = []
    if word.lower() in COMMON_WORDS:
        warnings.append(
            f"trigger_word {word!r} is a common English word: the model already means something by it, so the LoRA "
            "has to fight that meaning. A rare token such as 'ohwx' or 'zxq_" + word.lower() + "' trains cleaner."
        )
    if " " in word:
        warnings.append(f"trigger_word {word!r} contains spaces: file names built from it will contain spaces too.")
    return warnings
