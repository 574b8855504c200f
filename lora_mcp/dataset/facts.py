"""What decoding one image leaves behind, apart from the decoder itself.

Kept free of Pillow and numpy so that the facts cache (`factcache`), which start-up code may import, stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

THUMB_SIDE = 9
THUMB_BYTES = THUMB_SIDE * THUMB_SIDE * 3


@dataclass(frozen=True)
class ImageStats:
    """Picture-quality statistics of the grey working image (see images.quality_stats); docs/dataset-quality.md."""

    luma_mean: float
    """Mean luminance, 0-255."""
    luma_std: float
    """Standard deviation of luminance: near 0 for a flat picture."""
    luma_p01: int
    """1st percentile of luminance, 0-255: a light picture has nothing dark in it."""
    luma_p99: int
    """99th percentile of luminance, 0-255: a dark picture has nothing bright in it."""
    sharpness: float
    """Mean squared 4-neighbour Laplacian over mean squared gradient, at the fixed working scale; lower is softer
    (sharp photos measure about 2-3.5, independent of exposure and contrast; 0 for a flat picture)."""


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
    stats: ImageStats | None = None
    """Quality statistics; decode_image fills them in (unless a benchmark turned images.MEASURE_QUALITY off)."""


@dataclass(frozen=True)
class DecodeFailure:
    """Why an image could not be decoded."""

    kind: Literal["empty", "too_large", "corrupt"]
    detail: str
