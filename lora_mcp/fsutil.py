"""Atomic file writes: a reader (ComfyUI, AI-Toolkit, a person) sees the old file or the new one, never half of one.

Standard library only: the job supervisor imports this too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _default_mode() -> int:
    """What a plain open() would give a new file under the current umask (mkstemp alone gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(target: Path, fill: Callable[[BinaryIO], object], *, mode: int | None = None) -> None:
    """Write `target` through a fsynced temp file in its folder and os.replace; no partial file is ever left."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_text_atomic(target: Path, text: str, *, mode: int | None = None) -> None:
    """Write UTF-8 text (newlines as given) atomically."""
    data = text.encode("utf-8")
    atomic_write(target, lambda handle: handle.write(data), mode=mode)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable; some file systems (and Windows) cannot open a folder, which is fine to skip."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)
