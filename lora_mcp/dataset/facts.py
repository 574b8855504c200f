"""What decoding one image leaves behind, apart from the decoder itself.

Kept free of Pillow and numpy so that the facts cache (`factcache`), which start-up code may import, stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

THUMB_SIDE = 9
THUMB_BYTES = THUMB_SIDE * THUMB_SIDE * 3


@dataclass(frozen=True)
class ImageFacts:
    """What a fully decoded image looks like. width/height are as trained: after the EXIF rotation."""

    width: int
    height: int
    format: str
    mode: str
    exif_orientation: int | None
    sha256: str
    thumb: bytes
    """THUMB_SIDE x THUMB_SIDE RGB pixels, row-major (THUMB_BYTES = 243 bytes)."""


@dataclass(frozen=True)
class DecodeFailure:
    """Why an image could not be decoded."""

    kind: Literal["empty", "too_large", "corrupt"]
    detail: str
