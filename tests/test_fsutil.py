"""Atomic writes: old or new content, never half, no temp file left, the usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from lora_mcp.fsutil import atomic_write, write_text_atomic


def test_replaces_content_with_umask_permissions(root: Path) -> None:
    target = root / "a.txt"
    target.write_text("old")
    old_umask = os.umask(0o022)
    try:
        write_text_atomic(target, "new \u00e9")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == "new \u00e9".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600: other users (ComfyUI) can read it
    assert sorted(p.name for p in root.iterdir()) == ["a.txt"]


def test_a_failure_leaves_the_old_file_and_no_temp(root: Path) -> None:
    target = root / "a.txt"
    target.write_text("old")

    def half(handle: BinaryIO) -> None:
        handle.write(b"ne")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half)
    assert target.read_text() == "old"
    assert sorted(p.name for p in root.iterdir()) == ["a.txt"]


def test_explicit_mode(tmp_path: Path) -> None:
    target = tmp_path / "b.bin"
    atomic_write(target, lambda h: h.write(b"x"), mode=0o640)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
