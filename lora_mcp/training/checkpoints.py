"""Compare a training run's saved steps: one grid of the samples AI-Toolkit drew at each checkpoint, per prompt.

Rows are the checkpoints (`<name>_<step:09d>.safetensors`, then the final `<name>.safetensors`), columns the sample
prompts. A tile is the sample of its prompt at the row's step, else the newest one before it (its caption says so),
else blank. Each row is labelled with its step and the smoothed loss there, read from the logs of the job and of
the runs it resumed (one output folder, one curve). At most MAX_ROWS rows are drawn (evenly spaced, first and last
kept), and the tiles shrink until the PNG fits MAX_GRID_BYTES, so the image stays cheap for an agent to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from lora_mcp.errors import InvalidInput, OperationFailed
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.training.artifacts import (
    Sample,
    TrainOutputs,
    collect_outputs,
    load_tile,
    loss_history,
    png_bytes,
    smooth,
)
from lora_mcp.training.trainjob import frozen_process

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from lora_mcp.jobs.manager import JobManager
    from lora_mcp.jobs.store import JobRecord

MAX_ROWS = 20
MAX_GRID_BYTES = 1_500_000
MAX_TILE, MIN_TILE = 256, 48
PIXEL_BUDGET = 900_000
"""Tile pixels aimed at before encoding (a PNG of photos costs ~1-2 bytes a pixel); the loop below checks bytes."""
LABEL_WIDTH, HEADER_HEIGHT, CAPTION_HEIGHT = 150, 34, 16


class CheckpointRow(BaseModel):
    """One saved LoRA of the run."""

    file: str = Field(description="The checkpoint file (export it with export_lora(job_id, checkpoint=<step>)).")
    step: int | None = Field(description="Step it was saved at; for the final LoRA, from its metadata.")
    loss: float | None = Field(
        None, description="Smoothed training loss at the newest logged step at or before `step`."
    )
    size_bytes: int
    is_final: bool = Field(description="True for the final <name>.safetensors.")
    in_grid: bool = Field(False, description=f"Whether the image has a row for it (at most {MAX_ROWS} rows).")
    sample_step: int | None = Field(
        None, description="Step of the samples in its row: `step` itself, the newest sample step before it, or null."
    )


class CheckpointComparison(BaseModel):
    """The checkpoints of a train job and what the grid image shows."""

    job_id: str
    state: JobState
    prompt_indices: list[int] = Field(description="The grid's columns, as sample prompt indices.")
    prompts: list[str] = Field(description="The grid's columns: the sample prompts, trigger word filled in.")
    checkpoints: list[CheckpointRow] = Field(description="Every saved step, oldest first, the final LoRA last.")
    tile_px: int = Field(description="Side of one tile in the grid image.")
    note: str = Field(description="What the grid shows and leaves out.")
    next_step: str


@dataclass(frozen=True)
class GridRow:
    """What one row of the image shows."""

    label: list[str]
    step: int | None
    tiles: list[Sample | None]


def compare_checkpoints(
    manager: JobManager, job_id: str, prompts: list[int | str] | None = None
) -> tuple[CheckpointComparison, bytes]:
    """The checkpoints of a train job (running, finished or resumed) and a PNG grid of their samples per prompt."""
    job = manager.get(job_id)
    if job.kind != JobKind.TRAIN:
        raise InvalidInput(
            f"Job {job_id} is a {job.kind.value} job; only train jobs save checkpoints.",
            field="job_id",
            hint="Pass a train job's id (list_jobs(kind='train')).",
        )
    name = job.params["name"]
    outputs = collect_outputs(Path(job.params["training_folder"]) / name, name)
    rows = checkpoint_rows(outputs)
    if not rows:
        raise no_checkpoint_yet(job, manager)
    known = sample_prompts(job, outputs.samples)
    columns = pick_prompts(known, prompts)
    curve = smoothed_loss(loss_history(manager.lineage_log(job_id)))
    by_prompt = samples_by_prompt(outputs.samples)
    shown = set(spread(len(rows), MAX_ROWS))
    grid_rows: list[GridRow] = []
    for i, row in enumerate(rows):
        tiles = [nearest_sample(by_prompt.get(c, []), row.step) for c in columns]
        steps = [t.step for t in tiles if t is not None]
        row.loss = loss_at(curve, row.step)
        row.sample_step = max(steps) if steps else None
        row.in_grid = i in shown
        if row.in_grid:
            grid_rows.append(GridRow(row_label(row), row.step, tiles))
    headers = [f"{i}: {known.get(i, f'prompt {i}')}" for i in columns]
    png, tile = draw_grid(grid_rows, headers)
    note = f"Rows: {len(grid_rows)} saved steps, columns: {len(columns)} prompts, tiles {tile} px."
    if len(grid_rows) < len(rows):
        note += f" {len(rows)} steps were saved: {len(grid_rows)} are drawn (evenly spaced, first and last kept)."
    comparison = CheckpointComparison(
        job_id=job_id,
        state=job.state,
        prompt_indices=columns,
        prompts=[known.get(i, f"prompt {i}") for i in columns],
        checkpoints=rows,
        tile_px=tile,
        note=note,
        next_step="export_lora(job_id, checkpoint=<step>) copies the checkpoint you prefer into ComfyUI; "
        "omit checkpoint for the final LoRA.",
    )
    return comparison, png


def checkpoint_rows(outputs: TrainOutputs) -> list[CheckpointRow]:
    """The step checkpoints, oldest first, then the final LoRA (its step from `training_info`)."""
    rows = [
        CheckpointRow(file=c.path, step=c.step, size_bytes=c.size_bytes, is_final=False)
        for c in sorted(outputs.checkpoints, key=lambda c: c.step or 0)
    ]
    if outputs.lora_path is not None:
        info = outputs.lora_metadata.get("training_info")
        step = info.get("step") if isinstance(info, dict) else None
        final = Path(outputs.lora_path)
        size = final.stat().st_size if final.is_file() else 0
        rows.append(
            CheckpointRow(file=str(final), step=step if isinstance(step, int) else None, size_bytes=size, is_final=True)
        )
    return rows


def no_checkpoint_yet(job: JobRecord, manager: JobManager) -> OperationFailed:
    """The error for a job that saved nothing (yet): where it stands and when the first save comes."""
    step = manager.live_progress(job).step
    save_every = frozen_process(job).get("save", {}).get("save_every")
    when = f"; the first save comes at step {save_every}" if isinstance(save_every, int) and save_every > 0 else ""
    if job.state.final:
        hint = "It ended before its first save: resume_training (or a new config) to train further."
    else:
        hint = "Call wait_for_job until a checkpoint is saved (get_job's outputs.checkpoints), then call again."
    return OperationFailed(
        f"Job {job.id} has no saved checkpoint yet (state {job.state.value}, step {step}{when}).", hint=hint
    )


def sample_prompts(job: JobRecord, samples: list[Sample]) -> dict[int, str]:
    """Prompt index -> text from the config (`[trigger]` filled in), plus any index only seen in sample files."""
    process = frozen_process(job)
    sample = process.get("sample") or {}
    entries = sample.get("samples") or [{"prompt": p} for p in sample.get("prompts") or []]
    trigger = str(process.get("trigger_word") or "")
    known = {
        i: str(e.get("prompt", "")).replace("[trigger]", trigger) if isinstance(e, dict) else str(e)
        for i, e in enumerate(entries)
    }
    for s in samples:
        known.setdefault(s.prompt_index, f"prompt {s.prompt_index}")
    return dict(sorted(known.items()))


def pick_prompts(known: dict[int, str], wanted: list[int | str] | None) -> list[int]:
    """The prompt indices to show: all, or those named by index or by text (exact or a unique part, any case)."""
    if not wanted:
        return list(known)
    listing = "; ".join(f"{i}: {t!r}" for i, t in known.items()) or "none"
    picked: list[int] = []
    for item in wanted:
        if isinstance(item, int) or item.strip().isdigit():
            index = int(item)
            if index not in known:
                raise InvalidInput(f"There is no sample prompt {index}.", field="prompts", hint=f"Use {listing}.")
        else:
            text = item.strip().lower()
            exact = [i for i, t in known.items() if t.lower() == text]
            partial = [i for i, t in known.items() if text and text in t.lower()]
            matches = exact or partial
            if len(matches) != 1:
                raise InvalidInput(
                    f"{item!r} matches {len(matches)} sample prompts; it must name exactly one.",
                    field="prompts",
                    hint=f"Pass prompt indices or texts from: {listing}.",
                )
            index = matches[0]
        if index not in picked:
            picked.append(index)
    return picked


def samples_by_prompt(samples: list[Sample]) -> dict[int, list[Sample]]:
    """Each prompt's samples by step; of two at one step (a re-run) the newer file wins."""
    grouped: dict[int, dict[int, Sample]] = {}
    for s in sorted(samples, key=lambda s: Path(s.path).name):  # names start with the epoch ms: oldest first
        grouped.setdefault(s.prompt_index, {})[s.step] = s
    return {i: [by_step[k] for k in sorted(by_step)] for i, by_step in grouped.items()}


def nearest_sample(samples: list[Sample], step: int | None) -> Sample | None:
    """The sample at `step`, else the newest before it; the newest of all when the step is unknown."""
    before = [s for s in samples if step is None or s.step <= step]
    return before[-1] if before else None


def spread(count: int, limit: int) -> list[int]:
    """At most `limit` indices of `count`, evenly spaced, the first and the last always among them."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def smoothed_loss(history: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The loss curve smoothed as get_job's chart draws it."""
    return list(zip([s for s, _ in history], smooth([v for _, v in history]), strict=True))


def loss_at(curve: list[tuple[int, float]], step: int | None) -> float | None:
    """The curve's value at the newest logged step at or before `step` (the last one when the step is unknown)."""
    before = [v for s, v in curve if step is None or s <= step]
    return round(before[-1], 5) if before else None


def row_label(row: CheckpointRow) -> list[str]:
    """The text left of a row: which file, its step and loss."""
    step = "step ?" if row.step is None else f"step {row.step}"
    loss = "loss n/a" if row.loss is None else f"loss {row.loss:.4g}"
    return ["final LoRA" if row.is_final else "checkpoint", step, loss]


def tile_caption(sample: Sample | None, step: int | None) -> str:
    """The line under a tile: the sample's step, and that it is the nearest earlier one when it is."""
    if sample is None:
        return "no sample" if step is None else f"no sample <= {step}"
    if step is None or sample.step == step:
        return f"sample @ {sample.step}"
    return f"nearest: @ {sample.step}"


def draw_grid(rows: list[GridRow], headers: list[str]) -> tuple[bytes, int]:
    """The PNG grid and its tile size: tiles as large as PIXEL_BUDGET allows, shrunk until it fits the bytes."""
    cells = max(1, len(rows) * len(headers))
    tile = max(MIN_TILE, min(MAX_TILE, int((PIXEL_BUDGET / cells) ** 0.5)))
    cache: dict[str, PILImage | None] = {}
    for row in rows:
        for sample in row.tiles:
            if sample is not None and sample.path not in cache:
                cache[sample.path] = load_tile(sample.path, tile)
    while True:
        png = png_bytes(render(rows, headers, tile, cache))
        if len(png) <= MAX_GRID_BYTES or tile <= MIN_TILE:
            return png, tile
        tile = max(MIN_TILE, int(tile * 0.8))


def render(rows: list[GridRow], headers: list[str], tile: int, cache: dict[str, PILImage | None]) -> PILImage:
    """Draw the grid: prompt headers on top, a label left of each row, a caption under each tile."""
    from PIL import Image, ImageDraw

    width = LABEL_WIDTH + len(headers) * tile
    height = HEADER_HEIGHT + len(rows) * (tile + CAPTION_HEIGHT)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, header in enumerate(headers):
        draw.text((LABEL_WIDTH + c * tile + 4, 4), fit_text(draw, header, tile - 8), fill="black")
    for r, row in enumerate(rows):
        y = HEADER_HEIGHT + r * (tile + CAPTION_HEIGHT)
        draw.line((0, y - 1, width, y - 1), fill=(210, 210, 210))
        for k, line in enumerate(row.label):
            draw.text((6, y + 6 + 14 * k), line, fill="black")
        for c, sample in enumerate(row.tiles):
            x = LABEL_WIDTH + c * tile
            thumb = cache.get(sample.path) if sample is not None else None
            if thumb is None:
                draw.rectangle((x + 2, y + 2, x + tile - 3, y + tile - 3), fill=(238, 238, 238))
            else:
                if thumb.width > tile or thumb.height > tile:
                    scale = tile / max(thumb.width, thumb.height)
                    thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))))
                sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
            draw.text((x + 4, y + tile + 2), fit_text(draw, tile_caption(sample, row.step), tile - 8), fill="black")
    return sheet


def fit_text(draw: Any, text: str, width: int) -> str:
    """`text` cut (with an ellipsis) to fit `width` pixels."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."
