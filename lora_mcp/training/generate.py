"""generate_training_config: validate a LoRATrainingConfig against the machine and the dataset, then write the YAML.

Order of checks: arguments (pydantic), paths (inside the roots, existing, writable), the VRAM tier (given or read
from nvidia-smi), resolutions, then the dataset through inspect_dataset. Nothing is written before all pass, and
nothing at all on a dry run. The file is written atomically (temp file + os.replace) and an existing different
config is only replaced with overwrite=True.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from lora_mcp.errors import InvalidInput, NotFound, PathNotAllowed
from lora_mcp.fsutil import write_text_atomic
from lora_mcp.paths import confine, confine_existing_dir
from lora_mcp.settings import Settings
from lora_mcp.system import query_gpus
from lora_mcp.training.aitk_yaml import TrainingPlan, render_yaml
from lora_mcp.training.config import LoRATrainingConfig, normalize_resolutions, trigger_word_warnings
from lora_mcp.training.presets import VramTier, estimate_vram, tier_choices, tier_for
from lora_mcp.training.variants import VARIANTS

Progress = Callable[[int, int], None]


class GeneratedConfig(BaseModel):
    """Result of generate_training_config."""

    config_path: str = Field(description="Where the YAML was written (on a dry run: where it would be).")
    written: bool = Field(description="False on a dry run, or when an identical config was already there.")
    yaml: str = Field(description="The AI-Toolkit YAML.")
    summary: str = Field(description="One paragraph: model, data, steps, memory plan.")
    warnings: list[str] = Field(description="Things to know before training (conversions, dataset advice).")
    estimated_vram_gb: float = Field(description="Estimated peak GPU memory of the training loop, in GB.")
    vram_tier: str = Field(description="The memory tier used: plenty, 24gb, 16gb, 12gb or 8gb.")
    tier_choices: list[str] = Field(description="What the VRAM tier decided, one sentence each.")
    training_folder: str = Field(description="AI-Toolkit's training_folder; the run writes <training_folder>/<name>/.")
    expected_lora_path: str = Field(description="Where the final LoRA will be once training succeeds.")


def _refuse_env_reference(raw: str, what: str) -> None:
    if "${" in raw:
        raise PathNotAllowed(
            f"The {what} {raw!r} contains '${{', which AI-Toolkit would replace with an environment variable.",
            hint=f"Rename the folder or pass another {what}.",
            field=what,
        )


def _confine_path(raw: str, settings: Settings, what: str) -> Path:
    _refuse_env_reference(raw, what)
    return confine(raw, settings.roots, what=what)


def _writable_dir(path: Path, what: str) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PathNotAllowed(f"The {what} {path} is under a file ({probe}).", hint="Pick a folder path.", field=what)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PathNotAllowed(
            f"The {what} {path} is not writable ({probe} is read-only for this server).",
            hint=f"Pass an {what} the server can write to, inside the allowed roots.",
            field=what,
        )


def resolve_vram(config: LoRATrainingConfig, settings: Settings) -> tuple[float, str | None]:
    """The VRAM size to plan for, and a note saying where it came from when read from nvidia-smi."""
    if config.vram_gb != "auto":
        return float(config.vram_gb), None
    gpus, note = query_gpus()
    if not gpus:
        raise InvalidInput(
            f"vram_gb='auto' needs a visible NVIDIA GPU, but none was found ({note})",
            hint="Pass vram_gb with the training GPU's memory in GB (for example 24), then call again.",
            field="vram_gb",
        )
    wanted = [g for g in gpus if str(g.index) in settings.gpus] or gpus
    gpu = min(wanted, key=lambda g: g.memory_total_mb)
    gb = gpu.memory_total_mb / 1024
    return gb, f"vram_gb auto: GPU {gpu.index} {gpu.name} has {gb:.1f} GB"


def _local_model(raw: str | None, settings: Settings, what: str, *, file_only: bool) -> str | None:
    if raw is None:
        return None
    path = _confine_path(raw, settings, what)
    if not path.exists() or (file_only and not path.is_file()):
        kind = "a .safetensors file" if file_only else "a diffusers folder or .safetensors file"
        raise NotFound(f"The {what} {raw!r} is not {kind} ({path}).", hint=f"Pass an existing {kind}.", field=what)
    return str(path)


def _inspect(
    config: LoRATrainingConfig, folder: Path, resolutions: list[int], progress: Progress | None, settings: Settings
) -> list[str]:
    from lora_mcp.dataset.factcache import facts_cache_for
    from lora_mcp.dataset.inspect import inspect_dataset

    report = inspect_dataset(
        folder,
        trigger_word=config.trigger_word,
        resolutions=resolutions,
        progress=progress,
        caption_ext=config.caption_ext.lstrip("."),
        facts_cache=facts_cache_for(settings),
    )
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        listed = " ".join(f"[{p.code}] {p.message} Fix: {p.fix}" for p in errors)
        raise InvalidInput(
            f"dataset_folder {str(folder)!r} is not ready for training: {listed}",
            hint="Fix these (inspect_dataset shows every problem), then call generate_training_config again.",
            field="dataset_folder",
        )
    return [f"dataset: [{p.code}] {p.message} {p.fix}" for p in report.problems]


@dataclass(frozen=True)
class ResolvedPaths:
    """The config's paths, confined to the roots and checked."""

    dataset_folder: Path
    training_folder: Path
    model_path: str | None
    adapter_path: str | None


def resolve_paths(config: LoRATrainingConfig, settings: Settings) -> ResolvedPaths:
    """Confine every path of the config to the roots; the dataset must exist, the output folder be writable."""
    _refuse_env_reference(config.dataset_folder, "dataset_folder")
    dataset = confine_existing_dir(config.dataset_folder, settings.roots, what="dataset_folder")
    output = config.output_folder or str(default_area(settings) / "output")
    training_folder = _confine_path(output, settings, "output_folder")
    _writable_dir(training_folder, "output_folder")
    return ResolvedPaths(
        dataset_folder=dataset,
        training_folder=training_folder,
        model_path=_local_model(config.model_path, settings, "model_path", file_only=False),
        adapter_path=_local_model(config.adapter_path, settings, "adapter_path", file_only=True),
    )


def make_plan(config: LoRATrainingConfig, tier: VramTier, paths: ResolvedPaths, resolutions: list[int]) -> TrainingPlan:
    """Combine a config, its tier, its checked paths and its resolutions into the plan the YAML is built from."""
    variant = VARIANTS[config.variant]
    batch = config.batch_size or tier.batch_size
    estimate = estimate_vram(
        tier, rank=config.rank, optimizer=config.optimizer, max_resolution=max(resolutions), batch_size=batch
    )
    return TrainingPlan(
        config=config,
        variant=variant,
        tier=tier,
        dataset_folder=str(paths.dataset_folder),
        training_folder=str(paths.training_folder),
        name_or_path=paths.model_path or variant.name_or_path,
        assistant_lora_path=paths.adapter_path or variant.assistant_lora_path,
        resolutions=tuple(resolutions),
        batch_size=batch,
        cache_latents=tier.cache_latents if config.cache_latents is None else config.cache_latents,
        estimate=estimate,
    )


def plan_training(
    config: LoRATrainingConfig, settings: Settings, progress: Progress | None = None
) -> tuple[TrainingPlan, list[str], list[str]]:
    """Check a config against the roots, the GPU and the dataset; return the plan, warnings and tier choices."""
    paths = resolve_paths(config, settings)
    vram_gb, vram_note = resolve_vram(config, settings)
    tier = tier_for(vram_gb)
    warnings = trigger_word_warnings(config.trigger_word)
    resolutions, res_warnings = (
        normalize_resolutions(config.resolutions) if config.resolutions else (tier.resolutions, [])
    )
    warnings += res_warnings + _fit_warnings(tier, resolutions, vram_gb)
    warnings += _inspect(config, paths.dataset_folder, resolutions, progress, settings)
    plan = make_plan(config, tier, paths, resolutions)
    if plan.estimate.total_gb > vram_gb:
        warnings.append(
            f"estimated peak {plan.estimate.total_gb} GB exceeds vram_gb {vram_gb:.1f}: lower the resolutions, "
            "batch size or rank."
        )
    choices = ([vram_note] if vram_note else []) + tier_choices(tier) + [plan.estimate.describe()]
    return plan, warnings, choices


def _fit_warnings(tier: VramTier, resolutions: list[int], vram_gb: float) -> list[str]:
    warnings = []
    if max(resolutions) > tier.max_resolution:
        warnings.append(
            f"resolutions: {max(resolutions)} is above the {tier.max_resolution} that the {tier.name} tier "
            f"({vram_gb:.0f} GB) plans for; expect out-of-memory errors, or drop the larger sizes."
        )
    if max(resolutions) < 512:
        warnings.append(
            f"resolutions: the largest is {max(resolutions)}; Z-Image was trained around 1024, and LoRAs trained "
            "below 512 lose detail."
        )
    return warnings


def default_area(settings: Settings) -> Path:
    """lora-mcp's own folder inside the first root: configs/ and output/ live here."""
    return settings.roots[0] / "lora-mcp"


def config_path_for(config: LoRATrainingConfig, settings: Settings) -> Path:
    """Where the YAML goes: <output_folder>/<name>.yaml, or <first root>/lora-mcp/configs/<name>.yaml."""
    folder = Path(config.output_folder) if config.output_folder else default_area(settings) / "configs"
    return _confine_path(str(folder / f"{config.name}.yaml"), settings, "output_folder")


def write_atomically(path: Path, text: str, *, overwrite: bool) -> bool:
    """Write `text` to `path` via a temp file and os.replace; False when an identical file is already there."""
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            return False
        if not overwrite:
            raise InvalidInput(
                f"A different config already exists at {path}.",
                hint="Pass overwrite=true to replace it, or choose another name.",
                field="overwrite",
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return True


def summarize(plan: TrainingPlan) -> str:
    """One paragraph for people and agents."""
    cfg = plan.config
    return (
        f"LoRA {cfg.name!r} on {plan.variant.name} ({plan.name_or_path}), trigger {cfg.trigger_word!r}: "
        f"{cfg.steps} steps, rank {cfg.rank}/alpha {cfg.effective_alpha:g}, lr {cfg.learning_rate:g} "
        f"({cfg.optimizer}), batch {plan.batch_size}, resolutions {list(plan.resolutions)}, from "
        f"{plan.dataset_folder}. VRAM tier {plan.tier.name}, estimated peak {plan.estimate.total_gb} GB. "
        f"Output: {plan.training_folder}/{cfg.name}/{cfg.name}.safetensors."
    )


def generate_training_config(
    config: LoRATrainingConfig,
    settings: Settings,
    *,
    dry_run: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> GeneratedConfig:
    """Validate the config against roots, GPU and dataset, render AI-Toolkit's YAML and (unless dry_run) write it."""
    plan, warnings, choices = plan_training(config, settings, progress)
    text = render_yaml(plan)
    path = config_path_for(config, settings)
    if dry_run:
        written = False
        if path.exists() and path.read_text(encoding="utf-8") != text and not overwrite:
            warnings.append(f"a different config exists at {path}: writing this one will need overwrite=true.")
    else:
        _writable_dir(path.parent, "output_folder")
        written = write_atomically(path, text, overwrite=overwrite)
    return GeneratedConfig(
        config_path=str(path),
        written=written,
        yaml=text,
        summary=summarize(plan),
        warnings=warnings,
        estimated_vram_gb=plan.estimate.total_gb,
        vram_tier=plan.tier.name,
        tier_choices=choices,
        training_folder=plan.training_folder,
        expected_lora_path=str(Path(plan.training_folder) / config.name / f"{config.name}.safetensors"),
    )
