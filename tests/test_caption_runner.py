"""The caption loop with a fake backend: a failing batch is split to isolate its bad image; a fatal error stops."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from lora_mcp.captioning.base import CaptionBackendError, CaptionResult
from lora_mcp.captioning.params import CaptionJobParams
from lora_mcp.captioning.runner import CaptionRun


class FakeCaptioner:
    """Captions an image by its width; a 13 px wide image breaks whatever batch holds it; 99 px is fatal."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.calls: list[int] = []

    def caption(self, images: Sequence[Image.Image], prompt: str) -> list[CaptionResult]:
        self.calls.append(len(images))
        widths = [image.width for image in images]
        if 99 in widths:
            raise CaptionBackendError("server gone", code="backend_unreachable", hint="start it")
        if 13 in widths:
            raise RuntimeError("CUDA error: device-side assert")
        return [f"The image shows a thing {w} pixels wide." for w in widths]

    def close(self) -> None:
        pass


def _folder(tmp_path: Path, widths: list[int]) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, width in enumerate(widths):
        Image.new("RGB", (width, 8), "white").save(folder / f"{i:02d}.png")
    return folder


def _params(folder: Path) -> CaptionJobParams:
    return CaptionJobParams(
        folder=str(folder), backend="template", model="fake", prompt="p", system_prompt="s", trigger_word="ohwx"
    )


def test_failed_batch_is_retried_one_by_one(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [10, 11, 13, 12, 14])
    captioner = FakeCaptioner(batch_size=4)
    steps: list[tuple[int, int, str]] = []
    report = CaptionRun(_params(folder), captioner, lambda d, t, m: steps.append((d, t, m))).run()
    assert captioner.calls == [4, 1, 1, 1, 1, 1]  # the broken batch, its four images alone, then the last batch
    assert report.failed == [{"image": "02.png", "reason": "RuntimeError: CUDA error: device-side assert"}]
    assert report.written == ["00.txt", "01.txt", "03.txt", "04.txt"]
    assert (folder / "00.txt").read_text(encoding="utf-8") == "ohwx, A thing 10 pixels wide."
    assert [d for d, _, _ in steps] == [0, 1, 2, 3, 4, 5] and all(t == 5 for _, t, _ in steps)


def test_fatal_backend_error_stops_and_keeps_written_captions(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [10, 11, 99, 12])
    with pytest.raises(CaptionBackendError):
        CaptionRun(_params(folder), FakeCaptioner(batch_size=2), lambda d, t, m: None).run()
    assert sorted(p.name for p in folder.glob("*.txt")) == ["00.txt", "01.txt"]
