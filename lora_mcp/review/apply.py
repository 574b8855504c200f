"""Apply a review: write approved or edited captions, back up the old ones, refuse captions changed since."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lora_mcp.captioning.files import BACKUP_DIR
from lora_mcp.dataset.captions import caption_path
from lora_mcp.errors import InvalidInput
from lora_mcp.fsutil import remove_stale_temps, write_text_atomic
from lora_mcp.paths import confine_existing_dir
from lora_mcp.review.models import Decision, Verdict
from lora_mcp.review.reviewfile import ImageReview, load_review

Approve = Literal["all", "decided"] | list[str]


class AppliedCaption(BaseModel):
    """A caption that was written."""

    image: str
    caption_file: str
    source: Literal["suggestion", "edit"]


class SkippedCaption(BaseModel):
    """A caption left alone on purpose."""

    image: str
    reason: str


class ApplyResult(BaseModel):
    """What apply_caption_review did."""

    review_file: str
    applied: list[AppliedCaption] = Field(default_factory=list)
    skipped: list[SkippedCaption] = Field(
        default_factory=list, description="Already applied, rejected, or nothing to apply."
    )
    conflicts: list[SkippedCaption] = Field(
        default_factory=list, description="Captions changed since the review: NOT overwritten."
    )
    unchanged: int = Field(0, description="Images with nothing to apply (verdict ok, or not selected).")
    backup_folder: str | None = Field(None, description="Old versions of the captions written (null: none written).")
    removed_temp_files: list[str] = Field(
        default_factory=list, description="Temp files an earlier, killed write left beside these captions: removed."
    )
    next_step: str = ""


def apply_review(review_path: Path, approve: Approve = "all", roots: Sequence[Path] | None = None) -> ApplyResult:
    """Write the captions `approve` selects from a review file; non-selected and changed captions are left alone."""
    doc = load_review(review_path)
    folder = confine_existing_dir(doc.folder, roots) if roots is not None else Path(doc.folder).resolve()
    if not folder.is_dir():
        raise InvalidInput(f"The review's folder {doc.folder!r} is not a folder.", field="folder")
    names = {entry.image for entry in doc.images}
    if isinstance(approve, list) and (unknown := sorted(set(approve) - names)):
        listed = ", ".join(sorted(names)[:10])
        raise InvalidInput(
            f"Not in the review: {', '.join(unknown)}.", hint=f"Name images as the review does, e.g. {listed}."
        )
    result = ApplyResult(review_file=str(review_path))
    planned: list[tuple[ImageReview, str, Literal["suggestion", "edit"]]] = []
    for entry in doc.images:
        target = _target(entry, approve)
        if isinstance(target, SkippedCaption):
            result.skipped.append(target)
        elif target is None:
            result.unchanged += 1
        else:
            planned.append((entry, *target))
    paths = {entry.image: _caption_file(folder, entry.image, doc.caption_ext) for entry, _, _ in planned}
    swept = remove_stale_temps(_managed_captions(folder, doc.images, doc.caption_ext))
    result.removed_temp_files = [p.relative_to(folder).as_posix() for p in swept]
    backups = _Backups(folder)
    for entry, text, source in planned:
        path = paths[entry.image]
        outcome = _write_one(entry, path, text, backups)
        if outcome is None:
            rel = path.relative_to(folder).as_posix()
            result.applied.append(AppliedCaption(image=entry.image, caption_file=rel, source=source))
        elif outcome.startswith("conflict"):
            result.conflicts.append(SkippedCaption(image=entry.image, reason=outcome))
        else:
            result.skipped.append(SkippedCaption(image=entry.image, reason=outcome))
    result.backup_folder = str(backups.folder) if backups.folder else None
    result.next_step = _next_step(result)
    return result


def _target(entry: ImageReview, approve: Approve) -> tuple[str, Literal["suggestion", "edit"]] | SkippedCaption | None:
    """The text to write for `entry`, a reason to skip it, or None when there is nothing to consider."""
    if isinstance(approve, list):
        selected = entry.image in approve
    elif entry.decision == Decision.REJECT:
        return SkippedCaption(image=entry.image, reason="decision is reject")
    else:
        explicit = entry.decision in (Decision.APPROVE, Decision.EDIT)
        pending_fix = entry.decision == Decision.PENDING and entry.verdict == Verdict.FIX
        selected = explicit or (approve == "all" and pending_fix)
    if not selected:
        return None
    if entry.decision == Decision.EDIT and entry.edited_caption:
        return entry.edited_caption.strip(), "edit"
    if not (entry.suggested_caption or "").strip():
        return SkippedCaption(image=entry.image, reason="no suggested_caption: set decision edit with edited_caption")
    return (entry.suggested_caption or "").strip(), "suggestion"


def _caption_file(folder: Path, image: str, caption_ext: str) -> Path:
    """The caption path of `image`, refusing names that would lead out of the folder."""
    path = caption_path(folder / image, caption_ext)
    if (
        Path(image).is_absolute()
        or ".." in Path(image).parts
        or not Path(os.path.realpath(path)).is_relative_to(folder)
    ):
        raise InvalidInput(
            f"The review names an image outside its folder: {image!r}.",
            hint="Image names are paths relative to the reviewed folder; review the folder again.",
        )
    return path


def _managed_captions(folder: Path, entries: Sequence[ImageReview], caption_ext: str) -> list[Path]:
    """The caption file of every image in the review that lies inside the folder (the files apply may write)."""
    paths = []
    for entry in entries:
        try:
            paths.append(_caption_file(folder, entry.image, caption_ext))
        except InvalidInput:
            continue
    return paths


class _Backups:
    """Old captions in `<folder>/_caption_backups/review_<time>/<relative path>` (the folder captioning backs up into
    too; the dataset scan skips it), created on first use."""

    def __init__(self, dataset: Path) -> None:
        self.dataset = dataset
        self.folder: Path | None = None

    def keep(self, path: Path) -> None:
        if self.folder is None:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
            self.folder = self.dataset / BACKUP_DIR / f"review_{stamp}"
            self.folder.mkdir(parents=True)
        dest = self.folder / path.relative_to(self.dataset)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)


def _write_one(entry: ImageReview, path: Path, text: str, backups: _Backups) -> str | None:
    """Write one caption; None on success, else why not (starting with 'conflict' for changed captions)."""
    try:
        current: bytes | None = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current is not None and current == text.encode("utf-8"):
        return "already applied: the caption file holds this text"
    digest = hashlib.sha256(current).hexdigest() if current is not None else None
    if digest != entry.caption_sha256:
        return "conflict: the caption changed since the review (hash differs); review it again"
    if current is not None:
        backups.keep(path)
    write_text_atomic(path, text)
    return None


def _next_step(result: ApplyResult) -> str:
    if result.conflicts:
        return "Some captions changed since the review: call review_captions again for a fresh review of them."
    if result.applied:
        return "Captions written; old ones are in backup_folder. Call inspect_dataset to check the folder."
    return "Nothing was written (see skipped). Set decisions in the review file, or pass approve=[image names]."
