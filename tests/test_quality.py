"""Picture-quality warnings (too_dark, too_light, low_information, odd_aspect, blurry) on planted-defect folders.

The folders are built at test time from the public-domain photos in ../shared/data/images, scaled to 768 px on the
longer side at most, with the same kinds of variant that benchmarks/quality_thresholds.py measures.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from lora_mcp.dataset import inspect as inspect_module
from lora_mcp.dataset import problems as P
from lora_mcp.dataset.buckets import bucket_for, crop_loss
from lora_mcp.dataset.factcache import RACY_NS, FactsCache
from lora_mcp.dataset.facts import ImageFacts, ImageStats
from lora_mcp.dataset.images import decode_image
from lora_mcp.dataset.inspect import inspect_dataset
from lora_mcp.dataset.models import DatasetReport
from lora_mcp.dataset.problems import ProblemCode, Severity

QUALITY = {
    ProblemCode.TOO_DARK,
    ProblemCode.TOO_LIGHT,
    ProblemCode.LOW_INFORMATION,
    ProblemCode.ODD_ASPECT,
    ProblemCode.BLURRY,
}
CLEAN = ("astronaut", "camera", "chelsea", "coffee", "motorcycle_left", "rocket")


@pytest.fixture
def photos(shared_images: Path) -> dict[str, Image.Image]:
    """The shared photos as RGB, at most 768 px on the longer side."""
    return _load(shared_images)


@functools.cache
def _load(folder: Path) -> dict[str, Image.Image]:
    out = {}
    for path in sorted(folder.iterdir()):
        im = Image.open(path).convert("RGB")
        im.thumbnail((768, 768), Image.Resampling.LANCZOS)
        out[path.stem] = im
    return out


def _write(folder: Path, pictures: dict[str, Image.Image]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    past = time.time_ns() - 2 * RACY_NS  # old enough for the facts cache to store them
    for name, im in pictures.items():
        path = folder / f"{name}.png"
        im.save(path, compress_level=1)
        (folder / f"{name}.txt").write_text(f"a photo of {name}", encoding="utf-8")
        os.utime(path, ns=(past, past))


def _point(im: Image.Image, curve: Callable[[int], float]) -> Image.Image:
    return im.point(lambda v: min(255, max(0, round(curve(v)))))


def _blur(im: Image.Image, radius: float) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(radius))


def _flat(im: Image.Image) -> Image.Image:
    mean = tuple(int(c) for c in np.asarray(im, dtype=np.float64).mean(axis=(0, 1)))
    return Image.new("RGB", im.size, mean)


def _upscale(im: Image.Image, factor: int) -> Image.Image:
    return im.resize((im.width * factor, im.height * factor), Image.Resampling.BICUBIC)


def _planted(photos: dict[str, Image.Image]) -> dict[str, Image.Image]:
    coffee = photos["coffee"]
    return {
        **{f"clean_{name}": photos[name] for name in CLEAN},
        "upscaled_camera": _upscale(photos["camera"], 2),
        "upscaled_astronaut": _upscale(photos["astronaut"], 3),
        "dark": _point(photos["astronaut"], lambda v: v * 0.2),
        "light": _point(photos["camera"], lambda v: 170 + 0.3 * v),
        "flat": _flat(photos["chelsea"]),
        "wide": coffee.crop((0, 0, coffee.width, coffee.width // 4)),
        "blur_r2": _blur(photos["coffee"], 2),
        "blur_r3": _blur(photos["motorcycle_left"], 3),
        "blur_r6": _blur(photos["rocket"], 6),
        "upscaled_blur": _upscale(_blur(photos["chelsea"], 3), 2),
    }


def _codes(report: DatasetReport) -> dict[str, set[ProblemCode]]:
    """file -> the quality codes that name it."""
    named: dict[str, set[ProblemCode]] = {}
    for problem in report.problems:
        if problem.code in QUALITY:
            for file in problem.files:
                named.setdefault(file, set()).add(problem.code)
    return named


def _problem(report: DatasetReport, code: ProblemCode) -> P.Problem:
    (found,) = [p for p in report.problems if p.code is code]
    return found


def _stats(path: Path) -> ImageStats:
    facts = decode_image(path)
    assert isinstance(facts, ImageFacts) and facts.stats is not None
    return facts.stats


@pytest.fixture
def planted(photos: dict[str, Image.Image], tmp_path: Path) -> Path:
    """One folder: clean and upscaled-clean photos beside each planted defect, every image captioned."""
    folder = tmp_path / "planted"
    _write(folder, _planted(photos))
    return folder


def test_each_defect_is_named_with_its_code(planted: Path) -> None:
    report = inspect_dataset(planted, resolutions=[512, 1024])
    assert _codes(report) == {
        "dark.png": {ProblemCode.TOO_DARK},
        "light.png": {ProblemCode.TOO_LIGHT},
        "flat.png": {ProblemCode.LOW_INFORMATION},
        "wide.png": {ProblemCode.ODD_ASPECT},
        "blur_r2.png": {ProblemCode.BLURRY},
        "blur_r3.png": {ProblemCode.BLURRY},
        "blur_r6.png": {ProblemCode.BLURRY},
        "upscaled_blur.png": {ProblemCode.BLURRY},
    }
    for code in QUALITY:
        assert _problem(report, code).severity is Severity.WARNING
        assert _problem(report, code).fix
    assert report.ready_for_training, [p.message for p in report.problems if p.severity is Severity.ERROR]


def test_messages_carry_the_measured_values(planted: Path) -> None:
    report = inspect_dataset(planted, resolutions=[512, 1024])
    dark, light, flat = (_stats(planted / f"{n}.png") for n in ("dark", "light", "flat"))
    assert (
        f"dark.png (99% of pixels below luminance {dark.luma_p99}/255)"
        in _problem(report, ProblemCode.TOO_DARK).message
    )
    assert (
        f"light.png (99% of pixels above luminance {light.luma_p01}/255)"
        in _problem(report, ProblemCode.TOO_LIGHT).message
    )
    assert f"flat.png (luminance std {flat.luma_std:.1f})" in _problem(report, ProblemCode.LOW_INFORMATION).message
    blurry = _problem(report, ProblemCode.BLURRY).message
    for name in ("blur_r2", "blur_r3", "blur_r6", "upscaled_blur"):
        assert f"{name}.png (sharpness {_stats(planted / f'{name}.png').sharpness:.2f})" in blurry
    wide = Image.open(planted / "wide.png").size
    odd = _problem(report, ProblemCode.ODD_ASPECT).message
    assert f"wide.png ({wide[0] / wide[1]:.2f}:1; " in odd
    for resolution in (512, 1024):
        bucket = bucket_for(*wide, resolution)
        assert f"bucket {bucket[0]}x{bucket[1]} at {resolution} crops {crop_loss(*wide, bucket):.1%}" in odd


def test_a_folder_of_clean_and_upscaled_photos_has_no_quality_warning(
    photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    pictures = {name: photos[name] for name in CLEAN}
    pictures |= {f"{name}_x2": _upscale(photos[name], 2) for name in ("camera", "chelsea", "rocket")}
    _write(tmp_path / "clean", pictures)
    report = inspect_dataset(tmp_path / "clean", resolutions=[512, 1024])
    assert _codes(report) == {}


def test_a_folder_of_uniformly_soft_pictures_is_not_all_blurry(photos: dict[str, Image.Image], tmp_path: Path) -> None:
    for radius in (2, 4):
        folder = tmp_path / f"soft_r{radius}"
        _write(folder, {name: _blur(photos[name], radius) for name in CLEAN})
        report = inspect_dataset(folder, resolutions=[512])
        blurry = [p.files for p in report.problems if p.code is ProblemCode.BLURRY]
        assert not blurry or len(blurry[0]) < len(CLEAN) // 2, blurry


def test_the_cached_report_equals_the_uncached_one(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FactsCache(tmp_path / "cache")
    uncached = inspect_dataset(planted, resolutions=[512, 1024])
    first = inspect_dataset(planted, resolutions=[512, 1024], facts_cache=cache)

    def no_decode(path: Path) -> None:
        raise AssertionError(f"decoded {path} again: it should come from the cache")

    monkeypatch.setattr(inspect_module, "decode_image", no_decode)
    second = inspect_dataset(planted, resolutions=[512, 1024], facts_cache=cache, workers=1)  # all from the cache
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    assert first.model_dump() == uncached.model_dump() == second.model_dump()


def test_quality_codes_thresholds() -> None:
    sharp = ImageStats(luma_mean=120, luma_std=60, luma_p01=5, luma_p99=240, sharpness=2.5)
    assert P.quality_codes(sharp, folder_sharpness=2.5) == []
    soft = ImageStats(luma_mean=120, luma_std=60, luma_p01=5, luma_p99=240, sharpness=1.0)
    assert P.quality_codes(soft, folder_sharpness=2.5) == [ProblemCode.BLURRY]
    assert P.quality_codes(soft, folder_sharpness=1.1) == []  # as soft as its folder
    softer_but_above_floor = ImageStats(luma_mean=120, luma_std=60, luma_p01=5, luma_p99=240, sharpness=1.3)
    assert P.quality_codes(softer_but_above_floor, folder_sharpness=3.4) == []
    flat = ImageStats(luma_mean=10, luma_std=0.5, luma_p01=9, luma_p99=11, sharpness=0.0)
    assert P.quality_codes(flat, folder_sharpness=2.5) == [ProblemCode.LOW_INFORMATION]
