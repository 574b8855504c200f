"""Plain-text renderings of results, for people at a terminal."""

from __future__ import annotations

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
