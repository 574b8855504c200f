"""Duplicate detection: byte-identical files (sha256) and near-identical pictures (perceptual hash).

The perceptual test uses the 9x9 RGB thumbnail each image leaves behind. Two images are near-identical when
- their difference hashes (128 bits: the sign of every horizontal and vertical grey step) differ in at most
  DHASH_MAX_BITS bits,
- their thumbnails differ by at most THUMB_MAX_MEAN levels per channel on average, and
- their aspect ratios differ by at most ASPECT_TOLERANCE (a resized copy keeps its shape).
The hash alone would match any two flat or similarly shaded pictures of different colours; the thumbnail alone
would miss a re-encode with a slight tone shift. A resized or re-encoded copy passes all three (typically 0-3 bits,
0-1 levels); different photos do not. Files are taken in name order and each joins the first group whose FIRST
picture it matches, so a run of gradually changing pictures does not chain into one giant group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lora_mcp.dataset.facts import THUMB_BYTES, THUMB_SIDE, ImageFacts

DHASH_MAX_BITS = 8
THUMB_MAX_MEAN = 6.0
ASPECT_TOLERANCE = 0.03
_GREY = np.array([0.299, 0.587, 0.114])
_BIT_COUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int16)
"""Set bits of each byte value: a Hamming distance of packed hashes without unpacking them."""


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are copies of one another; `identical_bytes` when every file has the same sha256."""

    files: tuple[str, ...]
    identical_bytes: bool


def dhash_bits(thumb: bytes) -> np.ndarray:
    """The 128-bit difference hash of a THUMB_SIDE-square RGB thumbnail, as 128 booleans."""
    rgb = np.frombuffer(thumb, dtype=np.uint8).reshape(THUMB_SIDE, THUMB_SIDE, 3)
    grid = np.rint(rgb @ _GREY)
    rows = grid[:-1, 1:] > grid[:-1, :-1]
    cols = grid[1:, :-1] > grid[:-1, :-1]
    return np.concatenate([rows.ravel(), cols.ravel()])


def find_duplicates(items: Sequence[tuple[str, ImageFacts]]) -> list[DuplicateGroup]:
    """Group `(file, facts)` pairs into duplicate groups of two or more, sorted by first file."""
    by_sha: dict[str, list[str]] = {}
    first: dict[str, ImageFacts] = {}
    for name, facts in sorted(items, key=lambda item: item[0]):
        by_sha.setdefault(facts.sha256, []).append(name)
        first.setdefault(facts.sha256, facts)
    shas = list(by_sha)
    clusters = _clusters([first[sha] for sha in shas])
    groups = [
        DuplicateGroup(tuple(sorted(f for i in cluster for f in by_sha[shas[i]])), identical_bytes=len(cluster) == 1)
        for cluster in clusters
    ]
    return sorted((g for g in groups if len(g.files) > 1), key=lambda g: g.files)


def _clusters(pictures: Sequence[ImageFacts]) -> list[list[int]]:
    """Indices of `pictures` grouped: each joins the first cluster whose first picture it matches.

    The cluster heads' hashes, thumbnails and aspects sit in arrays filled as heads appear, so each picture is
    compared with views of them (no copy per picture); the cheap tests (aspect, hash bits) pick the candidates
    whose thumbnails are compared at all. Serial work after the decode: it bounds the speed-up of more cores.
    """
    count = len(pictures)
    bits = np.packbits(np.stack([dhash_bits(p.thumb) for p in pictures]), axis=1) if count else np.empty((0, 16))
    aspects = np.log([p.width / p.height for p in pictures])
    head_bits = np.empty((count, bits.shape[1]), dtype=np.uint8)
    head_thumbs = np.empty((count, THUMB_BYTES), dtype=np.int16)
    head_aspects = np.empty(count)
    clusters: list[list[int]] = []
    for i, picture in enumerate(pictures):
        heads = len(clusters)
        thumb = np.frombuffer(picture.thumb, dtype=np.uint8).astype(np.int16)
        near = np.flatnonzero(
            (np.abs(head_aspects[:heads] - aspects[i]) <= ASPECT_TOLERANCE)
            & (_BIT_COUNT[head_bits[:heads] ^ bits[i]].sum(axis=1) <= DHASH_MAX_BITS)
        )
        hits = near[np.abs(head_thumbs[near] - thumb).mean(axis=1) <= THUMB_MAX_MEAN] if near.size else near
        if hits.size:
            clusters[int(hits[0])].append(i)
            continue
        head_bits[heads], head_thumbs[heads], head_aspects[heads] = bits[i], thumb, aspects[i]
        clusters.append([i])
    return clusters
