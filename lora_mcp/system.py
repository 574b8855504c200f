"""What this machine offers for training: GPUs, AI-Toolkit, disk, roots. Read-only; no heavy imports."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel, Field

from lora_mcp.settings import Settings

NVIDIA_SMI_QUERY = ["--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"]


class GPUInfo(BaseModel):
    """One NVIDIA GPU as nvidia-smi reports it."""

    index: int
    name: str
    memory_total_mb: int
    memory_used_mb: int

    @property
    def memory_free_mb(self) -> int:
        """Memory not in use right now."""
        return self.memory_total_mb - self.memory_used_mb


class DiskInfo(BaseModel):
    """Free space on the file system holding a path."""

    path: str
    free_gb: float
    total_gb: float


class AIToolkitInfo(BaseModel):
    """Whether AI-Toolkit is where the settings say."""

    dir: str | None = Field(description="Configured AI-Toolkit folder (LORA_MCP_AI_TOOLKIT_DIR).")
    run_py_found: bool = Field(description="Whether <dir>/run.py exists.")
    python: str = Field(description="Interpreter that will run run.py.")
    python_found: bool


class SystemReport(BaseModel):
    """Result of system_check: everything a training run depends on, and what to fix."""

    gpus: list[GPUInfo]
    gpu_note: str
    ai_toolkit: AIToolkitInfo
    state_dir: str
    roots: list[str]
    disks: list[DiskInfo]
    problems: list[str] = Field(description="Things a person must fix before training; empty when ready.")
    job_store_notes: list[str] = Field(
        default_factory=list,
        description="Damaged copies of jobs.db moved aside when it was rebuilt from the job folders; no job was lost.",
    )


def parse_nvidia_smi_csv(text: str) -> list[GPUInfo]:
    """Parse `nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv[,noheader,nounits]`."""
    gpus: list[GPUInfo] = []
    for row in csv.reader(io.StringIO(text)):
        cells = [c.strip() for c in row]
        if len(cells) != 4 or cells[0].lower() == "index":
            continue
        try:
            mem_total = int(cells[2].split()[0])
            mem_used = int(cells[3].split()[0])
            gpus.append(GPUInfo(index=int(cells[0]), name=cells[1], memory_total_mb=mem_total, memory_used_mb=mem_used))
        except ValueError:
            continue  # "[N/A]" on some virtualised GPUs: skip the row rather than invent numbers
    return gpus


def query_gpus(timeout: float = 10.0) -> tuple[list[GPUInfo], str]:
    """Ask nvidia-smi for the GPUs; returns (gpus, note). Never raises."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], "nvidia-smi not found: no NVIDIA driver on this machine, so training cannot run here."
    try:
        proc = subprocess.run([exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi failed to run: {exc}"
    if proc.returncode != 0:
        return [], f"nvidia-smi exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:300]}"
    gpus = parse_nvidia_smi_csv(proc.stdout)
    return gpus, f"{len(gpus)} NVIDIA GPU(s) found." if gpus else "nvidia-smi listed no GPUs."


def disk_info(path: Path) -> DiskInfo:
    """Free and total space for the file system holding `path` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return DiskInfo(path=str(path), free_gb=round(usage.free / 1e9, 2), total_gb=round(usage.total / 1e9, 2))


def check_ai_toolkit(settings: Settings) -> AIToolkitInfo:
    """Where AI-Toolkit is and which python runs it."""
    python = settings.trainer_python()
    run_py = settings.ai_toolkit_dir is not None and (settings.ai_toolkit_dir / "run.py").is_file()
    return AIToolkitInfo(
        dir=str(settings.ai_toolkit_dir) if settings.ai_toolkit_dir else None,
        run_py_found=run_py,
        python=str(python),
        python_found=python.exists(),
    )


def system_check(settings: Settings, min_free_gb: float = 20.0) -> SystemReport:
    """Report GPUs, AI-Toolkit, disk and roots, with a list of problems a person can act on."""
    gpus, gpu_note = query_gpus()
    toolkit = check_ai_toolkit(settings)
    disks = [disk_info(settings.home)] + [disk_info(r) for r in settings.roots]
    problems: list[str] = []
    if not gpus:
        problems.append(f"No CUDA GPU visible ({gpu_note}) Training needs an NVIDIA GPU with a working driver.")
    if settings.ai_toolkit_dir is None:
        problems.append("LORA_MCP_AI_TOOLKIT_DIR is not set: point it at a checkout of ostris/ai-toolkit.")
    elif not toolkit.run_py_found:
        problems.append(f"No run.py in {settings.ai_toolkit_dir}: is this an ai-toolkit checkout?")
    if not toolkit.python_found:
        problems.append(f"The trainer python {toolkit.python} does not exist: set LORA_MCP_AI_TOOLKIT_PYTHON.")
    for root in settings.roots:
        if not root.is_dir():
            problems.append(f"Root {root} does not exist: create it or fix LORA_MCP_ROOTS.")
    for disk in disks:
        if disk.free_gb < min_free_gb:
            problems.append(f"Only {disk.free_gb} GB free at {disk.path}; a training run wants {min_free_gb} GB.")
    return SystemReport(
        gpus=gpus,
        gpu_note=gpu_note,
        ai_toolkit=toolkit,
        state_dir=str(settings.home),
        roots=[str(r) for r in settings.roots],
        disks=disks,
        problems=problems,
        job_store_notes=damaged_job_stores(settings),
    )


def damaged_job_stores(settings: Settings) -> list[str]:
    """A note for each damaged jobs.db that opening the job store moved aside (`jobs.db.damaged-<UTC time>`)."""
    db = settings.db_path
    return [
        f"{db.name} was damaged and rebuilt from the job folders; the damaged copy is {path} (delete it, and its "
        "-wal and -shm files, once nobody needs it)."
        for path in sorted(db.parent.glob(f"{db.name}.damaged-*"))
        if not path.name.endswith(("-wal", "-shm"))
    ]
