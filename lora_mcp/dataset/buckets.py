"""Aspect-bucket preview: which bucket AI-Toolkit puts each image in, per target resolution.

Behaviour of AI-Toolkit's bucketing (toolkit/buckets.py `get_bucket_for_image_size`, toolkit/dataloader_mixins.py
`setup_buckets`), re-implemented here:

- The resolution caps the pixel count at resolution²; a smaller image keeps its own pixel count (it is not
  enlarged to the target, it trains in a smaller bucket).
- Both sides are scaled to that pixel count, divided by the divisibility (16 for Z-Image: VAE factor 8 x patch 2)
  and rounded down or up; of the four roundings that stay within resolution², the one closest to the target pixel
  count wins (first of floor/floor, floor/ceil, ceil/floor, ceil/ceil on ties).
- The image is then scaled by the larger of bucket/width and bucket/height and centre-cropped. A factor above 1
  means AI-Toolkit enlarges the picture (usually by less than one rounding step).
Sizes are after the EXIF rotation, as AI-Toolkit applies it before bucketing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

BUCKET_DIVISIBILITY = 16
"""Z-Image's bucket divisibility in AI-Toolkit (extensions_built_in/diffusion_models/z_image: 8 * 2)."""


class BucketCount(BaseModel):
    """How many images land in one bucket."""

    width: int = Field(description="Bucket width in pixels.")
    height: int = Field(description="Bucket height in pixels.")
    count: int = Field(description="Images in this bucket.")


class ResolutionBuckets(BaseModel):
    """The bucket preview for one target resolution."""

    resolution: int = Field(description="Target side length; caps an image at resolution² pixels.")
    buckets: list[BucketCount] = Field(description="Buckets with their image counts, most populated first.")
    upscaled_files: list[str] = Field(description="Images AI-Toolkit enlarges to fill their bucket.")
    max_upscale: float = Field(description="Largest enlargement factor among the images (1.0 = none).")


def bucket_for(width: int, height: int, resolution: int, divisibility: int = BUCKET_DIVISIBILITY) -> tuple[int, int]:
    """The (width, height) bucket AI-Toolkit assigns to an image of this size at this resolution."""
    area = width * height
    cap = resolution * resolution
    target = min(area, cap)
    scale = math.sqrt(target / area)
    w_units, h_units = width * scale / divisibility, height * scale / divisibility
    roundings = [
        (math.floor(w_units), math.floor(h_units)),
        (math.floor(w_units), math.ceil(h_units)),
        (math.ceil(w_units), math.floor(h_units)),
        (math.ceil(w_units), math.ceil(h_units)),
    ]
    fitting = [(w * divisibility, h * divisibility) for w, h in roundings if w > 0 and h > 0]
    fitting = [(w, h) for w, h in fitting if w * h <= cap]
    if not fitting:
        fitting = [
            (
                max(divisibility, math.floor(w_units) * divisibility),
                max(divisibility, math.floor(h_units) * divisibility),
            )
        ]
    return min(fitting, key=lambda wh: abs(wh[0] * wh[1] - target))


def upscale_factor(width: int, height: int, bucket: tuple[int, int]) -> float:
    """How much AI-Toolkit scales the image before cropping it to `bucket` (above 1 = enlarged)."""
    return max(bucket[0] / width, bucket[1] / height)


def crop_loss(width: int, height: int, bucket: tuple[int, int]) -> float:
    """Share of the picture (0-1) that AI-Toolkit's centre crop cuts away after scaling it to cover `bucket`."""
    factor = upscale_factor(width, height, bucket)
    return max(0.0, 1.0 - (bucket[0] * bucket[1]) / (width * factor * height * factor))


def preview_buckets(
    sizes: Sequence[tuple[str, int, int]],
    resolutions: Sequence[int],
    divisibility: int = BUCKET_DIVISIBILITY,
) -> list[ResolutionBuckets]:
    """Bucket counts per resolution for `(file, width, height)` triples."""
    previews = []
    for resolution in resolutions:
        counts: Counter[tuple[int, int]] = Counter()
        upscaled: list[str] = []
        max_up = 1.0
        for name, width, height in sizes:
            bucket = bucket_for(width, height, resolution, divisibility)
            counts[bucket] += 1
            factor = upscale_factor(width, height, bucket)
            if factor > 1.0:
                upscaled.append(name)
                max_up = max(max_up, factor)
        buckets = [BucketCount(width=w, height=h, count=n) for (w, h), n in counts.most_common()]
        previews.append(
            ResolutionBuckets(
                resolution=resolution, buckets=buckets, upscaled_files=upscaled, max_upscale=round(max_up, 4)
            )
        )
    return previews
