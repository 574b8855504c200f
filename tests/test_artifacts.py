"""Training outputs: scanning AI-Toolkit's layout, the contact sheet and the loss curve an agent looks at."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from lora_mcp.training.artifacts import (
    Sample,
    collect_outputs,
    contact_sheet,
    loss_curve_png,
    loss_history,
    newest_samples,
    smooth,
)

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aitk_progress_bar_capture.txt"


def lora(path: Path, step: int) -> None:
    tensors = {"diffusion_model.layers.0.attention.to_q.lora_A.weight": np.zeros((4, 8), dtype=np.float16)}
    save_file(tensors, str(path), metadata={"training_info": json.dumps({"step": step, "epoch": 1}), "format": "pt"})


def test_collect_outputs_reads_the_real_layout(tmp_path: Path) -> None:
    out = tmp_path / "my_lora"
    (out / "samples" / ".thumbs").mkdir(parents=True)
    lora(out / "my_lora_000000250.safetensors", 250)
    lora(out / "my_lora_000000500.safetensors", 500)
    lora(out / "my_lora.safetensors", 600)
    lora(out / "other_000000100.safetensors", 100)  # another job's file in the same folder is not ours
    for name in ("1700000000000__000000000_0.jpg", "1700000000001__000000000_1.jpg", "1700000000002__000000250_0.jpg"):
        Image.new("RGB", (64, 64), "red").save(out / "samples" / name)
    (out / "samples" / "notes.txt").write_text("not a sample")

    outputs = collect_outputs(out, "my_lora")
    assert outputs.lora_path == str(out / "my_lora.safetensors")
    assert outputs.lora_metadata["training_info"] == {"step": 600, "epoch": 1}
    assert [c.step for c in outputs.checkpoints] == [250, 500]
    assert [(s.step, s.prompt_index) for s in outputs.samples] == [(0, 0), (0, 1), (250, 0)]
    assert [(s.step, s.prompt_index) for s in newest_samples(outputs.samples)] == [(250, 0), (0, 1)]
    assert collect_outputs(tmp_path / "missing", "x").lora_path is None


def test_a_broken_final_file_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"\x00\x01 not safetensors")
    outputs = collect_outputs(tmp_path, "x")
    assert outputs.lora_path and "could not read metadata" in outputs.lora_metadata["error"]


def test_contact_sheet_fits_every_sample_to_its_tile(tmp_path: Path) -> None:
    paths = []
    for i, size in enumerate([(128, 128), (2048, 1024), (300, 600)]):
        path = tmp_path / f"{i}.jpg"
        Image.new("RGB", size, (200, 30 * i, 10)).save(path)
        paths.append(Sample(path=str(path), step=100, prompt_index=i))
    png = contact_sheet(paths, tile=100, columns=2)
    assert png is not None
    sheet = Image.open(io.BytesIO(png))
    assert sheet.size == (200, 2 * 118)
    # The 128 px sample is enlarged to fill its tile, not left as a small square in the middle.
    assert sheet.getpixel((2, 50)) != (255, 255, 255)
    assert contact_sheet([]) is None


def test_loss_history_from_the_real_progress_bar_bytes() -> None:
    if not CAPTURE.exists():
        pytest.fail(f"missing {CAPTURE}: CI must lay ../shared beside the checkout")
    history = loss_history(CAPTURE.read_text(encoding="utf-8"))
    assert history, "the capture's repaints carry loss values"
    steps = [s for s, _ in history]
    assert steps == sorted(set(steps))
    assert all(loss == pytest.approx(0.4123) for _, loss in history)


def test_smoothing_and_the_curve() -> None:
    values = [1.0] * 5 + [0.0] * 5
    smoothed = smooth(values, weight=0.5)
    assert smoothed[0] == pytest.approx(1.0)  # debiased: the first value is itself
    assert all(a >= b for a, b in itertools.pairwise(smoothed[4:]))
    png = loss_curve_png([(i, v) for i, v in enumerate(values)])
    assert png is not None and Image.open(io.BytesIO(png)).size == (640, 320)
    assert loss_curve_png([(1, 0.5)]) is None
