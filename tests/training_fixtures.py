"""Helpers for the training-config tests: a small real dataset inside the root, and golden-file comparison."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
ROOT_PLACEHOLDER = "/ROOT"
TRIGGER = "ohwx"
IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")


def make_dataset(root: Path, shared_images: Path, name: str = "dataset") -> Path:
    """Copy six shared images into `root/name` with a caption each that holds the trigger word."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for image in IMAGES:
        shutil.copy(shared_images / image, folder / image)
        (folder / image).with_suffix(".txt").write_text(f"a photo of {TRIGGER}, {Path(image).stem}", encoding="utf-8")
    return folder


def assert_golden(name: str, text: str, root: Path) -> None:
    """Compare `text` (root path replaced) with tests/golden/<name>; UPDATE_GOLDEN=1 rewrites the file instead."""
    normalized = text.replace(str(root), ROOT_PLACEHOLDER)
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(normalized, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing: run the tests once with UPDATE_GOLDEN=1 and review it")
    assert normalized == path.read_text(encoding="utf-8"), f"{name} changed: rerun with UPDATE_GOLDEN=1 if intended"
