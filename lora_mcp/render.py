"""Plain-text renderings of results, for people at a terminal."""

from __future__ import annotations

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
