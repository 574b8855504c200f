"""Which files in a dataset folder AI-Toolkit would train on, mirroring its loader (toolkit/data_loader.py).

- Subfolders ARE scanned: AI-Toolkit walks the dataset folder recursively (`os.walk`), so an image in a subfolder
  is trained on; its caption sits beside it.
- Skipped like AI-Toolkit: hidden files and folders (`.thumbs`, `.aitk_size.json`), and the `_controls` folder.
  Also skipped: AI-Toolkit's caches `_latent_cache`, `_t_e_cache` and `_clip_vision_cache` (they hold no images),
  and lora-mcp's `_caption_backups` and `_reviews` (old captions and review YAML only, so AI-Toolkit trains on
  nothing there either).
- Image extensions are AI-Toolkit's `image_extensions` (.jpg .jpeg .png .webp), matched case-insensitively.
  Other image extensions are listed as unsupported: AI-Toolkit skips those files silently.
- Symlinked folders are not followed (os.walk's default). A symlinked file whose target lies outside the folder
  is ignored rather than read, so inspection never reads beyond the folder it was given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""What AI-Toolkit's dataset loader reads (toolkit/data_loader.py `image_extensions`)."""

UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(
    {
        ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".jfif", ".jpe",
        ".ico", ".psd", ".tga", ".exr", ".hdr", ".ppm", ".pgm", ".pbm", ".pnm", ".svg", ".dng", ".raw", ".cr2",
        ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf",
    }
)  # fmt: skip
"""Image formats people drop into dataset folders that AI-Toolkit does not pick up."""

SKIPPED_DIRS = frozenset(
    {"_controls", "_latent_cache", "_t_e_cache", "_clip_vision_cache", "_caption_backups", "_reviews"}
)


@dataclass
class Inventory:
    """The files of a dataset folder by role, as paths relative to the folder (POSIX separators), sorted."""

    images: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def scan_folder(folder: Path, caption_ext: str) -> Inventory:
    """Sort every file under `folder` into images, unsupported images, captions and ignored files."""
    inventory = Inventory()
    real_folder = Path(os.path.realpath(folder))
    caption_suffix = f".{caption_ext}".lower()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            suffix = path.suffix.lower()
            if not _stays_inside(path, real_folder):
                inventory.ignored.append(rel)
            elif suffix in IMAGE_EXTENSIONS:
                inventory.images.append(rel)
            elif suffix in UNSUPPORTED_IMAGE_EXTENSIONS:
                inventory.unsupported.append(rel)
            elif suffix == caption_suffix:
                inventory.captions.append(rel)
            else:
                inventory.ignored.append(rel)
    for names in (inventory.images, inventory.unsupported, inventory.captions, inventory.ignored):
        names.sort()
    return inventory


def _stays_inside(path: Path, real_folder: Path) -> bool:
    """False for a symlink leading out of the folder, or a dangling one, or anything but a regular file."""
    if not path.is_symlink():
        return path.is_file()
    target = Path(os.path.realpath(path))
    return target.is_file() and target.is_relative_to(real_folder)
