"""Every failure class of the fake AI-Toolkit, end to end through the manager and the supervisor."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, wait_until, write_config

from lora_mcp.jobs.manager import read_child_pid
from lora_mcp.jobs.models import JobState
from lora_mcp.training.service import start_training

# FAKE_AITK_FAIL, config changes, the JobError code the classifier must give
FAILURES: list[tuple[str, dict[str, Any], str]] = [
    ("oom_load", {}, "oom"),
    ("oom_steps", {}, "oom"),
    ("model_not_found", {}, "model_not_found"),
    ("gated", {}, "gated_model"),
    ("missing_dep", {}, "missing_dependency"),
    ("config", {}, "config_error"),
    ("disk_full", {}, "disk_full"),
    ("crash", {}, "trainer_error"),
]


@pytest.mark.parametrize(("fail", "changes", "code"), FAILURES, ids=[f[0] for f in FAILURES])
def test_failure_class_reaches_the_job(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path, fail: str, changes: dict[str, Any], code: str
) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.002)
    monkeypatch.setenv("FAKE_AITK_FAIL", fail)
    monkeypatch.setenv("FAKE_AITK_FAIL_AT_STEP", "3")
    manager = new_manager(settings)
    config = write_config(settings, shared_images, steps=100, sample_every=100, **changes)
    job = wait_final(manager, start_training(manager, str(config)).job_id)
    assert job.state == JobState.FAILED, manager.tail(job.id, 20)
    assert job.exit_code == 1
    assert job.error is not None and job.error.code == code, job.error
    assert job.error.message and job.error.hint.strip()
    assert job.progress.message == job.error.message, "the status line says why it failed"
    assert job.outputs["lora_path"] is None


def test_sigkill_of_the_trainer_is_killed(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.1)
    manager = new_manager(settings)
    config = write_config(settings, shared_images, steps=200)
    job_id = start_training(manager, str(config)).job_id

    def training() -> bool:
        manager.tick()
        return manager.live_progress(manager.get(job_id)).step >= 2

    wait_until(training, what="step 2")
    child = read_child_pid(manager.get(job_id).job_dir)
    assert child is not None
    os.kill(child, signal.SIGKILL)  # not a cancel: the OOM killer, or a person with kill -9
    job = wait_final(manager, job_id, timeout=15)
    assert job.state == JobState.FAILED and job.exit_code == -signal.SIGKILL
    assert job.cancel_requested_at is None
    assert job.error is not None and job.error.code == "killed", job.error
    assert "SIGKILL" in job.error.message and "OOM killer" in job.error.hint
