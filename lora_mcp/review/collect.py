"""Read every image's caption of a dataset folder, as AI-Toolkit would pair them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lora_mcp.dataset.captions import CaptionStatus, caption_path
from lora_mcp.dataset.scan import scan_folder
from lora_mcp.review.models import CaptionItem


def read_item(folder: Path, image: str, caption_ext: str) -> CaptionItem:
    """The caption of one image (relative path), with the sha256 of its bytes."""
    path = caption_path(folder / image, caption_ext)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return CaptionItem(image=image, caption=None, sha256=None, status=CaptionStatus.MISSING.value)
    except OSError:
        return CaptionItem(image=image, caption=None, sha256=None, status=CaptionStatus.NOT_UTF8.value)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return CaptionItem(image=image, caption=None, sha256=digest, status=CaptionStatus.NOT_UTF8.value)
    status = CaptionStatus.OK if text.strip() else CaptionStatus.EMPTY
    return CaptionItem(image=image, caption=text, sha256=digest, status=status.value)


def collect_captions(folder: Path, caption_ext: str = "txt") -> list[CaptionItem]:
    """Every image AI-Toolkit would train on, sorted, with its caption."""
    return [read_item(folder, image, caption_ext) for image in scan_folder(folder, caption_ext).images]
