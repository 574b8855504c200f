"""The AI-Toolkit YAML, built from one resolved plan.

Every value whose AI-Toolkit default is wrong for Z-Image is written explicitly (AI-Toolkit's defaults target
Stable Diffusion: linear_alpha 1.0, lr 1e-6, ddpm scheduler and sampler, sigmoid timesteps, fp32 training, float16
saves, guidance 7, 20 sample steps). Keys appear in a fixed order that reads top-down like the run: what is
trained, how it is saved, on what data, how, from which model, and what samples to show. Every key is in
`aitk_keys.ALLOWED_KEYS`; `build_aitk_config` checks that before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from lora_mcp import __version__
from lora_mcp.errors import OperationFailed
from lora_mcp.training.aitk_keys import AITK_COMMIT, unknown_keys
from lora_mcp.training.config import LoRATrainingConfig
from lora_mcp.training.presets import VramEstimate, VramTier
from lora_mcp.training.variants import Variant


@dataclass(frozen=True)
class TrainingPlan:
    """A validated config with everything resolved: absolute paths, the VRAM tier, resolutions, batch size."""

    config: LoRATrainingConfig
    variant: Variant
    tier: VramTier
    dataset_folder: str
    training_folder: str
    name_or_path: str
    assistant_lora_path: str | None
    resolutions: tuple[int, ...]
    batch_size: int
    cache_latents: bool
    estimate: VramEstimate


def _network(plan: TrainingPlan) -> dict[str, Any]:
    alpha = plan.config.effective_alpha
    return {"type": "lora", "linear": plan.config.rank, "linear_alpha": int(alpha) if alpha.is_integer() else alpha}


def _save(plan: TrainingPlan) -> dict[str, Any]:
    return {
        "dtype": "bf16",
        "save_every": plan.config.save_every,
        "max_step_saves_to_keep": plan.config.max_saves_to_keep,
        "save_format": "safetensors",
    }


def _dataset(plan: TrainingPlan) -> dict[str, Any]:
    cfg = plan.config
    return {
        "folder_path": plan.dataset_folder,
        "caption_ext": cfg.caption_ext.lstrip("."),
        "caption_dropout_rate": cfg.caption_dropout_rate,
        "cache_latents_to_disk": plan.cache_latents,
        "resolution": list(plan.resolutions),
    }


def _train(plan: TrainingPlan) -> dict[str, Any]:
    cfg = plan.config
    return {
        "batch_size": plan.batch_size,
        "steps": cfg.steps,
        "gradient_accumulation": 1,
        "train_unet": True,
        "train_text_encoder": False,
        "gradient_checkpointing": plan.tier.gradient_checkpointing,
        "noise_scheduler": "flowmatch",
        "timestep_type": "weighted",
        "optimizer": cfg.optimizer,
        "optimizer_params": {"weight_decay": 0.0001},
        "lr": cfg.learning_rate,
        "dtype": "bf16",
        "cache_text_embeddings": plan.tier.cache_text_embeddings,
        "disable_sampling": cfg.sample_every == 0,
    }


def _model(plan: TrainingPlan) -> dict[str, Any]:
    tier = plan.tier
    model: dict[str, Any] = {"name_or_path": plan.name_or_path, "arch": "zimage"}
    if plan.variant.extras_name_or_path is not None:
        model["extras_name_or_path"] = plan.variant.extras_name_or_path
    if plan.assistant_lora_path is not None:
        model["assistant_lora_path"] = plan.assistant_lora_path
    model["quantize"] = tier.quantize
    if tier.quantize:
        model["qtype"] = tier.qtype
    model["quantize_te"] = tier.quantize
    if tier.quantize:
        model["qtype_te"] = tier.qtype
    model["low_vram"] = tier.low_vram
    model["layer_offloading"] = tier.layer_offloading
    if tier.layer_offloading:
        model["layer_offloading_transformer_percent"] = tier.transformer_offload
        model["layer_offloading_text_encoder_percent"] = tier.text_encoder_offload
    return model


def _sample(plan: TrainingPlan) -> dict[str, Any]:
    cfg = plan.config
    side = max(plan.resolutions)
    return {
        "sampler": "flowmatch",
        "sample_every": cfg.sample_every if cfg.sample_every > 0 else cfg.steps,
        "width": side,
        "height": side,
        "samples": [{"prompt": p} for p in cfg.effective_prompts],
        "neg": "",
        "seed": cfg.seed,
        "walk_seed": True,
        "guidance_scale": plan.variant.guidance_scale,
        "sample_steps": plan.variant.sample_steps,
    }


def build_aitk_config(plan: TrainingPlan) -> dict[str, Any]:
    """The full AI-Toolkit job config as plain data, in a stable key order; checked against the allow-list."""
    process = {
        "type": "diffusion_trainer",
        "training_folder": plan.training_folder,
        "trigger_word": plan.config.trigger_word,
        "training_seed": plan.config.seed,
        "network": _network(plan),
        "save": _save(plan),
        "datasets": [_dataset(plan)],
        "train": _train(plan),
        "model": _model(plan),
        "sample": _sample(plan),
    }
    data: dict[str, Any] = {"job": "extension", "config": {"name": plan.config.name, "process": [process]}}
    stray = unknown_keys(data)
    if stray:  # a programming error, never the caller's: refuse to write a config AI-Toolkit would misread
        raise OperationFailed(f"Internal error: keys AI-Toolkit does not read: {', '.join(stray)}.")
    return data


def header(plan: TrainingPlan) -> str:
    """The comment block at the top: what made the file, from what, its memory estimate, and how to run it.

    `estimated_vram_gb: N` is read back by the training preflight (lora_mcp.training.trainjob); keep its form.
    """
    return (
        f"# generated by lora-mcp {__version__} (generate_training_config) for ostris/ai-toolkit, "
        f"keys checked against {AITK_COMMIT[:8]}\n"
        f"# variant: {plan.variant.name}, vram_tier: {plan.tier.name}\n"
        f"# estimated_vram_gb: {plan.estimate.total_gb} ({plan.estimate.describe()})\n"
        "# run from the ai-toolkit folder: python run.py <absolute path of this file>\n"
    )


def render_yaml(plan: TrainingPlan) -> str:
    """The YAML text lora-mcp writes: the header, then `build_aitk_config` dumped with its key order kept."""
    body = yaml.safe_dump(
        build_aitk_config(plan), sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    )
    return header(plan) + body
