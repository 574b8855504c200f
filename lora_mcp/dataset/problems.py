"""Dataset problems: the codes, their severities, and the message and fix each one carries.

Severity follows what AI-Toolkit does with the file (toolkit/data_loader.py, toolkit/dataloader_mixins.py):

- error: training would crash, silently skip the picture, or learn from damaged pixels. `corrupt_image`,
  `empty_file` and `too_large` (Pillow refuses or the loader errors), `unsupported_format` (the loader skips it),
  `name_collision` (one caption describes two pictures), `caption_not_utf8` (AI-Toolkit opens captions as UTF-8 and
  fails), `non_rgb` for 16/32-bit modes (converting them to RGB clips nearly every pixel to white),
  `too_few_images` when no picture is usable, and `caption_missing` when no usable picture has a caption file (the
  LoRA would learn from the default caption alone; like the original service, a caption per image is required).
- warning: training runs and the result may suffer. `caption_missing` for some pictures and `caption_empty`
  (AI-Toolkit falls back to its default caption and trigger word), `trigger_missing` (AI-Toolkit prepends the
  trigger word), `exif_rotated` (AI-Toolkit applies the EXIF rotation, other tools may not), other `non_rgb` modes
  (converted on load, alpha and CMYK colours suffer), `too_small`, `duplicate_image`, `orphan_caption`, and
  `too_few_images` below 5. The picture-quality warnings `too_dark`, `too_light`, `low_information`, `odd_aspect`
  and `blurry` (thresholds measured in benchmarks/quality_thresholds.py, documented in docs/dataset-quality.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field

from lora_mcp.dataset.facts import ImageStats

MAX_NAMED = 8
"""How many file names a message spells out before it says `and N more`."""

SWEET_SPOT = "9-12 varied images is the sweet spot for a character LoRA"
MIN_IMAGES = 5


class ProblemCode(StrEnum):
    """What is wrong with a file or with the folder as a whole."""

    CORRUPT_IMAGE = "corrupt_image"
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_LARGE = "too_large"
    TOO_SMALL = "too_small"
    EXIF_ROTATED = "exif_rotated"
    NON_RGB = "non_rgb"
    CAPTION_MISSING = "caption_missing"
    CAPTION_EMPTY = "caption_empty"
    CAPTION_NOT_UTF8 = "caption_not_utf8"
    ORPHAN_CAPTION = "orphan_caption"
    NAME_COLLISION = "name_collision"
    DUPLICATE_IMAGE = "duplicate_image"
    TRIGGER_MISSING = "trigger_missing"
    TOO_FEW_IMAGES = "too_few_images"
    TOO_DARK = "too_dark"
    TOO_LIGHT = "too_light"
    LOW_INFORMATION = "low_information"
    ODD_ASPECT = "odd_aspect"
    BLURRY = "blurry"


class Severity(StrEnum):
    """`error` blocks training (ready_for_training is false); `warning` is advice."""

    ERROR = "error"
    WARNING = "warning"


HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
"""Modes whose conversion to RGB clips values above 255: the picture trains as nearly white."""


class Problem(BaseModel):
    """One problem found in the folder, with the files it concerns and how to fix it."""

    code: ProblemCode = Field(description="Stable problem code, e.g. corrupt_image or caption_missing.")
    severity: Severity = Field(description="error blocks training; warning is advice.")
    files: list[str] = Field(description="Paths relative to the folder, every file this problem concerns.")
    message: str = Field(description="What is wrong, naming the files.")
    fix: str = Field(description="What to do about it.")


def name_files(files: Sequence[str]) -> str:
    """`a.png, b.png and 3 more` for a message."""
    shown = ", ".join(files[:MAX_NAMED])
    rest = len(files) - MAX_NAMED
    return f"{shown} and {rest} more" if rest > 0 else shown


def _verb(files: Sequence[str], one: str, many: str) -> str:
    return one if len(files) == 1 else many


def _problem(code: ProblemCode, severity: Severity, files: Sequence[str], message: str, fix: str) -> Problem:
    return Problem(code=code, severity=severity, files=sorted(files), message=message, fix=fix)


def corrupt_image(file: str, detail: str) -> Problem:
    """A file with an image extension that Pillow cannot fully decode."""
    return _problem(
        ProblemCode.CORRUPT_IMAGE,
        Severity.ERROR,
        [file],
        f"{file} cannot be decoded ({detail}).",
        f"Re-export or re-download {file}, or delete it; AI-Toolkit cannot train on it.",
    )


def empty_file(file: str) -> Problem:
    """A zero-byte image file."""
    return _problem(
        ProblemCode.EMPTY_FILE,
        Severity.ERROR,
        [file],
        f"{file} is empty (0 bytes).",
        f"Delete {file} or replace it with the real image.",
    )


def too_large(file: str, detail: str, limit: int | None) -> Problem:
    """An image above Pillow's decompression-bomb limit, which AI-Toolkit's loader refuses."""
    limit_text = f" of {limit:,} pixels" if limit else ""
    return _problem(
        ProblemCode.TOO_LARGE,
        Severity.ERROR,
        [file],
        f"{file} is over Pillow's decompression-bomb limit{limit_text} ({detail}); it was not decoded.",
        f"Downscale {file} so its longer side is at most 4096 px (e.g. `magick in.png -resize 4096x4096 out.png`).",
    )


def unsupported_format(files: Sequence[str], supported: Sequence[str]) -> Problem:
    """Image files whose extension AI-Toolkit's loader does not pick up."""
    return _problem(
        ProblemCode.UNSUPPORTED_FORMAT,
        Severity.ERROR,
        files,
        f"AI-Toolkit only reads {', '.join(supported)} files and skips {name_files(sorted(files))}.",
        "Convert each to PNG (e.g. `magick in.heic out.png`) or move it out of the folder.",
    )


def too_small(files: Sequence[str], min_side: int) -> Problem:
    """Images whose shorter side is below the smallest target resolution."""
    return _problem(
        ProblemCode.TOO_SMALL,
        Severity.WARNING,
        files,
        f"The shorter side of {name_files(sorted(files))} is below {min_side} px, the smallest target resolution; "
        "they train in small buckets and look soft.",
        f"Replace them with larger originals, or drop resolutions above their size (e.g. resolutions=[{min_side}]).",
    )


def exif_rotated(files: Sequence[str]) -> Problem:
    """Images carrying an EXIF orientation other than 1."""
    return _problem(
        ProblemCode.EXIF_ROTATED,
        Severity.WARNING,
        files,
        f"{name_files(sorted(files))} {_verb(files, 'relies', 'rely')} on an EXIF orientation tag; "
        "AI-Toolkit rotates the pixels on load, "
        "but captioners and viewers that ignore EXIF see them sideways.",
        "Bake the rotation in: `ImageOps.exif_transpose(Image.open(p)).save(p)` or `magick p -auto-orient p`.",
    )


_MODE_EFFECTS = {
    "L": "it trains as a grey picture, so the LoRA may learn to drop colour",
    "1": "it trains as a black-and-white picture, so the LoRA may learn to drop colour",
    "CMYK": "AI-Toolkit's naive CMYK-to-RGB conversion shifts its colours",
}
_ALPHA_EFFECT = "AI-Toolkit drops the alpha channel, so transparent areas show whatever colour lies under them"


def non_rgb(mode: str, files: Sequence[str]) -> Problem:
    """Images in a mode other than RGB; an error for 16/32-bit modes, a warning otherwise."""
    high = mode in HIGH_BIT_MODES
    if high:
        effect = "converting it to 8-bit RGB clips almost every pixel to white"
        fix = "Convert to 8-bit RGB with tone scaling, e.g. `magick in.png -depth 8 -colorspace sRGB out.png`."
    else:
        effect = _MODE_EFFECTS.get(mode, _ALPHA_EFFECT if "A" in mode or mode == "P" else "AI-Toolkit converts it")
        fix = (
            "Convert to RGB: `Image.open(p).convert('RGB').save(p)`, after pasting transparent images onto a "
            "background, or `magick in.png -background white -alpha remove -colorspace sRGB out.png`."
        )
    return _problem(
        ProblemCode.NON_RGB,
        Severity.ERROR if high else Severity.WARNING,
        files,
        f"{name_files(sorted(files))} {_verb(files, 'is', 'are')} in mode {mode}, not RGB; {effect}.",
        fix,
    )


def caption_missing(files: Sequence[str], caption_ext: str, *, none_captioned: bool = False) -> Problem:
    """Images without a caption file; an error when no usable image has one, a warning otherwise."""
    if none_captioned:
        return _problem(
            ProblemCode.CAPTION_MISSING,
            Severity.ERROR,
            files,
            f"None of the usable images has a .{caption_ext} caption ({name_files(sorted(files))} lack one); "
            "AI-Toolkit would train every step on the default caption or trigger word alone.",
            f"Run caption_images on this folder and wait_for_job until it ends, or write a <name>.{caption_ext} file "
            "beside each image; then inspect again.",
        )
    return _problem(
        ProblemCode.CAPTION_MISSING,
        Severity.WARNING,
        files,
        f"{name_files(sorted(files))} {_verb(files, 'has', 'have')} no .{caption_ext} caption; "
        "AI-Toolkit trains on the default caption or trigger word alone.",
        f"Run caption_images on this folder, or write a <name>.{caption_ext} file beside each image.",
    )


def caption_empty(files: Sequence[str]) -> Problem:
    """Caption files that are empty or whitespace only."""
    return _problem(
        ProblemCode.CAPTION_EMPTY,
        Severity.WARNING,
        files,
        f"{name_files(sorted(files))} {_verb(files, 'is', 'are')} empty or whitespace only.",
        "Write a caption into each, or delete them and run caption_images on this folder.",
    )


def caption_not_utf8(files: Sequence[str]) -> Problem:
    """Caption files that are not valid UTF-8; AI-Toolkit opens captions as UTF-8 and fails on them."""
    return _problem(
        ProblemCode.CAPTION_NOT_UTF8,
        Severity.ERROR,
        files,
        f"{name_files(sorted(files))} {_verb(files, 'is', 'are')} not readable UTF-8 text "
        "(Latin-1 or Windows-1252 perhaps); AI-Toolkit fails reading it.",
        "Re-save as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`.",
    )


def orphan_caption(files: Sequence[str], caption_ext: str) -> Problem:
    """Caption files that no image uses."""
    return _problem(
        ProblemCode.ORPHAN_CAPTION,
        Severity.WARNING,
        files,
        f"No image uses {name_files(sorted(files))} (AI-Toolkit reads exactly <image name>.{caption_ext}, "
        "case-sensitive).",
        "Rename each to match its image, or delete it.",
    )


def name_collision(caption: str, images: Sequence[str]) -> Problem:
    """Several images that share one caption file name."""
    return _problem(
        ProblemCode.NAME_COLLISION,
        Severity.ERROR,
        images,
        f"{name_files(sorted(images))} all use the caption file {caption}, so one caption describes different "
        "pictures.",
        f"Rename all but one of {name_files(sorted(images))} (and give each its own caption), or delete the extras.",
    )


def duplicate_image(files: Sequence[str], identical_bytes: bool) -> Problem:
    """A group of byte-identical or perceptually near-identical images."""
    kind = "byte-identical copies" if identical_bytes else "near-identical pictures (re-encoded, resized or copied)"
    return _problem(
        ProblemCode.DUPLICATE_IMAGE,
        Severity.WARNING,
        files,
        f"{name_files(sorted(files))} are {kind}; duplicates over-weight one picture.",
        f"Delete all but one of {name_files(sorted(files))}.",
    )


def trigger_missing(files: Sequence[str], trigger_word: str) -> Problem:
    """Captions that do not contain the trigger word; AI-Toolkit prepends it."""
    return _problem(
        ProblemCode.TRIGGER_MISSING,
        Severity.WARNING,
        files,
        f"The trigger word {trigger_word!r} is missing from {name_files(sorted(files))}; "
        "AI-Toolkit prepends it, so the caption reads less naturally.",
        f"Add {trigger_word!r} (or the placeholder [trigger]) where the subject is named in each caption.",
    )


def too_few_images(usable: int) -> Problem:
    """Fewer than MIN_IMAGES usable images; an error when there are none."""
    return _problem(
        ProblemCode.TOO_FEW_IMAGES,
        Severity.ERROR if usable == 0 else Severity.WARNING,
        [],
        f"The folder holds {usable} usable image{'s' if usable != 1 else ''}; at least {MIN_IMAGES} are needed "
        f"and {SWEET_SPOT}.",
        "Add more images of the subject in varied poses, lighting and backgrounds, then inspect again.",
    )


DARK_P99 = 70.0
"""too_dark: the brightest 1% of the picture is below this luminance (0-255)."""
LIGHT_P01 = 140.0
"""too_light: the darkest 1% of the picture is above this luminance."""
LOW_INFO_STD = 4.0
"""low_information: standard deviation of luminance below this (0-255 scale)."""
ODD_ASPECT_RATIO = 2.5
"""odd_aspect: longer side / shorter side above this (21:9 cinema is 2.33)."""
BLUR_RATIO = 0.5
"""blurry: sharpness below this fraction of the folder's median sharpness ..."""
BLUR_FLOOR = 1.2
"""... and below this absolute sharpness (images.quality_stats: Laplacian energy over gradient energy at the working
scale; sharp photos measure 1.87-3.35, upscaled ones 1.46-3.02), so a sharp photo is never blurry."""


def quality_codes(stats: ImageStats, folder_sharpness: float) -> list[ProblemCode]:
    """Which per-picture quality warnings one picture earns, given the folder's median sharpness."""
    if stats.luma_std < LOW_INFO_STD:
        return [ProblemCode.LOW_INFORMATION]  # a flat picture is not dark, light or blurred so much as empty
    codes = []
    if stats.luma_p99 < DARK_P99:
        codes.append(ProblemCode.TOO_DARK)
    if stats.luma_p01 > LIGHT_P01:
        codes.append(ProblemCode.TOO_LIGHT)
    if stats.sharpness < BLUR_RATIO * folder_sharpness and stats.sharpness < BLUR_FLOOR:
        codes.append(ProblemCode.BLURRY)
    return codes


def _verb_n(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _name_values(measured: Sequence[tuple[str, str]]) -> str:
    """`a.png (mean 12), b.png (mean 9) and 3 more` for a message."""
    ordered = sorted(measured)
    shown = ", ".join(f"{file} ({value})" for file, value in ordered[:MAX_NAMED])
    rest = len(ordered) - MAX_NAMED
    return f"{shown} and {rest} more" if rest > 0 else shown


def _quality(
    code: ProblemCode, named: Sequence[tuple[str, str]], verbs: tuple[str, str], what: str, hint: str
) -> Problem:
    """A picture-quality warning: `a.png (value), b.png (value) is/are <what>`."""
    message = f"{_name_values(named)} {_verb_n(len(named), *verbs)} {what}"
    return _problem(code, Severity.WARNING, [f for f, _ in named], message, hint)


def too_dark(measured: Sequence[tuple[str, float]]) -> Problem:
    """Pictures with nothing bright in them: `(file, 99th-percentile luminance)`."""
    return _quality(
        ProblemCode.TOO_DARK,
        [(f, f"99% of pixels below luminance {v:.0f}/255") for f, v in measured],
        ("is", "are"),
        f"very dark (limit {DARK_P99:.0f}); the LoRA may learn murky, crushed shadows.",
        "Brighten them (e.g. `magick in.png -auto-level out.png`) or replace them with well-exposed pictures.",
    )


def too_light(measured: Sequence[tuple[str, float]]) -> Problem:
    """Pictures with nothing dark in them: `(file, 1st-percentile luminance)`."""
    return _quality(
        ProblemCode.TOO_LIGHT,
        [(f, f"99% of pixels above luminance {v:.0f}/255") for f, v in measured],
        ("is", "are"),
        f"very light or washed out (limit {LIGHT_P01:.0f}); the LoRA may learn faded colours.",
        "Darken them (e.g. `magick in.png -auto-level out.png`) or replace them with well-exposed pictures.",
    )


def low_information(measured: Sequence[tuple[str, float]]) -> Problem:
    """Near-flat pictures: `(file, standard deviation of luminance)`."""
    return _quality(
        ProblemCode.LOW_INFORMATION,
        [(f, f"luminance std {v:.1f}") for f, v in measured],
        ("is", "are"),
        f"nearly flat (luminance standard deviation under {LOW_INFO_STD:g}/255; photos measure 20-120): little to "
        "learn from, likely a blank, a placeholder or a failed export.",
        "Open them to check; delete them or replace them with the intended pictures.",
    )


def odd_aspect(measured: Sequence[tuple[str, str]]) -> Problem:
    """Pictures of an extreme aspect ratio: `(file, ratio with its bucket and crop per resolution)`."""
    return _quality(
        ProblemCode.ODD_ASPECT,
        measured,
        ("has", "have"),
        f"an extreme aspect ratio (over {ODD_ASPECT_RATIO}:1); each trains alone in a long, thin bucket where the "
        "subject is small.",
        "Crop them to the subject at 2:1 or squarer (e.g. `magick in.png -gravity center -crop 2:1 out.png`), "
        "or split a panorama into several pictures.",
    )


def blurry(measured: Sequence[tuple[str, float]], folder_sharpness: float) -> Problem:
    """Pictures far softer than the folder's median: `(file, sharpness)`."""
    return _quality(
        ProblemCode.BLURRY,
        [(f, f"sharpness {v:.2f}") for f, v in measured],
        ("is", "are"),
        f"blurred: below {BLUR_RATIO:g} x this folder's median sharpness ({folder_sharpness:.2f}) and below "
        f"{BLUR_FLOOR:g} (Laplacian over gradient energy at a fixed 256x256-pixel scale; sharp photos measure about "
        "2-3.5); the LoRA may learn the blur.",
        "Replace them with sharper originals, or delete them if the folder has enough pictures.",
    )
