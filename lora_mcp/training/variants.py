"""The three Z-Image models lora-mcp trains on, with the settings AI-Toolkit's own UI presets use for each.

Source: ui/src/app/jobs/new/options.tsx (entries `zimage:turbo`, `zimage:deturbo`, `zimage`) and the UI's default
sample config (ui/src/helpers/defaultSamples.ts) at the commit in `aitk_keys.AITK_COMMIT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VariantName = Literal["zimage-turbo", "zimage-deturbo", "zimage"]


@dataclass(frozen=True)
class Variant:
    """One trainable Z-Image model and its sampling settings."""

    name: VariantName
    name_or_path: str
    """Hub id of the transformer (AI-Toolkit `model.name_or_path`)."""
    extras_name_or_path: str | None
    """Hub id the text encoder, tokenizer and VAE come from, when not `name_or_path`."""
    assistant_lora_path: str | None
    """The training adapter merged in while training (Turbo only): `owner/repo/file.safetensors` or a local file."""
    guidance_scale: float
    sample_steps: int
    about: str


VARIANTS: dict[VariantName, Variant] = {
    "zimage-turbo": Variant(
        name="zimage-turbo",
        name_or_path="Tongyi-MAI/Z-Image-Turbo",
        extras_name_or_path=None,
        assistant_lora_path="ostris/zimage_turbo_training_adapter/zimage_turbo_training_adapter_v2.safetensors",
        # The UI preset: guidance 1 (Turbo is distilled without CFG) and 9 sample steps (Turbo's 8 NFEs + 1).
        guidance_scale=1.0,
        sample_steps=9,
        about="Z-Image-Turbo with Ostris' training adapter v2, so the LoRA does not undo the distillation",
    ),
    "zimage-deturbo": Variant(
        name="zimage-deturbo",
        name_or_path="ostris/Z-Image-De-Turbo",
        extras_name_or_path="Tongyi-MAI/Z-Image-Turbo",
        assistant_lora_path=None,
        guidance_scale=3.0,
        sample_steps=25,
        about="Ostris' de-distilled Turbo (no adapter); text encoder and VAE from Z-Image-Turbo",
    ),
    "zimage": Variant(
        name="zimage",
        name_or_path="Tongyi-MAI/Z-Image",
        extras_name_or_path=None,
        assistant_lora_path=None,
        # The UI's zimage preset keeps the default sample guidance (4) and sets 30 steps.
        guidance_scale=4.0,
        sample_steps=30,
        about="the undistilled Z-Image base model",
    ),
}
