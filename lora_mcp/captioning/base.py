"""The captioner interface every backend implements, and the image handling they share.

A backend captions a batch: it returns one entry per image, a caption or an `ItemFailed` for an image it could not
caption (the run goes on). It raises `CaptionBackendError` when nothing more can work (model missing, server down);
any other exception fails the batch, and the runner retries its images one at a time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageOps

from lora_mcp.errors import OperationFailed

MAX_REMOTE_SIDE = 1536
"""Images sent over HTTP are scaled down to this longest side (VLM servers resize far below it anyway)."""


@dataclass(frozen=True)
class ItemFailed:
    """One image the backend could not caption, and why."""

    reason: str


CaptionResult = str | ItemFailed


class CaptionBackendError(OperationFailed):
    """The backend cannot caption anything (model not found, server unreachable, missing package)."""

    def __init__(self, message: str, *, code: str, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class Captioner(Protocol):
    """A captioning backend, loaded once per job."""

    batch_size: int
    """How many images `caption` takes at once."""

    def caption(self, images: Sequence[Image.Image], prompt: str) -> list[CaptionResult]:
        """One caption (or ItemFailed) per image, in order."""
        ...

    def close(self) -> None:
        """Release the model, GPU memory, connections."""
        ...


def load_image(path: Path) -> Image.Image:
    """Decode an image fully (EXIF rotation applied, transparency flattened onto white) as RGB."""
    with Image.open(path) as raw:
        raw.load()
        img = ImageOps.exif_transpose(raw)
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            return canvas
        return img.convert("RGB")


def encode_jpeg(image: Image.Image, max_side: int = MAX_REMOTE_SIDE) -> bytes:
    """JPEG bytes of `image`, scaled down so its longest side is at most `max_side`."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


class TemplateCaptioner:
    """Backend `template`: no model, the same caption for every image (the trigger word is placed later)."""

    def __init__(self, caption: str, batch_size: int = 16) -> None:
        self.text = caption
        self.batch_size = batch_size

    def caption(self, images: Sequence[Image.Image], prompt: str) -> list[CaptionResult]:
        return [self.text for _ in images]

    def close(self) -> None:
        return None
