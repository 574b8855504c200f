"""The VRAM calibration: the weights term counted exactly on the meta device, and a CPU run end to end (tiny model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")

from lora_mcp.training import vram_calib  # noqa: E402
from lora_mcp.training.presets import (  # noqa: E402
    LORA_PARAMS_PER_RANK,
    TIERS,
    TRANSFORMER_PARAMS,
    VramTier,
    estimate_vram,
)
from lora_mcp.training.vram_placement import FrozenLinear, attach_lora, build_transformer, weights_term  # noqa: E402
from lora_mcp.training.zimage_arch import TINY, ZIMAGE_TURBO, ZImageTransformer, lora_target_names  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "calibrate_vram.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calibrate_vram", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_size_architecture_has_the_published_parameter_count() -> None:
    with torch.device("meta"):
        model = ZImageTransformer(ZIMAGE_TURBO)
    assert sum(p.numel() for p in model.parameters()) == TRANSFORMER_PARAMS == 6_154_908_736
    targets = lora_target_names(model)
    assert len(targets) == 30 * 8, "AI-Toolkit's Z-Image LoRA: 8 linears in each of the 30 main layers"
    per_rank = sum(model.get_submodule(n).in_features + model.get_submodule(n).out_features for n in targets)
    assert per_rank == LORA_PARAMS_PER_RANK


@pytest.mark.parametrize("tier", TIERS, ids=lambda t: t.name)
def test_meta_weights_term_matches_the_formula(tier: VramTier) -> None:
    if not tier.cache_text_embeddings:
        pytest.importorskip("transformers")
    exact = weights_term(ZIMAGE_TURBO, tier)
    formula = estimate_vram(tier, rank=32, optimizer="adamw8bit", max_resolution=1024, batch_size=1).weights_gb
    assert exact.total_gb is not None
    assert formula == pytest.approx(exact.total_gb, rel=0.01), (tier.name, formula, exact)


def test_quantized_transformer_keeps_the_sensitive_layers_in_bf16() -> None:
    model = build_transformer(ZIMAGE_TURBO, TIERS[1])
    assert isinstance(model.layers[0].attention.to_q, FrozenLinear)
    assert model.layers[0].attention.to_q.weight.dtype == torch.int8
    assert model.cap_embedder[1].weight.dtype == torch.bfloat16 and not isinstance(model.cap_embedder[1], FrozenLinear)


def test_frozen_int8_linear_matches_a_dense_linear_forward_and_backward() -> None:
    dense = torch.nn.Linear(16, 8)
    frozen = FrozenLinear(dense, quantize=True, offloaded=False)
    frozen.weight.copy_(torch.randint(-127, 128, (8, 16), dtype=torch.int8))
    frozen.scale.fill_(0.01)
    frozen.bias.normal_()
    weight = frozen.weight.float() * 0.01
    x = torch.randn(3, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    frozen(x).sum().backward()
    (x_ref @ weight.T + frozen.bias.float()).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, x_ref.grad, atol=1e-2)


def test_lora_wraps_only_the_main_layers_and_trains() -> None:
    model = ZImageTransformer(TINY)
    params = attach_lora(model, rank=4, alpha=4.0, device=torch.device("cpu"))
    assert len(params) == 2 * 8 * TINY.n_layers
    assert all(".lora_" not in n for n, _ in model.noise_refiner.named_parameters())
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".lora_" not in n)


def test_tiny_calibration_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "calib.json"
    args = ["--arch", "tiny", "--device", "cpu", "--tiers", "24gb,8gb", "--resolutions", "64,128"]
    assert load_script().main([*args, "--steps", "2", "--caption-tokens", "8", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [t["tier"] for t in doc["tiers"]] == ["24gb", "8gb"]
    for tier in doc["tiers"]:
        assert [r["resolution"] for r in tier["resolutions"]] == [64, 128]
        assert all(r["error"] is None and r["step_s"] > 0 and r["estimate_gb"] > 0 for r in tier["resolutions"])
    has_transformers = importlib.util.find_spec("transformers") is not None
    assert doc["tiers"][0]["text_encoder_resident"] is has_transformers, "the 24gb tier keeps its text encoder"
    table = out.with_suffix(".md").read_text()
    assert "| 8gb | 128 | 1 | on | no |" in table


def test_out_of_memory_at_one_resolution_is_recorded_and_the_next_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = vram_calib.train_step

    def step_that_fails_at_128(*args: object, **kwargs: object) -> None:
        if kwargs["res"] == 128:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        real_step(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vram_calib, "train_step", step_that_fails_at_128)
    settings = vram_calib.RunSettings(rank=4, steps=1, caption_tokens=8, resolutions=(128, 64))
    result = vram_calib.calibrate_tier(TINY, TIERS[2], torch.device("cpu"), settings)
    first, second = result.resolutions
    assert first.error is not None and "out of memory" in first.error and first.step_s is None
    assert second.error is None and second.step_s is not None
