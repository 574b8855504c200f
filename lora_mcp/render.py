"""Plain-text renderings of results, for people at a terminal."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from lora_mcp.dataset.models import DatasetReport
from lora_mcp.dataset.problems import Severity, name_files
from lora_mcp.system import SystemReport


def render_system_report(report: SystemReport) -> str:
    """system_check as a short checklist."""
    lines = ["GPUs:"]
    lines += [f"  [{g.index}] {g.name}: {g.memory_used_mb}/{g.memory_total_mb} MiB used" for g in report.gpus]
    if not report.gpus:
        lines.append(f"  none ({report.gpu_note})")
    tk = report.ai_toolkit
    lines.append(f"AI-Toolkit: {tk.dir or 'not configured'} (run.py {'found' if tk.run_py_found else 'missing'})")
    lines.append(f"  python: {tk.python} ({'found' if tk.python_found else 'missing'})")
    lines.append(f"State dir: {report.state_dir}")
    lines.append("Roots: " + ", ".join(report.roots))
    lines += [f"Disk {d.path}: {d.free_gb} GB free of {d.total_gb} GB" for d in report.disks]
    if report.problems:
        lines.append("Problems:")
        lines += [f"  - {p}" for p in report.problems]
    else:
        lines.append("No problems found.")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def render_dataset_report(report: DatasetReport) -> str:
    """inspect_dataset as counts, problems grouped by severity with their fixes, and a bucket summary."""
    errors = [p for p in report.problems if p.severity is Severity.ERROR]
    warnings = [p for p in report.problems if p.severity is Severity.WARNING]
    verdict = "yes" if report.ready_for_training else "no"
    lines = [
        f"Folder: {report.folder}",
        f"Images: {report.image_count} ({report.usable_image_count} usable), {report.captioned_count} captioned",
        f"Ready for training: {verdict} ({_count(len(errors), 'error')}, {_count(len(warnings), 'warning')})",
    ]
    for title, group in (("Errors", errors), ("Warnings", warnings)):
        if group:
            lines += ["", f"{title}:"]
            for problem in group:
                lines += [f"  [{problem.code}] {problem.message}", f"      Fix: {problem.fix}"]
    lines += ["", f"Buckets (sides are multiples of {report.bucket_divisibility}):"]
    for preview in report.buckets:
        shown = ", ".join(f"{b.width}x{b.height} x{b.count}" for b in preview.buckets[:6])
        more = f", +{len(preview.buckets) - 6} more" if len(preview.buckets) > 6 else ""
        lines.append(f"  {preview.resolution}: {shown or 'no usable images'}{more}")
        if preview.upscaled_files:
            lines.append(f"      upscaled by up to {preview.max_upscale:.2f}x: {name_files(preview.upscaled_files)}")
    if report.ignored_files:
        lines += ["", f"Not training files ({len(report.ignored_files)}): {name_files(report.ignored_files)}"]
    return "\n".join(lines)


SHEET_MAX_BYTES = 750_000
"""Largest contact sheet (JPEG bytes): base64 in an MCP image part makes it at most ~1 MB."""


def labelled_sheet(tiles: list[tuple[Path | None, str]], *, max_bytes: int = SHEET_MAX_BYTES) -> bytes | None:
    """A JPEG grid of pictures, each shrunk into a square tile with its label under it, at most `max_bytes`.

    A tile whose path is None, or whose file cannot be decoded, is drawn grey with "no preview". Pillow is imported
    here, not at start-up. Quality drops first, then the tiles shrink, until the sheet fits.
    """
    if not tiles:
        return None
    columns = math.ceil(math.sqrt(len(tiles)))
    thumbs = [_thumbnail(path, 256) for path, _ in tiles]
    for side in (max(128, min(256, 1536 // columns)), 160, 128, 96, 64):
        for quality in (85, 70, 55, 40):
            data = _draw_sheet(thumbs, [label for _, label in tiles], columns, side, quality)
            if len(data) <= max_bytes:
                return data
    return data


def _thumbnail(path: Path | None, side: int) -> Any:
    """An RGB picture (EXIF-rotated, as trained) no larger than side x side; None when it cannot be read."""
    from PIL import Image, ImageOps

    if path is None:
        return None
    try:
        with Image.open(path) as img:
            img.draft("RGB", (side, side))  # JPEG: decode at 1/2-1/8 scale, far faster for big photos
            thumb = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    thumb.thumbnail((side, side))
    return thumb


def _draw_sheet(thumbs: list[Any], labels: list[str], columns: int, side: int, quality: int) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    label_h = 16
    rows = math.ceil(len(thumbs) / columns)
    cols = min(columns, len(thumbs))
    sheet = Image.new("RGB", (cols * side, rows * (side + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for i, (thumb, label) in enumerate(zip(thumbs, labels, strict=True)):
        x, y = (i % columns) * side, (i // columns) * (side + label_h)
        if thumb is None:
            draw.rectangle((x + 2, y + 2, x + side - 3, y + side - 3), fill=(200, 200, 200))
            draw.text((x + 8, y + side // 2), "no preview", fill="black", font=font)
        else:
            small = thumb.copy()
            small.thumbnail((side - 4, side - 4))  # a white gap keeps neighbouring pictures apart
            sheet.paste(small, (x + (side - small.width) // 2, y + (side - small.height) // 2))
        while label and draw.textlength(label, font=font) > side - 4:
            label = label[:-2] + "…"
        draw.text((x + 2, y + side + 2), label, fill="black", font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
