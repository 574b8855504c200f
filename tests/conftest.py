"""Shared fixtures. Every test gets its own state dir and root (like llm's LLM_USER_PATH fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lora_mcp.settings import Settings, get_settings

SHARED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "images"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point LORA_MCP_HOME and LORA_MCP_ROOTS at fresh temp folders for every test."""
    for key in list(__import__("os").environ):
        if key.startswith("LORA_MCP_"):
            monkeypatch.delenv(key)
    home = tmp_path / "state"
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("LORA_MCP_HOME", str(home))
    monkeypatch.setenv("LORA_MCP_ROOTS", str(root))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings() -> Settings:
    """The settings the isolated environment produces."""
    return get_settings()


@pytest.fixture
def root(settings: Settings) -> Path:
    """The one allowed root of this test."""
    return settings.roots[0]


@pytest.fixture
def shared_images() -> Path:
    """The public-domain images in ../shared/data/images; fails loudly when missing."""
    if not SHARED_IMAGES.is_dir():
        pytest.fail(f"shared test images missing at {SHARED_IMAGES}: CI must lay ../shared beside the checkout")
    return SHARED_IMAGES
