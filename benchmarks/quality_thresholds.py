"""Measure the quality statistics (images.quality_stats) on real photos under planted defects; justify thresholds.

Each public-domain photo in ../shared/data/images (400-768 px; scaled down to 768 px if larger) is varied: crops, tints,
exposure changes, gaussian blur at several radii, upscaling, flat fills. For every variant the script prints the
statistics that `inspect_dataset` judges, and at the end which variants the chosen thresholds (problems.py) flag,
so a change of threshold can be checked against the same numbers. Results: docs/dataset-quality.md.

    .venv/bin/python benchmarks/quality_thresholds.py [--images DIR] [--timing]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from lora_mcp.dataset import images
from lora_mcp.dataset import problems as P
from lora_mcp.dataset.facts import ImageStats
from lora_mcp.dataset.images import quality_stats

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
SIDE = 768


def _exposure(factor: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.point(lambda v: min(255, round(v * factor)))


def _gamma(g: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.point(lambda v: round(255 * (v / 255) ** g))


def _lift(base: float, gain: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.point(lambda v: min(255, round(base + gain * v)))


def _blur(radius: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.filter(ImageFilter.GaussianBlur(radius))


def _upscale(factor: float, blur: float = 0) -> Callable[[Image.Image], Image.Image]:
    def run(im: Image.Image) -> Image.Image:
        big = im.resize((round(im.width * factor), round(im.height * factor)), Image.Resampling.BICUBIC)
        return big.filter(ImageFilter.GaussianBlur(blur * factor)) if blur else big

    return run


def _tint(rgb: tuple[float, float, float]) -> Callable[[Image.Image], Image.Image]:
    return lambda im: Image.merge(
        "RGB", [c.point(lambda v, f=f: min(255, round(v * f))) for c, f in zip(im.split(), rgb, strict=True)]
    )


def _crop(frac: float) -> Callable[[Image.Image], Image.Image]:
    def run(im: Image.Image) -> Image.Image:
        w, h = round(im.width * frac), round(im.height * frac)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        return im.crop((left, top, left + w, top + h))

    return run


def _strip(ratio: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.crop((0, 0, im.width, max(1, round(im.width / ratio))))


def _flat(noise: float) -> Callable[[Image.Image], Image.Image]:
    def run(im: Image.Image) -> Image.Image:
        mean = np.asarray(im, dtype=np.float32).mean(axis=(0, 1))
        rng = np.random.default_rng(0)
        pixels = (
            mean + rng.normal(0, noise, (im.height, im.width, 1))
            if noise
            else np.broadcast_to(mean, (im.height, im.width, 3))
        )
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8).repeat(3 if noise else 1, axis=2)[:, :, :3])

    return run


def _gradient(im: Image.Image) -> Image.Image:
    ramp = np.linspace(60, 200, im.width, dtype=np.float32)
    return Image.fromarray(np.broadcast_to(ramp, (im.height, im.width)).astype(np.uint8)).convert("RGB")


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "original": lambda im: im,
    "crop 50%": _crop(0.5),
    "tint warm": _tint((1.2, 1.0, 0.7)),
    "tint blue": _tint((0.6, 0.8, 1.3)),
    "exposure x0.5": _exposure(0.5),
    "exposure x0.25": _exposure(0.25),
    "exposure x0.15": _exposure(0.15),
    "exposure x1.5": _exposure(1.5),
    "exposure x2": _exposure(2.0),
    "exposure x3": _exposure(3.0),
    "gamma 0.3 (light)": _gamma(0.3),
    "gamma 3 (dark)": _gamma(3.0),
    "washed out 100+0.6v": _lift(100, 0.6),
    "washed out 150+0.4v": _lift(150, 0.4),
    "washed out 190+0.25v": _lift(190, 0.25),
    "low contrast 100+0.3v": _lift(100, 0.3),
    "blur r1": _blur(1),
    "blur r2": _blur(2),
    "blur r3": _blur(3),
    "blur r5": _blur(5),
    "blur r8": _blur(8),
    "upscale x2": _upscale(2),
    "upscale x4": _upscale(4),
    "upscale x2 + blur r3": _upscale(2, 3),
    "strip 4:1": _strip(4),
    "flat fill": _flat(0),
    "flat + noise 4": _flat(4),
    "gradient": _gradient,
}


def load(folder: Path) -> dict[str, Image.Image]:
    """The shared photos as RGB, at most 768 px on the longer side (never enlarged)."""
    out = {}
    for path in sorted(folder.iterdir()):
        im = Image.open(path).convert("RGB")
        im.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        out[path.stem] = im
    return out


def measure(photos: dict[str, Image.Image]) -> dict[str, dict[str, ImageStats]]:
    """variant -> photo -> statistics."""
    return {name: {stem: quality_stats(make(im)) for stem, im in photos.items()} for name, make in VARIANTS.items()}


def report(table: dict[str, dict[str, ImageStats]]) -> None:
    """Print each variant's statistics (median over the photos, and the extremes that matter) and what is flagged."""
    originals = table["original"]
    median_sharp = statistics.median(s.sharpness for s in originals.values())
    print(f"median sharpness of the originals: {median_sharp:.3f}")
    print(
        f"{'variant':24} {'mean':>11} {'p99 min':>8} {'p01 max':>8} {'std min-max':>12} {'sharp med':>9} "
        f"{'sharp max':>9}  sharp/orig (min-max)  flagged"
    )
    for name, per_photo in table.items():
        stats = list(per_photo.values())
        ratios = [per_photo[k].sharpness / max(originals[k].sharpness, 1e-9) for k in per_photo]
        flagged = {k: _flags(s, median_sharp) for k, s in per_photo.items()}
        count = sum(bool(f) for f in flagged.values())
        kinds = sorted({c for f in flagged.values() for c in f})
        means = [s.luma_mean for s in stats]
        stds, sharps = [s.luma_std for s in stats], [s.sharpness for s in stats]
        print(
            f"{name:24} {min(means):5.0f}-{max(means):<5.0f} {min(s.luma_p99 for s in stats):8.0f} "
            f"{max(s.luma_p01 for s in stats):8.0f} {min(stds):5.1f}-{max(stds):<6.1f} "
            f"{statistics.median(sharps):9.3f} {max(sharps):9.3f}  {min(ratios):6.3f}-{max(ratios):<6.3f}      "
            f"{count}/{len(stats)} {','.join(kinds)}"
        )
    print("\nper photo (original): mean p01 p99 std sharpness")
    for stem, s in originals.items():
        print(f"  {stem:22} {s.luma_mean:6.1f} {s.luma_p01:4d} {s.luma_p99:4d} {s.luma_std:6.1f} {s.sharpness:9.3f}")


def _flags(s: ImageStats, folder_median: float) -> list[str]:
    """The codes P.quality_flags gives one picture in a folder of the original photos."""
    return [code.value for code in P.quality_codes(s, folder_median)]


def timing(photos: dict[str, Image.Image], rounds: int = 25) -> None:
    """ms per 768 px image on one core: quality_stats alone, and decode_image of JPEG files with vs without it."""
    photos = {stem: _to_side(im, SIDE) for stem, im in photos.items()}
    ims = list(photos.values())
    start = time.perf_counter()
    for _ in range(rounds):
        for im in ims:
            quality_stats(im)
    print(f"quality_stats alone: {(time.perf_counter() - start) / (rounds * len(ims)) * 1000:.2f} ms per image")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for stem, im in photos.items():
            paths.append(Path(tmp) / f"{stem}.jpg")
            im.save(paths[-1], quality=90)
        real = images.quality_stats
        best = {"with quality statistics": float("inf"), "without (stubbed out)": float("inf")}
        for _ in range(rounds):  # alternate, so that load from other processes hits both alike
            for label, stats in (("with quality statistics", real), ("without (stubbed out)", _no_stats)):
                images.quality_stats = stats  # decode_image looks the function up in its module at call time
                best[label] = min(best[label], _decode_all(paths))
        images.quality_stats = real
        for label, seconds in best.items():
            print(f"decode_image {label}: {seconds * 1000 / len(paths):.2f} ms per image (best of {rounds} rounds)")


def _to_side(im: Image.Image, side: int) -> Image.Image:
    scale = side / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)


def _no_stats(im: Image.Image) -> ImageStats:
    return ImageStats(luma_mean=0, luma_std=0, luma_p01=0, luma_p99=0, sharpness=0)


def _decode_all(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        images.decode_image(path)
    return time.perf_counter() - start


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=SHARED)
    parser.add_argument("--timing", action="store_true", help="also time decode_image with vs without the statistics")
    args = parser.parse_args()
    photos = load(args.images)
    report(measure(photos))
    if args.timing:
        timing(photos)


if __name__ == "__main__":
    main()
