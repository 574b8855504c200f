"""Rename image + caption pairs to a pattern built from the trigger word and the caption, reversibly.

`{trigger}_{index:03d}_{slug}` turns `IMG_4031.JPG` + `IMG_4031.txt` into `ohwx_001_woman_red_coat.jpg` +
`ohwx_001_woman_red_coat.txt`. Names never collide (a numeric suffix is added), renames go through temporary names
so swaps and cycles work, and every applied run writes `_rename_map_<timestamp>.json` in the folder, which
`undo_conform` replays backwards. A dry run only reports the plan.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

from lora_mcp.dataset.captions import caption_path
from lora_mcp.dataset.scan import scan_folder
from lora_mcp.errors import InvalidInput, OperationFailed
from lora_mcp.fsutil import write_text_atomic

DEFAULT_PATTERN = "{trigger}_{index:03d}_{slug}"
PATTERN_FIELDS = frozenset({"trigger", "index", "slug", "stem"})
MAP_PREFIX = "_rename_map_"
SLUG_WORDS = 5
STOPWORDS = frozenset(
    ["a", "an", "the", "of", "in", "on", "at", "with", "and", "to", "is", "are", "this", "that", "its", "image"]
)


class Rename(BaseModel):
    """One file moved, as paths relative to the dataset folder."""

    source: str = Field(alias="from")
    target: str = Field(alias="to")

    model_config = {"populate_by_name": True}


class ConformResult(BaseModel):
    """What conform_filenames did (or, in a dry run, would do)."""

    folder: str
    dry_run: bool
    renames: list[Rename] = Field(description="Image and caption moves, paired, in order.")
    unchanged: int = Field(description="Images whose name already matches the pattern.")
    map_file: str | None = Field(default=None, description="The rename map to pass to undo_conform.")
    next_step: str


def slugify(text: str, words: int = SLUG_WORDS) -> str:
    """Lower-case ASCII words joined by `_`, stop words dropped: 'A woman in a red coat.' -> 'woman_red_coat'."""
    tokens = re.findall(r"[a-z0-9]+", text.lower().encode("ascii", "ignore").decode())
    kept = [t for t in tokens if t not in STOPWORDS][:words]
    return "_".join(kept)


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^\w.-]+", "_", name, flags=re.ASCII).strip("._-")
    return re.sub(r"_+", "_", stem)[:120]


def check_pattern(pattern: str) -> None:
    """Refuse patterns with unknown fields or ones that could leave the folder."""
    try:
        fields = {f for f in re.findall(r"{(\w*)", pattern)}
        sample = pattern.format(trigger="t", index=1, slug="s", stem="x")
    except (KeyError, ValueError, IndexError) as exc:
        raise InvalidInput(
            f"The pattern {pattern!r} is not a valid format string: {exc}.",
            hint=f"Use fields {sorted(PATTERN_FIELDS)}, e.g. {DEFAULT_PATTERN!r}.",
            field="pattern",
        ) from None
    if not fields <= PATTERN_FIELDS or not fields & {"index", "stem"}:
        raise InvalidInput(
            f"The pattern {pattern!r} must use only {sorted(PATTERN_FIELDS)} and include {{index}} or {{stem}}.",
            hint=f"Try {DEFAULT_PATTERN!r}.",
            field="pattern",
        )
    if "/" in sample or "\\" in sample or sample.startswith((".", "-")):
        raise InvalidInput(
            f"The pattern {pattern!r} makes names with a path separator or a leading '.' or '-'.",
            hint=f"Try {DEFAULT_PATTERN!r}.",
            field="pattern",
        )


def plan_renames(folder: Path, pattern: str, trigger_word: str | None, caption_ext: str) -> tuple[list[Rename], int]:
    """Pairs of moves (image, then caption if any) and how many images keep their name."""
    check_pattern(pattern)
    images = scan_folder(folder, caption_ext).images
    trigger = _safe_stem(trigger_word or "") or _safe_stem(folder.name) or "image"
    moving = set(images) | {caption_path(folder / rel, caption_ext).relative_to(folder).as_posix() for rel in images}
    taken: set[str] = set()
    renames: list[Rename] = []
    unchanged = 0
    for index, rel in enumerate(images, start=1):
        image = folder / rel
        caption = caption_path(image, caption_ext)
        text = caption.read_text("utf-8", "replace") if caption.is_file() else ""
        if trigger_word:
            text = re.sub(re.escape(trigger_word), " ", text, flags=re.IGNORECASE)
        stem = _safe_stem(pattern.format(trigger=trigger, index=index, slug=slugify(text), stem=image.stem))
        suffixes = (image.suffix.lower(), f".{caption_ext}")
        stem = _free_stem(folder, image.parent, stem or f"{trigger}_{index:03d}", suffixes, taken, moving)
        target = (image.parent / f"{stem}{suffixes[0]}").relative_to(folder).as_posix()
        taken.update((image.parent / f"{stem}{x}").relative_to(folder).as_posix().lower() for x in suffixes)
        if target == rel:
            unchanged += 1
            continue
        renames.append(Rename(source=rel, target=target))
        if caption.is_file():
            cap_target = caption_path(folder / target, caption_ext).relative_to(folder).as_posix()
            renames.append(Rename(source=caption.relative_to(folder).as_posix(), target=cap_target))
    return renames, unchanged


def _free_stem(
    folder: Path, parent: Path, stem: str, suffixes: tuple[str, str], taken: set[str], moving: set[str]
) -> str:
    """`stem`, `stem_2`, `stem_3`...: the first whose image and caption names no other file uses."""
    candidate, n = stem, 1
    while True:
        names = [(parent / f"{candidate}{suffix}").relative_to(folder).as_posix() for suffix in suffixes]
        clash = any(rel.lower() in taken or ((folder / rel).exists() and rel not in moving) for rel in names)
        if not clash:
            return candidate
        n += 1
        candidate = f"{stem}_{n}"


def apply_renames(folder: Path, renames: list[Rename]) -> None:
    """Move every source to a temporary name first, then to its target: swaps and cycles cannot clobber."""
    sources = {r.source for r in renames}
    for r in renames:
        if (folder / r.target).exists() and r.target not in sources:
            raise OperationFailed(
                f"{r.target} already exists and would be overwritten; nothing was renamed.",
                hint="Move that file away (or pick another pattern), then call again.",
            )
    staged: list[tuple[Path, Path]] = []
    for r in renames:
        tmp = (folder / r.source).with_name(f".conform-{uuid.uuid4().hex}")
        os.rename(folder / r.source, tmp)
        staged.append((tmp, folder / r.target))
    for tmp, target in staged:
        os.rename(tmp, target)


def conform_filenames(
    folder: Path,
    *,
    pattern: str = DEFAULT_PATTERN,
    trigger_word: str | None = None,
    caption_ext: str = "txt",
    dry_run: bool = True,
) -> ConformResult:
    """Plan (dry run) or apply renames of image + caption pairs; an applied run writes a rename map for undo."""
    renames, unchanged = plan_renames(folder, pattern, trigger_word, caption_ext)
    if dry_run or not renames:
        step = "Call again with dry_run=false to apply." if renames else "Nothing to rename."
        return ConformResult(folder=str(folder), dry_run=dry_run, renames=renames, unchanged=unchanged, next_step=step)
    map_path = folder / f"{MAP_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    payload = {"pattern": pattern, "created": time.time(), "renames": [r.model_dump(by_alias=True) for r in renames]}
    write_text_atomic(map_path, json.dumps(payload, indent=2))  # first, so a crash mid-way is undoable
    apply_renames(folder, renames)
    return ConformResult(
        folder=str(folder),
        dry_run=False,
        renames=renames,
        unchanged=unchanged,
        map_file=str(map_path),
        next_step=f"To revert, call undo_conform(folder, map_file={map_path.name!r}).",
    )


def undo_conform(folder: Path, map_file: Path) -> ConformResult:
    """Replay a rename map backwards; the map is renamed `*.undone.json` so it cannot be applied twice."""
    if not map_file.name.startswith(MAP_PREFIX) or map_file.parent != folder or map_file.name.endswith(".undone.json"):
        raise InvalidInput(
            f"{map_file.name!r} is not an active rename map of {folder}.",
            hint=f"Pass a {MAP_PREFIX}*.json file that conform_filenames wrote in this folder.",
            field="map_file",
        )
    try:
        entries = json.loads(map_file.read_text(encoding="utf-8"))["renames"]
        forward = [Rename.model_validate(e) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"Cannot read the rename map {map_file.name}: {exc}.", field="map_file") from None
    backward = [Rename(source=r.target, target=r.source) for r in reversed(forward)]
    for r in backward:
        for rel in (r.source, r.target):
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise InvalidInput(f"The rename map holds an unsafe path {rel!r}.", field="map_file")
        if not (folder / r.source).exists():
            raise OperationFailed(
                f"{r.source} no longer exists, so the rename map cannot be undone safely.",
                hint="Restore or rename that file by hand, then call undo_conform again.",
            )
    apply_renames(folder, backward)
    map_file.rename(map_file.with_name(map_file.name.removesuffix(".json") + ".undone.json"))
    return ConformResult(folder=str(folder), dry_run=False, renames=backward, unchanged=0, next_step="Names restored.")
