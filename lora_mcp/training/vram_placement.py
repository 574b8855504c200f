"""Place a Z-Image model in memory as a VRAM tier does, and count the weights term exactly (imports torch).

How each tier's placement is emulated without bitsandbytes or optimum-quanto:
- 8-bit weights (`quantize: true`, qfloat8): each quantized linear keeps an int8 weight (1 byte per parameter) and a
  bf16 scale per output row, the storage quanto's qfloat8 has. The forward dequantizes one matrix at a time and the
  backward recomputes it instead of saving it, as quanto's linear does, so only the 8-bit copy stays resident. The
  arithmetic is int8 rather than float8; memory is the same, step time is indicative only.
- Quantization covers what AI-Toolkit quantizes: every linear of the transformer except the embedders and the final
  layer; every linear of the Qwen3 text encoder, including `lm_head`, whose tied weight becomes an 8-bit copy while the
  input embedding stays bf16 (checked with optimum-quanto 0.2 on a tied Qwen3: both stay resident).
- Layer offloading (8 GB tier): AI-Toolkit attaches each linear to its offloader with probability `offload_percent`;
  here linears are offloaded in order until that share of their bytes lives in CPU memory, and are copied to the GPU
  in the forward and again in the backward.
- LoRA: a hand-written wrapper (fp32 down/up matrices, up initialised to zero) on every linear of the main `layers`,
  which is where AI-Toolkit's Z-Image network puts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lora_mcp.training.presets import VramTier
from lora_mcp.training.zimage_arch import QUANTIZE_EXCLUDED, ZImageArch, ZImageTransformer, lora_target_names


class _FrozenLinearFn(torch.autograd.Function):
    """y = x W^T + b with W rebuilt from its stored form; only the stored form is kept for the backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: FrozenLinear) -> torch.Tensor:
        ctx.module = module
        return F.linear(x, module.dense_weight(x.device, x.dtype), module.dense_bias(x.device, x.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad @ ctx.module.dense_weight(grad.device, grad.dtype), None


class FrozenLinear(nn.Module):
    """A frozen linear whose weight is stored as int8 + per-row scale (quantized) or bf16, on the GPU or in CPU RAM."""

    weight: torch.Tensor
    scale: torch.Tensor | None
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, quantize: bool, offloaded: bool) -> None:
        super().__init__()
        self.in_features, self.out_features, self.offloaded = linear.in_features, linear.out_features, offloaded
        dtype = torch.int8 if quantize else torch.bfloat16
        device = linear.weight.device
        self.register_buffer("weight", torch.empty(self.out_features, self.in_features, dtype=dtype, device=device))
        scale = torch.empty(self.out_features, 1, dtype=torch.bfloat16, device=device) if quantize else None
        self.register_buffer("scale", scale)
        bias = torch.empty(self.out_features, dtype=torch.bfloat16, device=device) if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def dense_weight(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The weight as a dense matrix on `device` (a transient copy when quantized or offloaded)."""
        weight = self.weight.to(device, non_blocking=True)
        if self.scale is None:
            return weight.to(dtype)
        return weight.to(dtype) * self.scale.to(device, dtype, non_blocking=True)

    def dense_bias(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """The bias on `device`, or None."""
        return None if self.bias is None else self.bias.to(device, dtype, non_blocking=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _FrozenLinearFn.apply(x, self)
        return out


class LoRALinear(nn.Module):
    """base(x) + up(down(x)) * alpha / rank, with fp32 LoRA matrices as AI-Toolkit trains them."""

    def __init__(self, base: nn.Linear | FrozenLinear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.lora_down = nn.Linear(base.in_features, rank, bias=False, dtype=torch.float32)
        self.lora_up = nn.Linear(rank, base.out_features, bias=False, dtype=torch.float32)
        nn.init.zeros_(self.lora_up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.lora_up(self.lora_down(x.to(torch.float32))) * self.scale
        result: torch.Tensor = self.base(x) + delta.to(x.dtype)
        return result


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def place_linears(root: nn.Module, *, quantize: bool, offload_share: float, excluded: Iterable[str] = ()) -> None:
    """Swap the linears of `root` for FrozenLinear as the tier stores them (in place; call before materializing)."""
    skip = tuple(excluded)
    linears = [(n, m) for n, m in root.named_modules() if isinstance(m, nn.Linear)]
    total = sum(m.weight.numel() for _, m in linears)
    moved = 0
    for name, linear in linears:
        offload = offload_share > 0 and moved < offload_share * total
        moved += linear.weight.numel() if offload else 0
        quantized = quantize and not name.startswith(skip)
        if quantized or offload:
            _replace(root, name, FrozenLinear(linear, quantize=quantized, offloaded=offload))


def attach_lora(model: nn.Module, rank: int, alpha: float, device: torch.device) -> list[nn.Parameter]:
    """Wrap every LoRA target in a LoRALinear on `device`; return the trainable parameters (the rest stays frozen)."""
    model.requires_grad_(False)
    for name in lora_target_names(model):
        base = model.get_submodule(name)
        assert isinstance(base, nn.Linear | FrozenLinear)  # lora_target_names only yields linears
        _replace(model, name, LoRALinear(base, rank, alpha).to(device))
    params = [p for n, p in model.named_parameters() if ".lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def materialize(root: nn.Module, device: torch.device) -> None:
    """Give every meta tensor random storage on `device` (CPU for offloaded linears); tied tensors stay tied."""
    made: dict[int, torch.Tensor] = {}

    def fresh(old: torch.Tensor, home: torch.device) -> torch.Tensor:
        if id(old) not in made:
            made[id(old)] = _random_like(old, home, pin=home != device and device.type == "cuda")
        return made[id(old)]

    for module in root.modules():
        home = torch.device("cpu") if getattr(module, "offloaded", False) else device
        for key, param in module._parameters.items():
            if param is not None:
                module._parameters[key] = nn.Parameter(fresh(param, home), requires_grad=False)
        for key, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[key] = fresh(buffer, home)


def _random_like(old: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    """Random values of the right scale: weights N(0, 0.02), int8 uniform with a matching scale, vectors 1."""
    if old.dtype == torch.int8:
        new = torch.randint(-127, 128, old.shape, dtype=torch.int8, device=device)
    elif old.dim() == 2 and old.shape[1] == 1:  # a quantized linear's per-row scale (int8 std ~73 -> 0.02)
        new = torch.full(old.shape, 0.02 / 73, dtype=old.dtype, device=device)
    elif old.dim() >= 2:
        new = torch.empty(old.shape, dtype=old.dtype, device=device).normal_(0.0, 0.02)
    else:  # norm weights, biases, rotary tables: ones keep activations in range
        new = torch.ones(old.shape, dtype=old.dtype, device=device)
    return new.pin_memory() if pin else new


def build_transformer(arch: ZImageArch, tier: VramTier) -> ZImageTransformer:
    """The transformer on the meta device, its linears stored as the tier stores them."""
    with torch.device("meta"):
        model = ZImageTransformer(arch).to(torch.bfloat16)
    share = tier.transformer_offload if tier.layer_offloading else 0.0
    place_linears(model, quantize=tier.quantize, offload_share=share, excluded=QUANTIZE_EXCLUDED)
    return model


def build_text_encoder(arch: ZImageArch, tier: VramTier) -> nn.Module | None:
    """The Qwen3 text encoder on the meta device (None when transformers is missing)."""
    try:
        from transformers import Qwen3Config, Qwen3ForCausalLM
    except ImportError:
        return None
    te = arch.text_encoder
    config = Qwen3Config(
        vocab_size=te.vocab_size,
        hidden_size=te.hidden_size,
        intermediate_size=te.intermediate_size,
        num_hidden_layers=te.num_hidden_layers,
        num_attention_heads=te.num_attention_heads,
        num_key_value_heads=te.num_key_value_heads,
        head_dim=te.head_dim,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        model: nn.Module = Qwen3ForCausalLM(config)
    model.to(torch.bfloat16)
    share = tier.text_encoder_offload if tier.layer_offloading else 0.0
    place_linears(model, quantize=tier.quantize, offload_share=share)
    return model.eval().requires_grad_(False)


def resident_bytes(root: nn.Module) -> int:
    """Bytes of parameters and buffers that live on the accelerator (not offloaded), each shared tensor once."""
    seen: set[int] = set()
    total = 0
    for module in root.modules():
        if getattr(module, "offloaded", False):
            continue
        for tensor in [*module._parameters.values(), *module._buffers.values()]:
            if tensor is not None and id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


@dataclass(frozen=True)
class WeightsTerm:
    """Exact resident bytes of a tier's weights, by part, counted on the meta device."""

    transformer_params: int
    transformer_bytes: int
    text_encoder_bytes: int | None
    """0 when the tier caches text embeddings (the encoder unloads); None when transformers is unavailable."""
    vae_bytes: int

    @property
    def total_gb(self) -> float | None:
        """The sum in GB (1e9 bytes); None when the text encoder could not be counted."""
        if self.text_encoder_bytes is None:
            return None
        return (self.transformer_bytes + self.text_encoder_bytes + self.vae_bytes) / 1e9


def weights_term(arch: ZImageArch, tier: VramTier) -> WeightsTerm:
    """Count the weights term for `tier` exactly, building the full model on the meta device (no memory used)."""
    model = build_transformer(arch, tier)
    te_bytes: int | None = 0
    if not tier.cache_text_embeddings:
        te = build_text_encoder(arch, tier)
        te_bytes = None if te is None else resident_bytes(te)
    params = sum(p.numel() for p in model.parameters()) + sum(
        m.weight.numel() + (0 if m.bias is None else m.bias.numel())
        for m in model.modules()
        if isinstance(m, FrozenLinear)
    )
    return WeightsTerm(params, resident_bytes(model), te_bytes, arch.vae_params * 2)
