"""VRAM tiers: how AI-Toolkit's memory options are set for a GPU of a given size, and a peak-VRAM estimate.

Where the choices come from (AI-Toolkit at `aitk_keys.AITK_COMMIT`, and its issue tracker):
- The UI presets for every Z-Image variant (ui/src/app/jobs/new/options.tsx) quantize the transformer and the text
  encoder to `qfloat8` and set `low_vram: true`; that is the configuration people train on 24 GB cards. `low_vram`
  keeps the transformer on the CPU while the model loads and is quantized, which avoids the out-of-memory while
  quantizing reported on 24 GB (#590).
- Caching text embeddings (`train.cache_text_embeddings`) encodes every caption once, then unloads the ~4B-parameter
  Qwen3 text encoder for the whole run: the largest saving below 24 GB.
- Training on 12 GB works with the quantized Turbo preset, cached latents and resolutions 512 + 768; 1024 tends to
  run out of memory there (ostris/ai-toolkit#550).
- Layer offloading (`model.layer_offloading`, RamTorch-style streaming of a share of the transformer's layers from
  CPU RAM) is the only way under ~10 GB; it is slow, so only the 8 GB tier uses it. With it on, AI-Toolkit turns
  qfloat8 into float8.
- Without quantization (32 GB and up) the bf16 weights are trained on directly: better quality, no conversion cost.

The estimate, in GB (1e9 bytes), is a sum of documented parts; it is a planning figure, not a measurement:
  weights      = transformer_params * bytes(precision) * (1 - offloaded share)
                 + text encoder bytes   (0 when text embeddings are cached: the encoder unloads)
                 + VAE
                 The text encoder's input and output embeddings are tied: one bf16 matrix unquantized; quantized,
                 the embedding stays bf16 and lm_head gets its own 8-bit copy, so 1 byte per parameter + 2 per
                 embedding parameter.
  lora         = LORA_PARAMS_PER_RANK * rank * optimizer bytes per parameter
                 (fp32 weight + fp32 gradient + optimizer state: adamw 8, adamw8bit 2, adafactor ~4)
  activations  = batch_size * (largest_resolution / 1024)^2 * ACTIVATION_GB_PER_MEGAPIXEL
                 (x4 without gradient checkpointing)
  overhead     = CUDA context, allocator slack, sampling
The parameter counts and the weights term are checked exactly against the architecture built on the meta device
(tests/test_calibrate_vram.py); `scripts/calibrate_vram.py` measures the whole estimate on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lora_mcp.errors import InvalidInput

TierName = Literal["plenty", "24gb", "16gb", "12gb", "8gb"]
OptimizerName = Literal["adamw8bit", "adamw", "adafactor"]

TRANSFORMER_PARAMS = 6_154_908_736
"""Z-Image's single-stream DiT, counted on the meta device (lora_mcp.training.zimage_arch)."""
TEXT_ENCODER_PARAMS = 4_022_468_096
"""Qwen3-4B, Z-Image's text encoder (tied embeddings counted once)."""
TEXT_ENCODER_EMBEDDING_PARAMS = 388_956_160
"""Its 151936 x 2560 token embedding, tied to lm_head."""
VAE_GB = 83_819_683 * 2 / 1e9
"""The 16-channel Flux-style VAE in bf16."""
LORA_PARAMS_PER_RANK = 2_657_280
"""LoRA parameters per unit of rank: AI-Toolkit targets the linears of the 30 main `layers` only (not the refiners):
attention (4 x 3840x3840), feed-forward (3 x 3840x10240) and adaLN (256x15360), each adding (in + out) * rank."""
OPTIMIZER_BYTES: dict[OptimizerName, int] = {"adamw8bit": 10, "adamw": 16, "adafactor": 12}
ACTIVATION_GB_PER_MEGAPIXEL = 2.0
"""Per sample at 1024x1024 (4096 image tokens) with gradient checkpointing: the saved block inputs plus one block
recomputed during the backward pass."""
NO_CHECKPOINTING_FACTOR = 4.0
OVERHEAD_GB = 1.5
TOLERANCE_GB = 0.5
"""Cards report a little less than their marketed size (a 24 GB RTX 4090 shows 23.99 GiB)."""


@dataclass(frozen=True)
class VramTier:
    """The memory settings one size of GPU gets."""

    name: TierName
    min_gb: float
    quantize: bool
    low_vram: bool
    layer_offloading: bool
    transformer_offload: float
    text_encoder_offload: float
    cache_text_embeddings: bool
    max_resolution: int
    batch_size: int
    gradient_checkpointing: bool
    cache_latents: bool = True
    qtype: str = "qfloat8"

    @property
    def resolutions(self) -> list[int]:
        """Default side lengths: the UI's 512/768/1024 up to this tier's largest."""
        return [r for r in (512, 768, 1024) if r <= self.max_resolution]

    @property
    def bytes_per_weight(self) -> float:
        """1 for 8-bit quantized weights, 2 for bf16."""
        return 1.0 if self.quantize else 2.0


TIERS: tuple[VramTier, ...] = (
    VramTier("plenty", 32, False, False, False, 0.0, 0.0, False, 1024, 1, True),
    VramTier("24gb", 24, True, True, False, 0.0, 0.0, False, 1024, 1, True),
    VramTier("16gb", 16, True, True, False, 0.0, 0.0, True, 1024, 1, True),
    VramTier("12gb", 12, True, True, False, 0.0, 0.0, True, 768, 1, True),
    VramTier("8gb", 8, True, True, True, 0.5, 1.0, True, 512, 1, True),
)


def tier_for(vram_gb: float) -> VramTier:
    """The largest tier a GPU with `vram_gb` of memory fits; InvalidInput below 8 GB."""
    for tier in TIERS:
        if vram_gb >= tier.min_gb - TOLERANCE_GB:
            return tier
    raise InvalidInput(
        f"vram_gb={vram_gb:g} is below the 8 GB that Z-Image LoRA training needs even with 8-bit weights, cached "
        "text embeddings and half the transformer offloaded to CPU RAM.",
        hint="Train on a GPU with at least 8 GB, or pass vram_gb=8 to get the smallest configuration anyway.",
        field="vram_gb",
    )


def tier_choices(tier: VramTier) -> list[str]:
    """What the tier decided, as sentences a person can check."""
    label = "32 GB or more" if tier.name == "plenty" else f"{tier.min_gb:g} GB"
    precision = (
        f"transformer and text encoder quantized to {tier.qtype} (8-bit weights)"
        if tier.quantize
        else "no quantization: bf16 weights, best quality"
    )
    choices = [f"tier {tier.name} ({label})", precision]
    choices.append(
        "low_vram: the transformer stays in CPU RAM while loading and quantizing"
        if tier.low_vram
        else "low_vram off: everything loads straight onto the GPU"
    )
    if tier.layer_offloading:
        choices.append(
            f"layer offloading: {tier.transformer_offload:.0%} of the transformer and "
            f"{tier.text_encoder_offload:.0%} of the text encoder stream from CPU RAM (slow, but fits)"
        )
    choices.append(
        "text embeddings cached once, then the text encoder is unloaded"
        if tier.cache_text_embeddings
        else "text encoder kept on the GPU (captions encoded every step)"
    )
    choices.append(
        "latents cached to disk beside the images (VAE encodes each image once)"
        if tier.cache_latents
        else "latents encoded every step"
    )
    choices.append(f"largest resolution {tier.max_resolution}, default resolutions {tier.resolutions}")
    choices.append(f"batch size {tier.batch_size}")
    choices.append("gradient checkpointing on" if tier.gradient_checkpointing else "gradient checkpointing off")
    return choices


@dataclass(frozen=True)
class VramEstimate:
    """Estimated peak VRAM of the training loop, by part (GB)."""

    weights_gb: float
    lora_gb: float
    activations_gb: float
    overhead_gb: float

    @property
    def total_gb(self) -> float:
        """The sum of the parts, rounded to 0.1 GB."""
        return round(self.weights_gb + self.lora_gb + self.activations_gb + self.overhead_gb, 1)

    def describe(self) -> str:
        """One line: total and parts."""
        return (
            f"~{self.total_gb} GB peak = weights {self.weights_gb:.1f} + LoRA/optimizer {self.lora_gb:.1f} "
            f"+ activations {self.activations_gb:.1f} + overhead {self.overhead_gb:.1f}"
        )


def estimate_vram(
    tier: VramTier, *, rank: int, optimizer: OptimizerName, max_resolution: int, batch_size: int
) -> VramEstimate:
    """Estimate peak VRAM for a tier and the run's rank, optimizer, largest resolution and batch size."""
    on_gpu = 1.0 - (tier.transformer_offload if tier.layer_offloading else 0.0)
    weights = TRANSFORMER_PARAMS * tier.bytes_per_weight * on_gpu / 1e9
    if not tier.cache_text_embeddings:
        weights += text_encoder_gb(quantized=tier.quantize)
    weights += VAE_GB
    lora = LORA_PARAMS_PER_RANK * rank * OPTIMIZER_BYTES[optimizer] / 1e9
    activations = batch_size * (max_resolution / 1024) ** 2 * ACTIVATION_GB_PER_MEGAPIXEL
    if not tier.gradient_checkpointing:
        activations *= NO_CHECKPOINTING_FACTOR
    return VramEstimate(weights, lora, activations, OVERHEAD_GB)


def text_encoder_gb(*, quantized: bool) -> float:
    """The resident text encoder: bf16 with one tied embedding, or 8-bit linears + bf16 embedding + 8-bit lm_head."""
    if not quantized:
        return TEXT_ENCODER_PARAMS * 2 / 1e9
    return (TEXT_ENCODER_PARAMS + 2 * TEXT_ENCODER_EMBEDDING_PARAMS) / 1e9
