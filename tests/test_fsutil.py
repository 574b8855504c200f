"""Atomic writes: old or new content, never half, no temp file left, the usual permissions."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from lora_mcp.fsutil import atomic_write, remove_stale_temps, temp_name_pattern, write_text_atomic


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


# --- leftovers of a killed write ---------------------------------------------------------------------------------

CHILD_WRITER = """
import sys, time
from pathlib import Path
from lora_mcp.fsutil import atomic_write

def fill(handle):
    handle.write(b"half of the new")
    handle.flush()
    print("filling", flush=True)
    time.sleep(600)

atomic_write(Path(sys.argv[1]), fill)
"""


def age(path: Path, seconds: float = 3600) -> None:
    """Make `path` look untouched for `seconds`, as the next run, minutes or days later, sees a crash's leftover."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_temp_names_are_the_pattern_the_sweep_looks_for(root: Path) -> None:
    seen: list[str] = []
    atomic_write(root / "a.txt", lambda handle: seen.extend(temps(root)))
    assert len(seen) == 1 and temp_name_pattern("a.txt").fullmatch(seen[0]), seen
    assert temps(root) == []


def test_sweep_removes_only_our_own_old_unlocked_leftovers(root: Path, tmp_path: Path) -> None:
    target = root / "a.txt"
    target.write_text("old")
    secret = tmp_path / "secret"
    secret.write_text("keep me")
    stale = root / ".a.txt.k3_x9q0z.tmp"
    stale.write_bytes(b"half")
    planted = {
        ".a.txt.fresh123.tmp": "fresh",  # a writer between mkstemp and its lock could own this
        ".a.txt.short.tmp": "file",  # not 8 random characters
        ".a.txt.ABCDEFGH.tmp": "file",  # mkstemp never uses capitals
        ".a.txt.abcd1234.tmp.bak": "file",
        "a.txt.abcd1234.tmp": "file",  # no leading dot
        ".b.txt.abcd1234.tmp": "file",  # b.txt is not a target of this sweep
        ".a.txt.link1234.tmp": "symlink",
        ".a.txt.dir12345.tmp": "dir",
        ".a.txt.fifo1234.tmp": "fifo",  # opening it for reading without O_NONBLOCK would hang the sweep
    }
    for name, kind in planted.items():
        path = root / name
        if kind == "symlink":
            path.symlink_to(secret)
        elif kind == "dir":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_text(kind)
        if kind != "fresh":
            age(path)
    age(stale)
    assert remove_stale_temps([target, root / "c.txt"]) == [stale]
    assert not stale.exists() and target.read_text() == "old" and secret.read_text() == "keep me"
    assert sorted(p.name for p in root.iterdir()) == sorted([*planted, "a.txt"])
    assert remove_stale_temps([target]) == []


def test_a_live_writer_is_never_swept_however_old_its_file_looks(root: Path) -> None:
    target = root / "a.txt"
    filling, release = threading.Event(), threading.Event()

    def slow(handle: BinaryIO) -> None:
        handle.write(b"new")
        handle.flush()
        filling.set()
        release.wait(30)

    writer = threading.Thread(target=atomic_write, args=(target, slow))
    writer.start()
    try:
        assert filling.wait(30)
        [name] = temps(root)
        age(root / name, 86400)
        assert remove_stale_temps([target]) == [] and temps(root) == [name]
    finally:
        release.set()
        writer.join(30)
    assert target.read_bytes() == b"new" and temps(root) == []


def test_a_writer_killed_mid_write_leaves_a_temp_the_next_sweep_removes(root: Path) -> None:
    target = root / "a.txt"
    target.write_text("old")
    child = subprocess.Popen([sys.executable, "-c", CHILD_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "filling"
        [name] = temps(root)
        age(root / name)
        assert remove_stale_temps([target]) == [], "the child is alive and holds the lock"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert temps(root) == [name] and (root / name).read_bytes() == b"half of the new"
    assert target.read_text() == "old"
    assert remove_stale_temps([target]) == [root / name]
    assert sorted(p.name for p in root.iterdir()) == ["a.txt"] and target.read_text() == "old"
