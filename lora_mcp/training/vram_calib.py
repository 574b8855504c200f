"""Measure a tier's training memory: real LoRA steps on a randomly initialised Z-Image placed as the tier places it.

Used by `scripts/calibrate_vram.py` (imports torch). Per tier: build the transformer (and the text encoder when the
tier keeps it resident) on the meta device, give it random storage on the device, attach the LoRA, then for each
resolution run `steps` optimizer steps with the tier's batch size and checkpointing, recording
`torch.cuda.max_memory_allocated` / `max_memory_reserved` and the step time. Latents are cached in every tier, so the
VAE only sits in memory: a buffer of its size stands in for it. An out-of-memory error at one resolution is recorded
and the next resolution runs.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lora_mcp.training.presets import OptimizerName, VramTier, estimate_vram
from lora_mcp.training.vram_placement import (
    attach_lora,
    build_text_encoder,
    build_transformer,
    materialize,
    weights_term,
)
from lora_mcp.training.zimage_arch import ZImageArch, ZImageTransformer

GB = 1e9


@dataclass
class ResolutionResult:
    """One resolution's measurement beside the estimate for the same settings (GB)."""

    resolution: int
    batch_size: int
    estimate_gb: float
    estimate_parts: str
    peak_allocated_gb: float | None = None
    peak_reserved_gb: float | None = None
    step_s: float | None = None
    error: str | None = None


@dataclass
class TierResult:
    """A tier's exact weights term and its per-resolution measurements."""

    tier: str
    gradient_checkpointing: bool
    text_encoder_resident: bool
    weights_exact_gb: float | None
    weights_estimate_gb: float
    resident_after_setup_gb: float | None
    optimizer: str
    notes: list[str] = field(default_factory=list)
    resolutions: list[ResolutionResult] = field(default_factory=list)


def make_optimizer(
    params: list[nn.Parameter], name: OptimizerName, lr: float = 1e-4
) -> tuple[Any, OptimizerName, str | None]:
    """The optimizer, the name actually used, and a note when it had to stand in for another."""
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=lr), "adamw8bit", None
        except ImportError:
            note = "bitsandbytes missing: ran torch AdamW (8 bytes/param of state, not 2); estimate uses adamw"
            return torch.optim.AdamW(params, lr=lr), "adamw", note
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr), "adafactor", None
    return torch.optim.AdamW(params, lr=lr), "adamw", None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _caption(te: nn.Module | None, arch: ZImageArch, batch: int, tokens: int, device: torch.device) -> torch.Tensor:
    """Caption features: the resident text encoder's second-to-last hidden state, or cached random features."""
    if te is None:
        return torch.randn(batch, tokens, arch.cap_feat_dim, device=device, dtype=torch.bfloat16)
    ids = torch.randint(0, arch.text_encoder.vocab_size, (batch, tokens), device=device)
    with torch.no_grad():
        hidden: torch.Tensor = te(input_ids=ids, output_hidden_states=True).hidden_states[-2]
    return hidden


def train_step(
    model: ZImageTransformer,
    te: nn.Module | None,
    optimizer: Any,
    *,
    res: int,
    batch: int,
    tokens: int,
    device: torch.device,
) -> None:
    """One flow-matching step: noise the latents, predict the velocity, MSE, backward, optimizer step."""
    arch = model.arch
    latents = torch.randn(batch, arch.in_channels, res // 8, res // 8, device=device, dtype=torch.bfloat16)
    noise = torch.randn_like(latents)
    t = torch.rand(batch, device=device)
    noisy = (1 - t[:, None, None, None]) * latents + t[:, None, None, None] * noise
    pred = model(noisy.to(torch.bfloat16), _caption(te, arch, batch, tokens, device), t)
    loss = F.mse_loss(pred.float(), (noise - latents).float())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@dataclass(frozen=True)
class RunSettings:
    """What every tier is measured with."""

    rank: int = 32
    optimizer: OptimizerName = "adamw8bit"
    steps: int = 3
    caption_tokens: int = 128
    resolutions: tuple[int, ...] | None = None
    """Override the tier's resolutions (the CPU test uses a tiny one)."""


def calibrate_tier(arch: ZImageArch, tier: VramTier, device: torch.device, settings: RunSettings) -> TierResult:
    """Place the model as `tier` does, train on each of its resolutions, and return measurements beside estimates."""
    exact = weights_term(arch, tier)
    model = build_transformer(arch, tier)
    te = None if tier.cache_text_embeddings else build_text_encoder(arch, tier)
    notes = []
    if not tier.cache_text_embeddings and te is None:
        notes.append("transformers missing: the text encoder was not placed (measured peak is low by its size)")
    materialize(model, device)
    model.gradient_checkpointing = tier.gradient_checkpointing
    if te is not None:
        materialize(te, device)
    vae = torch.empty(arch.vae_params, dtype=torch.bfloat16, device=device)  # idle: latents are cached
    params = attach_lora(model, settings.rank, float(settings.rank), device)
    optimizer, used, note = make_optimizer(params, settings.optimizer)
    notes += [note] if note else []
    _sync(device)
    resident = torch.cuda.memory_allocated(device) / GB if device.type == "cuda" else None
    base = estimate_vram(tier, rank=settings.rank, optimizer=used, max_resolution=1024, batch_size=tier.batch_size)
    result = TierResult(
        tier=tier.name,
        gradient_checkpointing=tier.gradient_checkpointing,
        text_encoder_resident=te is not None,
        weights_exact_gb=exact.total_gb,
        weights_estimate_gb=round(base.weights_gb, 3),
        resident_after_setup_gb=resident,
        optimizer=used,
        notes=notes,
    )
    for res in settings.resolutions or tier.resolutions:
        result.resolutions.append(_measure(model, te, optimizer, tier, res, settings, device, used))
    del model, te, vae, optimizer, params
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _measure(
    model: ZImageTransformer,
    te: nn.Module | None,
    optimizer: Any,
    tier: VramTier,
    res: int,
    settings: RunSettings,
    device: torch.device,
    used: OptimizerName,
) -> ResolutionResult:
    estimate = estimate_vram(tier, rank=settings.rank, optimizer=used, max_resolution=res, batch_size=tier.batch_size)
    out = ResolutionResult(res, tier.batch_size, estimate.total_gb, estimate.describe())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    try:
        for _ in range(settings.steps):
            start = time.perf_counter()
            train_step(
                model, te, optimizer, res=res, batch=tier.batch_size, tokens=settings.caption_tokens, device=device
            )
            _sync(device)
            times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError as exc:
        out.error = f"out of memory: {str(exc).splitlines()[0]}"
        optimizer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
    if device.type == "cuda":
        out.peak_allocated_gb = round(torch.cuda.max_memory_allocated(device) / GB, 3)
        out.peak_reserved_gb = round(torch.cuda.max_memory_reserved(device) / GB, 3)
    if times:
        steady = times[1:] or times  # the first step includes allocator warm-up and kernel selection
        out.step_s = round(sum(steady) / len(steady), 3)
    return out


def report(results: list[TierResult], header: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: run settings plus every tier's results."""
    return {**header, "tiers": [asdict(r) for r in results]}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(results: list[TierResult], header: dict[str, Any]) -> str:
    """A Markdown table: per tier and resolution, the estimate beside the measured peaks and step time."""
    lines = [
        f"Device: {header.get('device_name')}; arch {header.get('arch')}; rank {header.get('rank')}; "
        f"{header.get('steps')} steps; {header.get('caption_tokens')} caption tokens; torch {header.get('torch')}.",
        "",
        "| tier | res | batch | ckpt | TE resident | weights exact / estimate GB | estimate GB | peak allocated GB "
        "| peak reserved GB | reserved / estimate | step s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for m in r.resolutions:
            ratio = "-" if m.peak_reserved_gb is None else f"{m.peak_reserved_gb / m.estimate_gb:.2f}"
            note = "; ".join(([m.error] if m.error else []) + r.notes)
            lines.append(
                f"| {r.tier} | {m.resolution} | {m.batch_size} | {'on' if r.gradient_checkpointing else 'off'} "
                f"| {'yes' if r.text_encoder_resident else 'no'} | {_fmt(r.weights_exact_gb)} / "
                f"{r.weights_estimate_gb:.2f} | {m.estimate_gb:.1f} | {_fmt(m.peak_allocated_gb)} "
                f"| {_fmt(m.peak_reserved_gb)} | {ratio} | {_fmt(m.step_s)} | {note} |"
            )
    return "\n".join(lines) + "\n"


def weights_table(arch: ZImageArch, tiers: list[VramTier]) -> str:
    """A Markdown table of every tier's exact weights term (meta device) beside the estimate's weights term."""
    lines = [
        "| tier | quantize | offload | TE resident | transformer GB | text encoder GB | VAE GB | exact GB "
        "| estimate GB | estimate / exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tier in tiers:
        exact = weights_term(arch, tier)
        formula = estimate_vram(tier, rank=1, optimizer="adamw", max_resolution=512, batch_size=1).weights_gb
        te = "-" if exact.text_encoder_bytes is None else f"{exact.text_encoder_bytes / GB:.3f}"
        total = exact.total_gb
        ratio = "-" if total is None else f"{formula / total:.3f}"
        lines.append(
            f"| {tier.name} | {'8-bit' if tier.quantize else 'bf16'} "
            f"| {tier.transformer_offload if tier.layer_offloading else 0:.0%} "
            f"| {'no' if tier.cache_text_embeddings else 'yes'} | {exact.transformer_bytes / GB:.3f} | {te} "
            f"| {exact.vae_bytes / GB:.3f} | {_fmt3(total)} | {formula:.3f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def _fmt3(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
