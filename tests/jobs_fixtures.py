"""Helpers for the job tests: settings that point at the fake AI-Toolkit, configs, and process checks."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from training_fixtures import TRIGGER, make_dataset

from lora_mcp.jobs.manager import JobManager, pid_alive
from lora_mcp.jobs.models import JobState
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import Settings, get_settings
from lora_mcp.training.config import LoRATrainingConfig
from lora_mcp.training.generate import generate_training_config
from lora_mcp.training.trainjob import TrainKind

FAKE_AITK = Path(__file__).parent / "fake_aitk"


def use_fake_aitk(monkeypatch: pytest.MonkeyPatch, step_delay: float = 0.01) -> Settings:
    """Point the settings at the fake AI-Toolkit, run by this interpreter (the real manager does the rest)."""
    monkeypatch.setenv("LORA_MCP_AI_TOOLKIT_DIR", str(FAKE_AITK))
    monkeypatch.setenv("LORA_MCP_AI_TOOLKIT_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_AITK_STEP_DELAY", str(step_delay))
    monkeypatch.setenv("LORA_MCP_TRAINER_ENV_PASSTHROUGH", "FAKE_AITK_*")  # the trainer's env is an allow-list
    monkeypatch.delenv("FAKE_AITK_FAIL", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    return settings


def write_config(
    settings: Settings, shared_images: Path, name: str = "lora_a", steps: int = 100, **extra: object
) -> Path:
    """A real generated config for a small real dataset inside the root."""
    root = settings.roots[0]
    dataset = root / "dataset" if (root / "dataset").is_dir() else make_dataset(root, shared_images)
    fields = config_fields(dataset, name, steps, **extra)
    generated = generate_training_config(LoRATrainingConfig(**fields), settings)
    return Path(generated.config_path)


def config_fields(dataset: Path, name: str, steps: int, **extra: object) -> dict[str, object]:
    """The fields of a small training config (checkpoints every 40 steps, samples every 50) over `dataset`."""
    return {
        "name": name,
        "dataset_folder": str(dataset),
        "trigger_word": TRIGGER,
        "steps": steps,
        "save_every": 40,
        "sample_every": 50,
        "vram_gb": 24,
        **extra,
    }


def new_manager(settings: Settings, grace: float = 5.0) -> JobManager:
    return JobManager(settings, [TrainKind()], poll_interval=0.05, cancel_grace_seconds=grace)


def wait_until(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_final(manager: JobManager, job_id: str, timeout: float = 90) -> JobRecord:
    """Drive the manager (without its thread) until the job is final."""
    deadline = time.monotonic() + timeout
    while True:
        manager.tick()
        job = manager.get(job_id)
        if job.state.final:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.state.value}: {manager.tail(job_id, 20)}"
        time.sleep(0.05)


def process_gone(pid: int | None) -> bool:
    """True when the process is gone (a zombie counts as gone)."""
    return not pid_alive(pid)


def group_gone(pgid: int | None) -> bool:
    """True when no process of the group is left."""
    if not pgid:
        return True
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return False
    return True


__all__ = [
    "FAKE_AITK",
    "JobState",
    "config_fields",
    "group_gone",
    "new_manager",
    "process_gone",
    "use_fake_aitk",
    "wait_final",
    "wait_until",
    "write_config",
]
