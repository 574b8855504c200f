"""A self-contained re-implementation of Z-Image's single-stream DiT, for memory calibration (imports torch).

Written from the published architecture (the `transformer/config.json` of Tongyi-MAI/Z-Image-Turbo: dim 3840,
30 heads, 30 layers, 2 refiner layers, caption features 2560, 3-axis RoPE 32/48/48), not from diffusers' code. Module
and parameter names follow the checkpoint's keys (`layers.0.attention.to_q.weight`, ...), so LoRA targets and
quantization exclusions written against the real model apply here unchanged. Only what memory depends on is kept:
the same parameters, the same per-block computation and saved activations, SDPA attention, per-block gradient
checkpointing. No weights are ever loaded: the calibration fills them with random numbers.

Not imported at server start: only `scripts/calibrate_vram.py`, `lora_mcp.training.vram_calib` and tests use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

ADALN_EMBED_DIM = 256
FREQ_EMBED_DIM = 256
T_EMBED_MID = 1024


@dataclass(frozen=True)
class TextEncoderArch:
    """The Qwen3 text encoder's shape (a `transformers.Qwen3Config` subset)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int


@dataclass(frozen=True)
class ZImageArch:
    """The transformer's shape, as its `config.json` gives it, plus the text encoder and VAE sizes."""

    name: str
    dim: int
    n_layers: int
    n_refiner_layers: int
    n_heads: int
    cap_feat_dim: int
    axes_dims: tuple[int, int, int]
    text_encoder: TextEncoderArch
    vae_params: int
    in_channels: int = 16
    patch_size: int = 2
    norm_eps: float = 1e-5
    rope_theta: float = 256.0
    t_scale: float = 1000.0

    @property
    def head_dim(self) -> int:
        """Per-head width; equals the sum of the RoPE axes."""
        return self.dim // self.n_heads

    @property
    def ffn_dim(self) -> int:
        """The SwiGLU hidden width: 8/3 of the model width (10240 for 3840)."""
        return int(self.dim / 3 * 8)

    @property
    def adaln_dim(self) -> int:
        """Width of the timestep embedding that drives every block's modulation."""
        return min(self.dim, ADALN_EMBED_DIM)


ZIMAGE_TURBO = ZImageArch(
    name="z-image-turbo",
    dim=3840,
    n_layers=30,
    n_refiner_layers=2,
    n_heads=30,
    cap_feat_dim=2560,
    axes_dims=(32, 48, 48),
    # Qwen3-4B: tied input/output embeddings, 36 layers, GQA 32/8 heads of 128.
    text_encoder=TextEncoderArch(151936, 2560, 9728, 36, 32, 8, 128),
    # The 16-channel Flux-style AutoencoderKL (128/256/512/512 channels, 2 layers per block), counted on the meta
    # device with diffusers 0.39; it idles on the GPU because every tier caches latents.
    vae_params=83_819_683,
)
"""The published Z-Image (Turbo, Base and De-Turbo share it): 6,154,908,736 transformer parameters."""

TINY = ZImageArch(
    name="tiny",
    dim=64,
    n_layers=2,
    n_refiner_layers=1,
    n_heads=2,
    cap_feat_dim=64,
    axes_dims=(8, 12, 12),
    text_encoder=TextEncoderArch(512, 64, 128, 2, 4, 2, 16),
    vae_params=100_000,
)
"""A scaled-down model with the same structure, for CPU tests (the shape of ../shared/tools/make_tiny_zimage.py)."""


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Attention(nn.Module):
    """Self-attention with RMS-normed queries and keys and rotary positions (no biases)."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.norm_q = nn.RMSNorm(dim // heads, eps=eps)
        self.norm_k = nn.RMSNorm(dim // heads, eps=eps)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim, bias=False)])  # keys read `to_out.0`, as in the checkpoint

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.norm_q(self.to_q(x).view(b, n, self.heads, -1))
        k = self.norm_k(self.to_k(x).view(b, n, self.heads, -1))
        v = self.to_v(x).view(b, n, self.heads, -1)
        q, k = _rotate(q, rope), _rotate(k, rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, -1))


def _rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate interleaved channel pairs by the token's angles, in float32 as the reference does."""
    cos, sin = rope  # (n, head_dim / 2)
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


class Block(nn.Module):
    """One transformer block: sandwich-normed attention and SwiGLU, tanh-gated by the timestep when modulated."""

    def __init__(self, arch: ZImageArch, modulation: bool) -> None:
        super().__init__()
        dim, eps = arch.dim, arch.norm_eps
        self.attention = Attention(dim, arch.n_heads, 1e-5)
        self.feed_forward = FeedForward(dim, arch.ffn_dim)
        self.attention_norm1 = nn.RMSNorm(dim, eps=eps)
        self.ffn_norm1 = nn.RMSNorm(dim, eps=eps)
        self.attention_norm2 = nn.RMSNorm(dim, eps=eps)
        self.ffn_norm2 = nn.RMSNorm(dim, eps=eps)
        self.adaLN_modulation = nn.Sequential(nn.Linear(arch.adaln_dim, 4 * dim)) if modulation else None

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], adaln: torch.Tensor | None
    ) -> torch.Tensor:
        if self.adaLN_modulation is None or adaln is None:
            x = x + self.attention_norm2(self.attention(self.attention_norm1(x), rope))
            return x + self.ffn_norm2(self.feed_forward(self.ffn_norm1(x)))
        scale_attn, gate_attn, scale_ffn, gate_ffn = self.adaLN_modulation(adaln).unsqueeze(1).chunk(4, dim=2)
        attn = self.attention(self.attention_norm1(x) * (1 + scale_attn), rope)
        x = x + gate_attn.tanh() * self.attention_norm2(attn)
        ffn = self.feed_forward(self.ffn_norm1(x) * (1 + scale_ffn))
        return x + gate_ffn.tanh() * self.ffn_norm2(ffn)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the timestep through a two-layer MLP."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQ_EMBED_DIM, T_EMBED_MID), nn.SiLU(), nn.Linear(T_EMBED_MID, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = FREQ_EMBED_DIM // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]
        features = torch.cat((angles.cos(), angles.sin()), dim=-1)
        return self.mlp(features.to(next(self.mlp.parameters()).dtype))


class FinalLayer(nn.Module):
    """LayerNorm scaled by the timestep, then the projection back to patch pixels."""

    def __init__(self, arch: ZImageArch, out_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(arch.dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(arch.dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(arch.adaln_dim, arch.dim))

    def forward(self, x: torch.Tensor, adaln: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm_final(x) * (1 + self.adaLN_modulation(adaln).unsqueeze(1)))


class ZImageTransformer(nn.Module):
    """Noise refiner on image tokens, context refiner on caption tokens, then the joint single-stream layers."""

    def __init__(self, arch: ZImageArch) -> None:
        super().__init__()
        self.arch = arch
        self.gradient_checkpointing = False
        patch_dim = arch.patch_size**2 * arch.in_channels
        key = f"{arch.patch_size}-1"
        self.all_x_embedder = nn.ModuleDict({key: nn.Linear(patch_dim, arch.dim)})
        self.all_final_layer = nn.ModuleDict({key: FinalLayer(arch, patch_dim)})
        self.noise_refiner = nn.ModuleList(Block(arch, modulation=True) for _ in range(arch.n_refiner_layers))
        self.context_refiner = nn.ModuleList(Block(arch, modulation=False) for _ in range(arch.n_refiner_layers))
        self.t_embedder = TimestepEmbedder(arch.adaln_dim)
        self.cap_embedder = nn.Sequential(
            nn.RMSNorm(arch.cap_feat_dim, eps=arch.norm_eps), nn.Linear(arch.cap_feat_dim, arch.dim)
        )
        self.x_pad_token = nn.Parameter(torch.zeros(1, arch.dim))
        self.cap_pad_token = nn.Parameter(torch.zeros(1, arch.dim))
        self.layers = nn.ModuleList(Block(arch, modulation=True) for _ in range(arch.n_layers))

    def forward(self, latents: torch.Tensor, caption: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict the flow for latents (B, C, H, W) given caption features (B, L, cap_feat_dim) and t in [0, 1]."""
        arch, p = self.arch, self.arch.patch_size
        b, c, h, w = latents.shape
        tokens = latents.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        key = f"{p}-1"
        x = self.all_x_embedder[key](tokens)
        cap = self.cap_embedder(caption)
        adaln = self.t_embedder(t * arch.t_scale)
        img_rope, cap_rope = self._rope(h // p, w // p, caption.shape[1], latents.device)
        for block in self.noise_refiner:
            x = self._run(block, x, img_rope, adaln)
        for block in self.context_refiner:
            cap = self._run(block, cap, cap_rope, None)
        n_img = x.shape[1]
        joint = torch.cat((x, cap), dim=1)
        joint_rope = (torch.cat((img_rope[0], cap_rope[0])), torch.cat((img_rope[1], cap_rope[1])))
        for block in self.layers:
            joint = self._run(block, joint, joint_rope, adaln)
        out = self.all_final_layer[key](joint[:, :n_img], adaln)
        return out.view(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)

    def _run(
        self, block: nn.Module, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], adaln: torch.Tensor | None
    ) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            out: torch.Tensor = checkpoint(block, x, rope, adaln, use_reentrant=False)
            return out
        result: torch.Tensor = block(x, rope, adaln)
        return result

    def _rope(
        self, rows: int, cols: int, cap_len: int, device: torch.device
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Angles for image tokens (axis 0 after the caption, then row, column) and caption tokens (axis 0 = index)."""
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        img_pos = torch.stack((torch.full_like(r, cap_len + 1), r, c), dim=-1).reshape(-1, 3)
        cap_pos = torch.zeros(cap_len, 3, dtype=torch.long)
        cap_pos[:, 0] = torch.arange(1, cap_len + 1)
        return self._angles(img_pos, device), self._angles(cap_pos, device)

    def _angles(self, pos: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        for axis, d in enumerate(self.arch.axes_dims):
            freqs = self.arch.rope_theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            parts.append(pos[:, axis, None].double() * freqs[None])
        angles = torch.cat(parts, dim=-1).float().to(device)
        return angles.cos(), angles.sin()


def lora_target_names(model: nn.Module) -> list[str]:
    """Names of the linears AI-Toolkit puts a LoRA on for Z-Image: every linear inside the 30 main `layers`."""
    return [n for n, m in model.named_modules() if n.startswith("layers.") and hasattr(m, "in_features")]


QUANTIZE_EXCLUDED = ("t_embedder", "cap_embedder", "all_x_embedder", "all_final_layer")
"""Modules AI-Toolkit keeps in full precision when it quantizes the Z-Image transformer."""
