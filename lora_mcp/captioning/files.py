"""Caption files on disk: which images need one, and backups of replaced captions.

Captions are written with `lora_mcp.fsutil.write_text_atomic`, so a reader (or a cancelled run) only ever sees the
old caption or the whole new one; the temp files a killed run leaves are removed when the next run plans. Replaced
captions are copied first into `<dataset>/_caption_backups/<timestamp>/<same relative path>`; dataset inspection
skips that folder.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from lora_mcp.dataset.captions import caption_path
from lora_mcp.dataset.scan import scan_folder
from lora_mcp.fsutil import remove_stale_temps

BACKUP_DIR = "_caption_backups"


class OverwritePolicy(StrEnum):
    """What to do with an image that already has a non-empty caption."""

    SKIP = "skip"
    """Leave it alone (default)."""
    BACKUP = "backup"
    """Caption it again; the old caption is kept in `_caption_backups/<timestamp>/`."""


@dataclass(frozen=True)
class CaptionPlan:
    """Images (relative POSIX paths) to caption, and those skipped because they already have a caption."""

    todo: list[str]
    skipped: list[str] = field(default_factory=list)


def has_caption(image: Path, caption_ext: str) -> bool:
    """True if the image's caption file exists and holds more than whitespace."""
    path = caption_path(image, caption_ext)
    try:
        return bool(path.read_bytes().strip())
    except OSError:
        return False


def plan_captions(folder: Path, caption_ext: str, overwrite: OverwritePolicy) -> CaptionPlan:
    """Every image AI-Toolkit would train on, split by the overwrite policy.

    Also removes the temp files a killed earlier write left beside these captions (`fsutil.remove_stale_temps`
    touches only our own, unlocked, exactly named temp files), so every caption run starts from a clean folder.
    """
    images = scan_folder(folder, caption_ext).images
    remove_stale_temps(caption_path(folder / rel, caption_ext) for rel in images)
    if overwrite == OverwritePolicy.BACKUP:
        return CaptionPlan(todo=images)
    todo = [rel for rel in images if not has_caption(folder / rel, caption_ext)]
    done = set(todo)
    return CaptionPlan(todo=todo, skipped=[rel for rel in images if rel not in done])


def backup_folder(folder: Path, now: float | None = None) -> Path:
    """A fresh backup folder path for this run (created on first use)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    return folder / BACKUP_DIR / stamp


def backup_caption(folder: Path, caption: Path, backup_root: Path) -> Path | None:
    """Copy an existing caption into the backup folder; None when there was nothing to keep."""
    if not caption.is_file() or not caption.read_bytes().strip():
        return None
    target = backup_root / caption.relative_to(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(caption, target)
    return target
