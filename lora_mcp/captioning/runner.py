"""The caption loop: plan, decode, caption in batches, clean, write. One bad image never stops the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from lora_mcp.captioning.base import CaptionBackendError, Captioner, CaptionResult, ItemFailed, load_image
from lora_mcp.captioning.files import OverwritePolicy, backup_caption, backup_folder, plan_captions
from lora_mcp.captioning.params import CaptionJobParams
from lora_mcp.captioning.text import finish_caption
from lora_mcp.dataset.captions import caption_path
from lora_mcp.fsutil import write_text_atomic

log = logging.getLogger(__name__)

Report = Callable[[int, int, str], None]


@dataclass
class CaptionReport:
    """What a run did, with paths relative to the dataset folder."""

    written: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    backed_up: list[str] = field(default_factory=list)
    backup_dir: str | None = None

    def outputs(self, params: CaptionJobParams) -> dict[str, Any]:
        """The job outputs the agent reads."""
        return {
            "folder": params.folder,
            "backend": params.backend,
            "model": params.model,
            "prompt": params.prompt,
            "captions_written": self.written,
            "failed": self.failed,
            "skipped_existing": self.skipped,
            "backed_up": self.backed_up,
            "backup_dir": self.backup_dir,
        }


@dataclass
class CaptionRun:
    """One pass over a dataset folder with a loaded captioner."""

    params: CaptionJobParams
    captioner: Captioner
    report: Report
    result: CaptionReport = field(default_factory=CaptionReport)
    done: int = 0
    total: int = 0

    @property
    def folder(self) -> Path:
        return Path(self.params.folder)

    def run(self) -> CaptionReport:
        """Caption every planned image; failures are recorded per image."""
        plan = plan_captions(self.folder, self.params.caption_ext, self.params.overwrite)
        self.result.skipped = plan.skipped
        self.total = len(plan.todo)
        backups = backup_folder(self.folder) if self.params.overwrite == OverwritePolicy.BACKUP else None
        self.report(0, self.total, f"{self.total} images to caption, {len(plan.skipped)} already captioned")
        batch = max(1, self.captioner.batch_size)
        for start in range(0, self.total, batch):
            self._batch(plan.todo[start : start + batch], backups)
        return self.result

    def _batch(self, rels: list[str], backups: Path | None) -> None:
        loaded: list[tuple[str, Image.Image]] = []
        for rel in rels:
            try:
                loaded.append((rel, load_image(self.folder / rel)))
            except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on corrupt files
                self._fail(rel, f"could not decode the image: {exc}")
        if not loaded:
            return
        results = self._caption([img for _, img in loaded])
        for (rel, _), outcome in zip(loaded, results, strict=True):
            if isinstance(outcome, ItemFailed):
                self._fail(rel, outcome.reason)
            else:
                self._write(rel, outcome, backups)

    def _caption(self, images: list[Image.Image]) -> list[CaptionResult]:
        """The backend's results; a failed batch is retried one image at a time to isolate the culprit."""
        try:
            return self.captioner.caption(images, self.params.prompt)
        except CaptionBackendError:
            raise
        except Exception as exc:  # a backend failure on this batch only: the next batch may well work
            if len(images) == 1:
                log.warning("captioning failed: %s", exc, exc_info=True)
                return [ItemFailed(f"{type(exc).__name__}: {exc}")]
            log.warning("batch of %d failed (%s); retrying one by one", len(images), exc)
        return [r for image in images for r in self._caption([image])]

    def _write(self, rel: str, raw: str, backups: Path | None) -> None:
        text = finish_caption(raw, self.params.trigger_word)
        if not text:
            self._fail(rel, "the model returned an empty caption")
            return
        target = caption_path(self.folder / rel, self.params.caption_ext)
        if backups is not None:
            saved = backup_caption(self.folder, target, backups)
            if saved is not None:
                self.result.backed_up.append(saved.relative_to(self.folder).as_posix())
                self.result.backup_dir = backups.relative_to(self.folder).as_posix()
        try:
            write_text_atomic(target, text)
        except OSError as exc:
            self._fail(rel, f"could not write {target.name}: {exc}")
            return
        self.result.written.append(target.relative_to(self.folder).as_posix())
        self._step(f"captioned {rel}")

    def _fail(self, rel: str, reason: str) -> None:
        self.result.failed.append({"image": rel, "reason": reason})
        self._step(f"failed {rel}: {reason}")

    def _step(self, message: str) -> None:
        self.done += 1
        self.report(self.done, self.total, message)
