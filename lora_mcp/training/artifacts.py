"""What a training run leaves behind: step checkpoints, the final LoRA, samples, and pictures of them for an agent.

AI-Toolkit's layout under `<training_folder>/<name>/`: `<name>_<step:09d>.safetensors` per saved step,
`<name>.safetensors` at the end, and `samples/<epoch ms>__<step:09d>_<prompt index>.jpg`.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

CHECKPOINT_RE = re.compile(r"^(?P<name>.+)_(?P<step>\d{9})\.safetensors$")
SAMPLE_RE = re.compile(r"^(?P<ms>\d+)__(?P<step>\d{9})_(?P<index>\d+)\.(?:jpg|jpeg|png|webp)$", re.IGNORECASE)
LOSS_RE = re.compile(r"(\d+)/(\d+) \[[^\]]*?loss: ([0-9.eE+-]+)")


class Checkpoint(BaseModel):
    """One saved LoRA file."""

    path: str
    step: int | None
    size_bytes: int


class Sample(BaseModel):
    """One sample image AI-Toolkit generated during training."""

    path: str
    step: int
    prompt_index: int


class TrainOutputs(BaseModel):
    """Files a training job produced so far."""

    output_dir: str
    lora_path: str | None = Field(None, description="The final LoRA (<name>.safetensors), once training finished.")
    lora_metadata: dict[str, Any] = Field(default_factory=dict)
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    samples: list[Sample] = Field(default_factory=list)


def read_safetensors_metadata(path: Path) -> dict[str, Any]:
    """The `__metadata__` of a safetensors file, with JSON-looking values decoded."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        raw = handle.metadata() or {}
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value) if value[:1] in "{[" else value
        except ValueError:
            decoded[key] = value
    return decoded


def collect_outputs(output_dir: Path, name: str) -> TrainOutputs:
    """Scan an AI-Toolkit output folder."""
    outputs = TrainOutputs(output_dir=str(output_dir))
    if not output_dir.is_dir():
        return outputs
    final = output_dir / f"{name}.safetensors"
    if final.is_file():
        outputs.lora_path = str(final)
        try:
            outputs.lora_metadata = read_safetensors_metadata(final)
        except Exception as exc:  # a half-written or foreign file must not break status reporting
            outputs.lora_metadata = {"error": f"could not read metadata: {exc}"}
    for path in sorted(output_dir.glob("*.safetensors")):
        match = CHECKPOINT_RE.match(path.name)
        if match and match["name"] == name:
            outputs.checkpoints.append(
                Checkpoint(path=str(path), step=int(match["step"]), size_bytes=path.stat().st_size)
            )
    samples_dir = output_dir / "samples"
    if samples_dir.is_dir():
        outputs.samples.extend(filter(None, map(sample_from_path, sorted(samples_dir.iterdir()))))
        outputs.samples.sort(key=lambda s: (s.step, s.prompt_index))
    return outputs


def sample_from_path(path: Path | str) -> Sample | None:
    """A Sample from AI-Toolkit's file name `<epoch ms>__<step:09d>_<prompt index>.jpg`; None for other files."""
    match = SAMPLE_RE.match(Path(path).name)
    if match is None:
        return None
    return Sample(path=str(path), step=int(match["step"]), prompt_index=int(match["index"]))


def newest_samples(samples: list[Sample]) -> list[Sample]:
    """The newest sample of every prompt."""
    newest: dict[int, Sample] = {}
    for sample in samples:
        if sample.prompt_index not in newest or sample.step >= newest[sample.prompt_index].step:
            newest[sample.prompt_index] = sample
    return [newest[i] for i in sorted(newest)]


def contact_sheet(samples: list[Sample], *, tile: int = 256, columns: int = 4) -> bytes | None:
    """A PNG grid of the given samples, labelled with prompt index and step."""
    from PIL import Image, ImageDraw

    if not samples:
        return None
    rows = (len(samples) + columns - 1) // columns
    cols = min(columns, len(samples))
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, sample in enumerate(samples):
        x, y = (i % columns) * tile, (i // columns) * (tile + 18)
        thumb = load_tile(sample.path, tile)
        if thumb is None:
            continue
        sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
        draw.text((x + 4, y + tile + 3), f"prompt {sample.prompt_index} @ step {sample.step}", fill="black")
    return png_bytes(sheet)


def load_tile(path: str | Path, tile: int) -> PILImage | None:
    """An image scaled to fit a `tile` x `tile` square (RGB), or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (tile, tile))  # a JPEG decodes at a reduced scale: a 1024 px sample costs far less
            thumb = img.convert("RGB")
    except OSError:
        return None
    # Fit the tile both ways: small samples (e.g. 256 px test runs) are enlarged, large ones shrunk.
    scale = tile / max(thumb.width, thumb.height)
    return thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))))


def png_bytes(image: PILImage) -> bytes:
    """An image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def loss_history(log_text: str) -> list[tuple[int, float]]:
    """(step, loss) pairs from the training bar's repaints, one per step (the last repaint wins)."""
    by_step: dict[int, float] = {}
    for match in LOSS_RE.finditer(log_text):
        try:
            by_step[int(match[1])] = float(match[3])
        except ValueError:
            continue
    return sorted(by_step.items())


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average, debiased like TensorBoard's smoothing."""
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * value
        out.append(avg / (1 - weight**i))
    return out


def loss_curve_png(history: list[tuple[int, float]], *, size: tuple[int, int] = (640, 320)) -> bytes | None:
    """A PNG line chart of raw (light) and smoothed (dark) loss against step."""
    from PIL import Image, ImageDraw

    if len(history) < 2:
        return None
    width, height = size
    pad = 40
    steps = [s for s, _ in history]
    losses = [v for _, v in history]
    smoothed = smooth(losses)
    lo, hi = min(losses), max(losses)
    hi = hi if hi > lo else lo + 1e-9
    x0, x1 = steps[0], steps[-1] if steps[-1] > steps[0] else steps[0] + 1

    def point(step: int, value: float) -> tuple[float, float]:
        return (
            pad + (step - x0) / (x1 - x0) * (width - 2 * pad),
            height - pad - (value - lo) / (hi - lo) * (height - 2 * pad),
        )

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((pad, pad, width - pad, height - pad), outline=(200, 200, 200))
    draw.line([point(s, v) for s, v in history], fill=(170, 190, 230), width=1)
    draw.line([point(s, v) for s, v in zip(steps, smoothed, strict=True)], fill=(20, 60, 160), width=2)
    draw.text((pad, 8), f"loss (smoothed), steps {x0}-{steps[-1]}", fill="black")
    draw.text((4, pad - 4), f"{hi:.3g}", fill="black")
    draw.text((4, height - pad - 6), f"{lo:.3g}", fill="black")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()
