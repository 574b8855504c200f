"""inspect_dataset: a read-only check of a training folder, as AI-Toolkit will see it.

Nothing in the folder is written, renamed or touched: files are opened for reading only. Which files count is
decided in `scan` (subfolders included, like AI-Toolkit), how each image is decoded in `images`, captions in
`captions`, buckets in `buckets`, duplicates in `duplicates`, and each problem's severity in `problems`.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lora_mcp.dataset import problems as P
from lora_mcp.dataset.buckets import BUCKET_DIVISIBILITY, bucket_for, crop_loss, preview_buckets
from lora_mcp.dataset.captions import (
    DEFAULT_CAPTION_EXT,
    CaptionRead,
    CaptionStatus,
    caption_path,
    normalize_caption_ext,
    read_caption,
)
from lora_mcp.dataset.duplicates import find_duplicates
from lora_mcp.dataset.factcache import FactsCache, FolderFacts
from lora_mcp.dataset.facts import DecodeFailure, ImageFacts
from lora_mcp.dataset.images import decode_image, decoder_signature, pixel_limit
from lora_mcp.dataset.models import DatasetReport, ImageInfo
from lora_mcp.dataset.pool import MIN_POOL_IMAGES, configured_workers, decode_in_pool
from lora_mcp.dataset.problems import Problem, ProblemCode, Severity
from lora_mcp.dataset.progress import ThrottledProgress
from lora_mcp.dataset.scan import IMAGE_EXTENSIONS, scan_folder
from lora_mcp.errors import InvalidInput, NotFound

DEFAULT_RESOLUTIONS = (512, 768, 1024)
MIN_RESOLUTION, MAX_RESOLUTION = 64, 8192


@dataclass(frozen=True)
class _Entry:
    file: str
    file_size: int
    result: ImageFacts | DecodeFailure
    caption_file: str
    caption: CaptionRead


def inspect_dataset(
    folder: Path,
    *,
    trigger_word: str | None = None,
    resolutions: list[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    caption_ext: str = DEFAULT_CAPTION_EXT,
    facts_cache: FactsCache | None = None,
    workers: int | None = None,
) -> DatasetReport:
    """Read-only check of a training folder: decodes every image and lists problems with fixes.

    With `facts_cache`, an image whose size, mtime, inode and ctime are unchanged is not decoded again; the report
    is the same either way. `workers` processes decode (None: the LORA_MCP_INSPECT_WORKERS setting, else one per
    CPU; 1: in this process, no pool); the report is the same for any number.
    """
    if not folder.is_dir():
        raise NotFound(f"{folder} is not an existing folder.", hint="Pass the folder that holds the images.")
    targets = _check_resolutions(resolutions)
    ext = normalize_caption_ext(caption_ext)
    trigger = trigger_word.strip() if trigger_word and trigger_word.strip() else None

    inventory = scan_folder(folder, ext)
    cached = facts_cache.open(folder, decoder_signature()) if facts_cache is not None else None
    meter = ThrottledProgress(progress, len(inventory.images))
    meter.start()
    looked_up = [_look_up(folder / rel, rel, cached) for rel in inventory.images]
    to_decode = [folder / rel for rel, (_, _, hit) in zip(inventory.images, looked_up, strict=True) if hit is None]
    captions: dict[str, CaptionRead] = {}
    entries = []
    with closing(_decode_all(to_decode, workers)) as decoded:
        for done, (rel, (st, size, hit)) in enumerate(zip(inventory.images, looked_up, strict=True), start=1):
            cap_rel = _caption_rel(rel, ext)
            if cap_rel not in captions:
                captions[cap_rel] = read_caption(folder / cap_rel, trigger)
            result = hit if hit is not None else next(decoded)
            if hit is None and st is not None and cached is not None:
                cached.put(rel, st, result)
            entries.append(_Entry(rel, size, result, cap_rel, captions[cap_rel]))
            meter.update(done)
    meter.update(len(inventory.images))
    if cached is not None:
        cached.save()

    used = {_caption_rel(rel, ext) for rel in [*inventory.images, *inventory.unsupported]}
    orphans = [c for c in inventory.captions if c not in used]
    found = _problems(entries, inventory.unsupported, orphans, targets, ext, trigger)
    sizes = [(e.file, e.result.width, e.result.height) for e in entries if isinstance(e.result, ImageFacts)]
    return DatasetReport(
        folder=str(folder),
        ready_for_training=not any(p.severity is Severity.ERROR for p in found),
        image_count=len(entries),
        usable_image_count=len(sizes),
        captioned_count=sum(e.caption.status is CaptionStatus.OK for e in entries),
        problems=found,
        buckets=preview_buckets(sizes, targets, BUCKET_DIVISIBILITY),
        images=[_info(e) for e in entries],
        ignored_files=inventory.ignored,
        resolutions=targets,
        bucket_divisibility=BUCKET_DIVISIBILITY,
        caption_ext=ext,
        trigger_word=trigger,
    )


def _check_resolutions(resolutions: Sequence[int] | None) -> list[int]:
    if resolutions is None:
        return list(DEFAULT_RESOLUTIONS)
    bad = [r for r in resolutions if not MIN_RESOLUTION <= r <= MAX_RESOLUTION]
    if not resolutions or bad:
        raise InvalidInput(
            f"Resolutions {list(resolutions)} are invalid: each must be between {MIN_RESOLUTION} and "
            f"{MAX_RESOLUTION}, and at least one is needed.",
            hint="Pass side lengths such as [512, 768, 1024], or leave resolutions out for that default.",
            field="resolutions",
        )
    return sorted(set(resolutions))


def _look_up(
    path: Path, rel: str, cached: FolderFacts | None
) -> tuple[os.stat_result | None, int, ImageFacts | DecodeFailure | None]:
    """The file's stat (taken before decoding, as the cache requires), size, and cached result if it still matches."""
    try:
        st = path.stat()
    except OSError:  # vanished since the scan; decode_image reports it, and nothing is cached
        return None, 0, None
    return st, st.st_size, cached.get(rel, st) if cached is not None else None


def _decode_all(paths: list[Path], workers: int | None) -> Generator[ImageFacts | DecodeFailure, None, None]:
    """decode_image of each path in order: in a process pool, or here for one worker or a handful of images."""
    count = configured_workers() if workers is None else workers
    if count <= 1 or len(paths) < MIN_POOL_IMAGES:
        return (decode_image(path) for path in paths)
    return decode_in_pool(paths, count)


def _caption_rel(image_rel: str, ext: str) -> str:
    return caption_path(PurePosixPath(image_rel), ext).as_posix()


def _info(entry: _Entry) -> ImageInfo:
    info = ImageInfo(
        file=entry.file,
        file_size=entry.file_size,
        decoded=isinstance(entry.result, ImageFacts),
        caption_file=entry.caption_file if entry.caption.status is not CaptionStatus.MISSING else None,
        caption_status=entry.caption.status,
        caption_chars=entry.caption.chars,
        has_trigger=entry.caption.has_trigger,
    )
    if isinstance(entry.result, ImageFacts):
        facts = entry.result
        info.width, info.height, info.format, info.mode = facts.width, facts.height, facts.format, facts.mode
        info.exif_orientation = facts.exif_orientation
    return info


def _problems(
    entries: Sequence[_Entry],
    unsupported: Sequence[str],
    orphans: Sequence[str],
    resolutions: Sequence[int],
    caption_ext: str,
    trigger: str | None,
) -> list[Problem]:
    found = [*_file_problems(entries, resolutions)]
    if unsupported:
        found.append(P.unsupported_format(unsupported, IMAGE_EXTENSIONS))
    found += _caption_problems(entries, caption_ext, trigger)
    if orphans:
        found.append(P.orphan_caption(orphans, caption_ext))
    usable = [(e.file, e.result) for e in entries if isinstance(e.result, ImageFacts)]
    found += [P.duplicate_image(g.files, g.identical_bytes) for g in find_duplicates(usable)]
    if len(usable) < P.MIN_IMAGES:
        found.append(P.too_few_images(len(usable)))
    order = list(ProblemCode)
    return sorted(found, key=lambda p: (p.severity is not Severity.ERROR, order.index(p.code), p.files))


def _file_problems(entries: Sequence[_Entry], resolutions: Sequence[int]) -> list[Problem]:
    found: list[Problem] = []
    by_mode: dict[str, list[str]] = {}
    small, rotated = [], []
    for e in entries:
        r = e.result
        if isinstance(r, DecodeFailure):
            if r.kind == "empty":
                found.append(P.empty_file(e.file))
            elif r.kind == "too_large":
                found.append(P.too_large(e.file, r.detail, pixel_limit()))
            else:
                found.append(P.corrupt_image(e.file, r.detail))
            continue
        if r.mode != "RGB":
            by_mode.setdefault(r.mode, []).append(e.file)
        if min(r.width, r.height) < min(resolutions):
            small.append(e.file)
        if r.exif_orientation not in (None, 1):
            rotated.append(e.file)
    found += [P.non_rgb(mode, files) for mode, files in sorted(by_mode.items())]
    if small:
        found.append(P.too_small(small, min(resolutions)))
    if rotated:
        found.append(P.exif_rotated(rotated))
    found += _quality_problems([(e.file, e.result) for e in entries if isinstance(e.result, ImageFacts)], resolutions)
    return found


def _quality_problems(pictures: Sequence[tuple[str, ImageFacts]], resolutions: Sequence[int]) -> list[Problem]:
    """too_dark, too_light, low_information, blurry (against the folder's median sharpness) and odd_aspect."""
    measured = [(file, r.stats) for file, r in pictures if r.stats is not None]
    textured = [s.sharpness for _, s in measured if s.luma_std >= P.LOW_INFO_STD]
    median = statistics.median(textured) if textured else 0.0
    by_code: dict[ProblemCode, list[tuple[str, float]]] = {}
    for file, stats in measured:
        values = {
            ProblemCode.TOO_DARK: float(stats.luma_p99),
            ProblemCode.TOO_LIGHT: float(stats.luma_p01),
            ProblemCode.LOW_INFORMATION: stats.luma_std,
            ProblemCode.BLURRY: stats.sharpness,
        }
        for code in P.quality_codes(stats, median):
            by_code.setdefault(code, []).append((file, values[code]))
    found = []
    if ProblemCode.TOO_DARK in by_code:
        found.append(P.too_dark(by_code[ProblemCode.TOO_DARK]))
    if ProblemCode.TOO_LIGHT in by_code:
        found.append(P.too_light(by_code[ProblemCode.TOO_LIGHT]))
    if ProblemCode.LOW_INFORMATION in by_code:
        found.append(P.low_information(by_code[ProblemCode.LOW_INFORMATION]))
    if ProblemCode.BLURRY in by_code:
        found.append(P.blurry(by_code[ProblemCode.BLURRY], median))
    odd = [(file, _aspect_text(r.width, r.height, resolutions)) for file, r in pictures if _is_odd(r.width, r.height)]
    if odd:
        found.append(P.odd_aspect(odd))
    return found


def _is_odd(width: int, height: int) -> bool:
    return max(width, height) / min(width, height) > P.ODD_ASPECT_RATIO


def _aspect_text(width: int, height: int, resolutions: Sequence[int]) -> str:
    """`4.00:1; bucket 1024x256 at 512 crops 0.0%, ...`: the aspect ratio, its bucket and crop per resolution."""
    parts = []
    for resolution in resolutions:
        bucket = bucket_for(width, height, resolution, BUCKET_DIVISIBILITY)
        parts.append(f"bucket {bucket[0]}x{bucket[1]} at {resolution} crops {crop_loss(width, height, bucket):.1%}")
    return f"{max(width, height) / min(width, height):.2f}:1; " + ", ".join(parts)


def _caption_problems(entries: Sequence[_Entry], caption_ext: str, trigger: str | None) -> list[Problem]:
    found: list[Problem] = []
    by_caption: dict[str, list[str]] = {}
    for e in entries:
        by_caption.setdefault(e.caption_file, []).append(e.file)
    found += [P.name_collision(cap, images) for cap, images in sorted(by_caption.items()) if len(images) > 1]
    reads = {e.caption_file: e.caption for e in entries}
    missing = [e.file for e in entries if e.caption.status is CaptionStatus.MISSING]
    usable = [e for e in entries if isinstance(e.result, ImageFacts)]
    none_captioned = bool(usable) and all(e.caption.status is CaptionStatus.MISSING for e in usable)
    if missing:
        found.append(P.caption_missing(missing, caption_ext, none_captioned=none_captioned))
    empty = [c for c, r in reads.items() if r.status is CaptionStatus.EMPTY]
    if empty:
        found.append(P.caption_empty(empty))
    not_utf8 = [c for c, r in reads.items() if r.status is CaptionStatus.NOT_UTF8]
    if not_utf8:
        found.append(P.caption_not_utf8(not_utf8))
    no_trigger = [c for c, r in reads.items() if r.has_trigger is False]
    if trigger and no_trigger:
        found.append(P.trigger_missing(no_trigger, trigger))
    return found
