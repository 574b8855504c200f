"""Property: every valid LoRATrainingConfig renders YAML whose keys AI-Toolkit reads and whose numbers are in range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_mcp.training.aitk_keys import unknown_keys
from lora_mcp.training.aitk_yaml import render_yaml
from lora_mcp.training.config import NAME_RE, TRIGGER_RE, LoRATrainingConfig, normalize_resolutions
from lora_mcp.training.generate import ResolvedPaths, make_plan
from lora_mcp.training.presets import TIERS

PATHS = ResolvedPaths(Path("/data/set"), Path("/data/output"), None, None)
sides = st.integers(64, 4096)
prompts = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=80).filter(
    lambda p: p.strip() and "--" not in p and "${" not in p
)
configs = st.builds(
    LoRATrainingConfig,
    name=st.from_regex(NAME_RE, fullmatch=True),
    dataset_folder=st.just("/data/set"),
    trigger_word=st.from_regex(TRIGGER_RE, fullmatch=True).filter(lambda w: len(w) <= 50),
    variant=st.sampled_from(["zimage-turbo", "zimage-deturbo", "zimage"]),
    steps=st.integers(100, 20000),
    rank=st.integers(1, 256),
    alpha=st.none() | st.floats(0.01, 1024),
    learning_rate=st.floats(1e-6, 1e-2),
    optimizer=st.sampled_from(["adamw8bit", "adamw", "adafactor"]),
    batch_size=st.none() | st.integers(1, 16),
    resolutions=st.none()
    | st.lists(sides, min_size=1, max_size=8)
    | st.lists(st.lists(sides, min_size=2, max_size=2), min_size=1, max_size=8),
    caption_ext=st.from_regex(r"\.?[A-Za-z0-9]{1,10}", fullmatch=True),
    caption_dropout_rate=st.floats(0, 0.5),
    cache_latents=st.none() | st.booleans(),
    save_every=st.integers(10, 20000),
    max_saves_to_keep=st.integers(1, 100),
    sample_every=st.integers(0, 20000),
    sample_prompts=st.none() | st.lists(prompts, min_size=1, max_size=20),
    seed=st.integers(0, 2**32 - 1),
    vram_gb=st.just(24.0),
)


def in_range(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, tier=st.sampled_from(TIERS))
def test_every_valid_config_renders_allowed_keys_and_sane_numbers(config: LoRATrainingConfig, tier: Any) -> None:
    resolutions = normalize_resolutions(config.resolutions)[0] if config.resolutions else tier.resolutions
    text = render_yaml(make_plan(config, tier, PATHS, resolutions))
    loaded = yaml.safe_load(text)
    assert unknown_keys(loaded) == []
    process = loaded["config"]["process"][0]
    train, network, sample = process["train"], process["network"], process["sample"]
    assert loaded["config"]["name"] == config.name and process["trigger_word"] == config.trigger_word
    assert in_range(train["steps"], 100, 20000) and in_range(train["lr"], 1e-6, 1e-2)
    assert train["lr"] == config.learning_rate
    assert in_range(train["batch_size"], 1, 16)
    assert in_range(network["linear"], 1, 256) and in_range(network["linear_alpha"], 1e-9, 1024)
    assert all(in_range(r, 64, 4096) for r in process["datasets"][0]["resolution"])
    assert in_range(process["datasets"][0]["caption_dropout_rate"], 0, 0.5)
    assert in_range(sample["guidance_scale"], 1, 4) and in_range(sample["sample_steps"], 1, 50)
    assert in_range(sample["sample_every"], 1, 20000) and in_range(process["save"]["save_every"], 10, 20000)
    assert [s["prompt"] for s in sample["samples"]] == config.effective_prompts
    for key in ("layer_offloading_transformer_percent", "layer_offloading_text_encoder_percent"):
        assert key not in process["model"] or in_range(process["model"][key], 0, 1)
    assert "${" not in text
