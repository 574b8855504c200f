"""Crafted dataset files: distinct pictures and the hostile cases inspect_dataset must report."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

TRIGGER = "ohwx"


def picture(seed: int, size: tuple[int, int] = (640, 512)) -> Image.Image:
    """An RGB picture of random shapes; different seeds give pictures no perceptual hash confuses."""
    rng = random.Random(seed)
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(8):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        box = (
            x0,
            y0,
            x0 + rng.randrange(size[0] // 16 + 1, size[0] + 1),
            y0 + rng.randrange(size[1] // 16 + 1, size[1] + 1),
        )
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return im


def save(im: Image.Image, path: Path, **params: Any) -> Path:
    """Save and return the path, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **params)
    return path


def caption(path: Path, text: str | bytes = f"a photo of {TRIGGER} standing outdoors") -> Path:
    """Write a caption file (bytes as given, text as UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def truncated_jpeg(path: Path, seed: int) -> Path:
    """A JPEG cut in half: the header is fine, the pixels are not."""
    buffer = io.BytesIO()
    picture(seed).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def rotated_jpeg(path: Path, seed: int) -> Path:
    """An 800x600 JPEG whose EXIF orientation 6 says: rotate 90° clockwise to show it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(picture(seed, (800, 600)), path, exif=exif, quality=90)


def sixteen_bit_png(path: Path, seed: int) -> Path:
    """A 16-bit greyscale PNG (mode I;16)."""
    rng = np.random.default_rng(seed)
    values = np.linspace(0, 65535, 640 * 512).reshape(512, 640) + rng.integers(0, 2000, (512, 640))
    return save(Image.fromarray(np.clip(values, 0, 65535).astype(np.uint16)), path)


def bilevel_bomb_png(path: Path) -> Path:
    """A real 13400x13400 1-bit PNG (22 KB), over twice Pillow's pixel limit: Image.open refuses it."""
    side = 13400
    assert side * side > 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return save(Image.new("1", (side, side)), path)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height, followed by a scrap of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (hidden ones too) -> sha256 of its bytes, or 'dir'."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            result[os.path.relpath(os.path.join(dirpath, name), folder)] = "dir"
        for name in filenames:
            full = os.path.join(dirpath, name)
            result[os.path.relpath(full, folder)] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    return result
