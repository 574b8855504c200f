"""Atomic file writes: a reader (ComfyUI, AI-Toolkit, a person) sees the old file or the new one, never half of one.

`atomic_write` fills `.<name>.<8 random chars>.tmp` (tempfile.mkstemp) beside the target and os.replace's it. A
process killed mid-write (kill -9, OOM, power loss) leaves that temp file behind; `remove_stale_temps` removes such
leftovers of the targets a caller manages. Its rule for telling a leftover from a file a live writer is still
filling: the writer holds an exclusive flock on its temp file from right after mkstemp until after os.replace, and
the kernel drops the lock when the writer dies, however it dies. A temp file is removed only if that lock can be
taken AND it is older than a short grace, which covers the two system calls between mkstemp and flock. Where flock
is unavailable (Windows, some network file systems) only files untouched for an hour are removed.

Standard library only: the job supervisor imports this too.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Literal

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

TEMP_GRACE_S = 10.0
"""A locked-protocol temp file younger than this is never removed (the mkstemp -> flock gap)."""
UNLOCKED_STALE_S = 3600.0
"""Where locks do not work, a temp file is taken for a leftover only when untouched for this long."""
_TEMP_RANDOM = r"[a-z0-9_]{8}"
"""What tempfile.mkstemp puts between prefix and suffix (its _RandomNameSequence: 8 of a-z, 0-9, _)."""


def _default_mode() -> int:
    """What a plain open() would give a new file under the current umask (mkstemp alone gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _lock(fd: int) -> None:
    """Mark a temp file as being filled; a file system without locks still gets the write (age rule then)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)


def atomic_write(target: Path, fill: Callable[[BinaryIO], object], *, mode: int | None = None) -> None:
    """Write `target` through a fsynced temp file in its folder and os.replace; no partial file is ever left."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        _lock(fd)
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.chmod(tmp, _default_mode() if mode is None else mode)
            if fcntl is not None:  # POSIX: replace while the lock is still held (closing the file drops it)
                os.replace(tmp, target)
        if fcntl is None:  # Windows cannot replace a file that is still open
            os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_text_atomic(target: Path, text: str, *, mode: int | None = None) -> None:
    """Write UTF-8 text (newlines as given) atomically."""
    write_bytes_atomic(target, text.encode("utf-8"), mode=mode)


def write_bytes_atomic(target: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write bytes exactly as given, atomically."""
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


def temp_name_pattern(target_name: str) -> re.Pattern[str]:
    """The exact names `atomic_write` gives the temp files of a target called `target_name`."""
    return re.compile(rf"\.{re.escape(target_name)}\.{_TEMP_RANDOM}\.tmp")


def remove_stale_temps(targets: Iterable[Path]) -> list[Path]:
    """Remove the temp files that killed `atomic_write` calls left for `targets`; return those removed.

    Only a regular file (not a symlink) named exactly like one of our temp files of one of `targets` is removed,
    and only when no live writer holds its lock (see the module docstring). Errors are ignored: a leftover that
    cannot be removed now is tried again next time.
    """
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed: list[Path] = []
    for folder, names in by_folder.items():
        try:
            entries = [e.name for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".tmp")]
        except OSError:
            continue
        for entry in entries:
            owner = entry[1:].rsplit(".", 2)[0]
            if owner in names and temp_name_pattern(owner).fullmatch(entry) and _remove_if_stale(folder / entry):
                removed.append(folder / entry)
    return removed


def _remove_if_stale(path: Path) -> bool:
    """Unlink `path` if it is a regular file no writer is filling; the same inode is checked before and after open."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        before = os.lstat(path)
        if not stat.S_ISREG(before.st_mode):
            return False
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(opened.st_mode):
            return False
        lock = _try_lock(fd)
        age = time.time() - opened.st_mtime
        if lock == "held" or age < (TEMP_GRACE_S if lock == "taken" else UNLOCKED_STALE_S):
            return False
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            return False  # the name was swapped for another file meanwhile
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # drops our lock, if taken


def _try_lock(fd: int) -> Literal["taken", "held", "unsupported"]:
    """Take the temp file's lock without waiting: 'held' means a live writer is still filling it."""
    if fcntl is None:
        return "unsupported"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held"
    except OSError:  # ENOLCK, EOPNOTSUPP...: locks do not work on this file system, so only age can tell
        return "unsupported"
    return "taken"
