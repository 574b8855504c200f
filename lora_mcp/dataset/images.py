"""Decode one image completely and keep only small facts about it.

Every pixel is decoded (`Image.load()`), because a header can be intact while the data behind it is truncated.
The image is closed before returning; what survives is a handful of numbers, a sha256, a 9x9 RGB thumbnail
(243 bytes) for near-duplicate detection and a few quality statistics (`quality_stats`, from a grey copy at a fixed
working scale of WORK_SIDE² pixels), so memory stays flat however many images a folder holds.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageFile, UnidentifiedImageError

from lora_mcp.dataset.facts import THUMB_SIDE, DecodeFailure, ImageFacts, ImageStats
from lora_mcp.dataset.problems import HIGH_BIT_MODES

DECODER_VERSION = 2
"""Bump when decode_image returns something else for the same bytes: cached facts (factcache) depend on it."""

WORK_SIDE = 256
"""Quality statistics are measured on a grey copy scaled to WORK_SIDE² pixels (never enlarged): a fixed scale, so an
upscaled picture measures like its original and sharpness compares across sizes (docs/dataset-quality.md)."""

MEASURE_QUALITY = True
"""Measure the quality statistics (too_dark, too_light, low_information, blurry). Only benchmarks/bench_inspect.py turns
it off, to time the checks; off, decode_image leaves `stats` None, the checks give no warning, and decoder_signature
differs, so facts cached without statistics are never reused by a normal inspection."""

EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transpose that shows the picture upright (as PIL.ImageOps.exif_transpose does)."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def pixel_limit() -> int | None:
    """Pillow's decompression-bomb limit as configured now (None when someone disabled it)."""
    return Image.MAX_IMAGE_PIXELS


def decoder_signature() -> str:
    """What decode_image's result depends on besides the file's bytes; facts cached under another are not reused."""
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    quality = "" if MEASURE_QUALITY else ", no quality statistics"
    return (
        f"decode_image {DECODER_VERSION}, Pillow {PIL.__version__}, limit {pixel_limit()}, truncated {truncated}"
        + quality
    )


def decode_image(path: Path) -> ImageFacts | DecodeFailure:
    """Fully decode `path` and return its facts, or why it failed; never raises for a bad file."""
    try:
        if path.stat().st_size == 0:
            return DecodeFailure("empty", "0 bytes")
        sha = file_sha256(path)
    except OSError as exc:
        return DecodeFailure("corrupt", f"cannot be read: {exc.strerror or exc}")
    try:
        # Over twice the limit, Image.open raises DecompressionBombError. Between the limit and twice it, it only
        # warns: the warning is silenced here and the explicit size check below refuses the image before load().
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (N pixels) exceeds limit of ..."
        return DecodeFailure("too_large", f"{int(pixels[1]):,} pixels" if pixels else _short(exc))
    except UnidentifiedImageError:
        return DecodeFailure("corrupt", "not an image Pillow recognises")
    # Pillow's plugins raise many exception types on malformed data (OSError, SyntaxError, struct.error, ...);
    # any of them means the file cannot be trained on, and the report says so instead of crashing.
    except Exception as exc:
        return DecodeFailure("corrupt", _short(exc))
    with im:
        limit = pixel_limit()
        if limit is not None and im.width * im.height > limit:
            return DecodeFailure("too_large", f"{im.width}x{im.height} = {im.width * im.height:,} pixels")
        try:
            orientation = _orientation(im)
            im.load()
            thumb = thumbnail(im, orientation)
            stats = quality_stats(im) if MEASURE_QUALITY else None
        except Exception as exc:  # see above
            return DecodeFailure("corrupt", _short(exc))
        width, height = (im.height, im.width) if orientation in (5, 6, 7, 8) else (im.width, im.height)
        return ImageFacts(width, height, im.format or "unknown", im.mode, orientation, sha, thumb, stats)


def _orientation(im: Image.Image) -> int | None:
    value = im.getexif().get(EXIF_ORIENTATION)
    return value if isinstance(value, int) else None


def thumbnail(im: Image.Image, orientation: int | None = None) -> bytes:
    """A THUMB_SIDE-square RGB thumbnail (box-averaged, EXIF-rotated), whatever the mode; 16/32-bit rescaled."""
    if im.mode in ("P", "PA", "1"):
        im = im.convert("L")  # palette indices and bits are not grey levels; 1 byte per pixel, cheap
    small = im.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    if orientation in _TRANSPOSE:
        small = small.transpose(_TRANSPOSE[orientation])
    if small.mode not in HIGH_BIT_MODES:
        return small.convert("RGB").tobytes()
    values = np.asarray(small.convert("F"), dtype=np.float64)
    if small.mode.startswith("I;16"):
        values = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2).tobytes()


def quality_stats(im: Image.Image) -> ImageStats:
    """Luminance statistics and Laplacian sharpness of a loaded image, at the WORK_SIDE² working scale.

    The EXIF rotation is not applied: none of these statistics changes under a quarter turn or a flip.
    """
    grey = _working_grey(im)
    counts = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    mean = float(counts @ levels) / grey.size
    std = math.sqrt(max(0.0, float(counts @ (levels - mean) ** 2) / grey.size))
    cumulative = np.cumsum(counts) / grey.size
    low, high = (int(np.searchsorted(cumulative, q)) for q in (0.01, 0.99))
    sharpness = 0.0
    if min(grey.shape) >= 3:
        # Energy of the second derivative over energy of the first: independent of exposure and contrast (both
        # scale alike) and of how much of the picture is edges; blur removes the high frequencies it weighs.
        g = grey.astype(np.float32)
        laplacian = (4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]).ravel()
        dy, dx = np.diff(g, axis=0).ravel(), np.diff(g, axis=1).ravel()
        gradient = float(dy @ dy) / dy.size + float(dx @ dx) / dx.size
        sharpness = float(laplacian @ laplacian) / laplacian.size / gradient if gradient > 0 else 0.0
    return ImageStats(
        luma_mean=round(mean, 2), luma_std=round(std, 2), luma_p01=low, luma_p99=high, sharpness=round(sharpness, 4)
    )


def _working_grey(im: Image.Image) -> np.ndarray:
    """8-bit luminance box-scaled down to about WORK_SIDE² pixels (never enlarged); 16/32-bit modes rescaled."""
    scale = min(1.0, math.sqrt(WORK_SIDE * WORK_SIDE / (im.width * im.height)))
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    if im.mode not in HIGH_BIT_MODES:
        # palette, bilevel, CMYK, alpha: all to 8-bit luminance (ITU-R 601-2), then averaged down
        return np.asarray(im.convert("L").resize(size, Image.Resampling.BOX), dtype=np.uint8)
    values = np.asarray(im.convert("F").resize(size, Image.Resampling.BOX), dtype=np.float64)
    if im.mode.startswith("I;16"):
        values = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
