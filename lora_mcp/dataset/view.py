"""view_dataset and set_caption: let an agent without file tools see a dataset page by page and fix one caption.

The models are importable without Pillow (the server declares its output schemas at start-up); decoding and
drawing happen inside the functions. Problems come from inspect_dataset through the facts cache, so a second view
of an unchanged folder decodes nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from lora_mcp.captioning.files import backup_caption, backup_folder
from lora_mcp.dataset.captions import DEFAULT_CAPTION_EXT, caption_path, normalize_caption_ext
from lora_mcp.dataset.factcache import FactsCache
from lora_mcp.dataset.scan import IMAGE_EXTENSIONS
from lora_mcp.errors import InvalidInput, NotFound, PathNotAllowed
from lora_mcp.fsutil import remove_stale_temps, write_text_atomic

MAX_PAGE_SIZE = 36
"""Tiles per contact sheet: 6 x 6 still shows each picture at 256 px within the ~1 MB image budget."""


class ViewItem(BaseModel):
    """One image of the page; `index` is the number drawn on its tile."""

    index: int = Field(description="1-based position in the whole folder (sorted by file), drawn on the tile.")
    file: str = Field(description="Image path relative to the folder.")
    width: int | None = Field(description="Width in pixels as trained (after EXIF rotation); null if undecodable.")
    height: int | None = Field(description="Height in pixels as trained; null if undecodable.")
    caption: str | None = Field(description="The caption text; null when there is no readable caption file.")
    problems: list[str] = Field(description="inspect_dataset problem codes that name this image or its caption.")


class DatasetPage(BaseModel):
    """One page of a dataset: per-image facts; the tool adds a numbered contact sheet of the same images."""

    folder: str
    page: int
    page_size: int
    total_images: int
    total_pages: int
    items: list[ViewItem]


def check_page(page: int, page_size: int, total: int) -> int:
    """The number of pages; InvalidInput when `page` lies beyond them or `page_size` is out of range."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"page_size {page_size} is out of range (1-{MAX_PAGE_SIZE}).",
            hint=f"Pass a page_size between 1 and {MAX_PAGE_SIZE}.",
            field="page_size",
        )
    pages = max(1, math.ceil(total / page_size))
    if not 1 <= page <= pages:
        raise InvalidInput(
            f"page {page} does not exist: {total} items make {pages} page(s) of {page_size}.",
            hint=f"Pass a page between 1 and {pages}.",
            field="page",
        )
    return pages


def read_caption_text(image: Path, caption_ext: str = DEFAULT_CAPTION_EXT) -> str | None:
    """The caption text of `image`; None when the file is missing, unreadable or not UTF-8."""
    try:
        return caption_path(image, caption_ext).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def page_of_dataset(
    folder: Path,
    page: int = 1,
    page_size: int = 16,
    *,
    facts_cache: FactsCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DatasetPage, bytes | None]:
    """A page of the folder's images with sizes, captions and problem codes, and a JPEG contact sheet of them."""
    from lora_mcp.dataset.inspect import inspect_dataset
    from lora_mcp.render import labelled_sheet

    report = inspect_dataset(folder, facts_cache=facts_cache, progress=progress)
    pages = check_page(page, page_size, len(report.images))
    codes: dict[str, list[str]] = {}
    for problem in report.problems:
        for name in problem.files:
            codes.setdefault(name, []).append(problem.code.value)
    start = (page - 1) * page_size
    items = []
    for index, info in enumerate(report.images[start : start + page_size], start=start + 1):
        cap = caption_path(PurePosixPath(info.file), report.caption_ext).as_posix()
        found = dict.fromkeys([*codes.get(info.file, []), *codes.get(cap, [])])
        text = read_caption_text(folder / info.file, report.caption_ext)
        items.append(
            ViewItem(index=index, file=info.file, width=info.width, height=info.height, caption=text, problems=[*found])
        )
    tiles = [(folder / i.file if i.width else None, f"#{i.index}  {i.file}") for i in items]
    total = len(report.images)
    result = DatasetPage(
        folder=str(folder), page=page, page_size=page_size, total_images=total, total_pages=pages, items=items
    )
    return result, labelled_sheet(tiles)


def image_in_folder(folder: Path, image: str) -> Path:
    """`folder / image` for a relative image name that stays inside `folder` (symlinks resolved)."""
    pure = PurePosixPath(image)
    path = folder / pure
    inside = Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    if not image.strip() or pure.is_absolute() or ".." in pure.parts or not inside:
        raise PathNotAllowed(
            f"The image {image!r} is not a path inside the folder {folder}.",
            hint="Pass the image's path relative to the folder, as view_dataset lists it (e.g. img_001.png).",
            field="image",
        )
    return path


class SetCaptionResult(BaseModel):
    """What set_caption wrote."""

    caption_file: str = Field(description="The caption file written (absolute path).")
    old_caption: str | None = Field(description="The caption before; null when there was no readable one.")
    backup_file: str | None = Field(description="Copy of the old caption; null when there was none to keep.")
    changed: bool = Field(description="False when the file already held exactly this caption (nothing written).")


def replace_caption(folder: Path, image: str, caption: str, caption_ext: str = DEFAULT_CAPTION_EXT) -> SetCaptionResult:
    """Replace one image's caption atomically, copying a non-empty old one to `_caption_backups/<time>/` first."""
    ext = normalize_caption_ext(caption_ext)
    path = image_in_folder(folder, image)
    if not path.is_file():
        raise NotFound(f"No image {image!r} in {folder}.", hint="Call view_dataset to list the images.", field="image")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InvalidInput(
            f"{image!r} is not a training image ({', '.join(IMAGE_EXTENSIONS)}).",
            hint="Name an image file, as view_dataset lists it.",
            field="image",
        )
    text = caption.strip()
    if not text:
        raise InvalidInput("The caption is empty.", hint="Pass the caption text to write.", field="caption")
    target = caption_path(path, ext)
    if not Path(os.path.realpath(target)).is_relative_to(os.path.realpath(folder)):
        raise PathNotAllowed(
            f"The caption file of {image!r} is a link leading outside {folder}.",
            hint="Remove that symlink, then call set_caption again.",
            field="image",
        )
    old = read_caption_text(path, ext)
    if old == text:
        return SetCaptionResult(caption_file=str(target), old_caption=old, backup_file=None, changed=False)
    remove_stale_temps([target])
    backup = backup_caption(folder, target, _fresh_backup_root(folder, target))
    write_text_atomic(target, text)
    return SetCaptionResult(
        caption_file=str(target), old_caption=old, backup_file=str(backup) if backup else None, changed=True
    )


def _fresh_backup_root(folder: Path, target: Path) -> Path:
    """captioning's backup folder for now; a suffixed one if this second's already holds a copy of `target`."""
    root = candidate = backup_folder(folder)
    rel, n = target.relative_to(folder), 1
    while (candidate / rel).exists():
        n += 1
        candidate = root.with_name(f"{root.name}-{n}")
    return candidate
