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

from lora_mcp.dataset.facts import THUMB_SIDE, ImageFacts

DHASH_MAX_BITS = 8
THUMB_MAX_MEAN = 6.0
ASPECT_TOLERANCE = 0.03
_GREY = np.array([0.299, 0.587, 0.114])


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
    clusters: list[list[str]] = []
    if shas:
        bits = np.packbits(np.stack([dhash_bits(first[sha].thumb) for sha in shas]), axis=1)
        thumbs = np.stack([np.frombuffer(first[sha].thumb, dtype=np.uint8) for sha in shas]).astype(np.int16)
        aspects = np.log([first[sha].width / first[sha].height for sha in shas])
        reps: list[int] = []  # each cluster's first picture: members must match it, so matches never chain
        for i in range(len(shas)):
            hits = np.flatnonzero(
                (np.unpackbits(bits[reps] ^ bits[i], axis=1).sum(axis=1) <= DHASH_MAX_BITS)
                & (np.abs(thumbs[reps] - thumbs[i]).mean(axis=1) <= THUMB_MAX_MEAN)
                & (np.abs(aspects[reps] - aspects[i]) <= ASPECT_TOLERANCE)
            )
            if hits.size:
                clusters[int(hits[0])].append(shas[i])
            else:
                reps.append(i)
                clusters.append([shas[i]])
    groups = [
        DuplicateGroup(tuple(sorted(f for sha in cluster for f in by_sha[sha])), identical_bytes=len(cluster) == 1)
        for cluster in clusters
    ]
    return sorted((g for g in groups if len(g.files) > 1), key=lambda g: g.files)
