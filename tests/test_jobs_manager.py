"""The job manager against the fake AI-Toolkit, run as a real subprocess under the real supervisor."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from jobs_fixtures import group_gone, new_manager, process_gone, use_fake_aitk, wait_final, wait_until, write_config
from safetensors import safe_open

from lora_mcp.jobs.kinds import LaunchSpec, Outcome
from lora_mcp.jobs.models import JobKind, JobState, Phase
from lora_mcp.jobs.status import job_status
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import Settings
from lora_mcp.training.artifacts import loss_history
from lora_mcp.training.logparse import AitkLogParser
from lora_mcp.training.service import resume_training, start_training


def test_train_job_runs_to_success_with_outputs(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch)
    manager = new_manager(settings)
    config = write_config(settings, shared_images, steps=100)
    status = start_training(manager, str(config))
    assert status.state in (JobState.QUEUED, JobState.RUNNING)
    job = wait_final(manager, status.job_id)
    assert job.state == JobState.SUCCEEDED, manager.tail(job.id, 30)
    assert job.exit_code == 0 and job.error is None
    assert job.progress.step == 100 and job.progress.phase == Phase.DONE
    outputs = job.outputs
    lora = Path(outputs["lora_path"])
    assert lora.name == "lora_a.safetensors"
    with safe_open(str(lora), framework="numpy") as handle:
        assert any(key.startswith("diffusion_model.") for key in handle.keys())  # noqa: SIM118
    assert outputs["lora_metadata"]["training_info"]["step"] == 100
    assert [c["step"] for c in outputs["checkpoints"]] == [40, 80]
    assert outputs["samples"], "samples were written every 50 steps"
    # The frozen config copy is what ran, and the child saw the lane's GPU.
    assert (job.job_dir / "config.yaml").read_bytes() == config.read_bytes()
    assert job.lane == "gpu:0"


def test_twenty_starts_on_one_lane_queue_in_order(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.2)
    manager = new_manager(settings)
    config = write_config(settings, shared_images, steps=200)
    ids = [start_training(manager, str(config)).job_id for _ in range(20)]
    jobs = [manager.get(i) for i in ids]
    assert [j.state for j in jobs] == [JobState.RUNNING] + [JobState.QUEUED] * 19
    assert [manager.queue_position(j) for j in jobs[1:]] == list(range(1, 20))
    for job_id in reversed(ids):
        manager.cancel(job_id)
    first = wait_final(manager, ids[0])
    assert first.state == JobState.CANCELLED
    assert all(manager.get(i).state == JobState.CANCELLED for i in ids)


def test_idempotency_key_returns_the_same_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.05)
    manager = new_manager(settings)
    config = write_config(settings, shared_images)
    first = start_training(manager, str(config), idempotency_key="run-1")
    again = start_training(manager, str(config), idempotency_key="run-1")
    assert again.job_id == first.job_id
    assert len(manager.store.list_jobs()) == 1
    manager.cancel(first.job_id)
    wait_final(manager, first.job_id)


def test_cancel_stops_the_trainer_and_leaves_no_process(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.1)
    manager = new_manager(settings, grace=10)
    config = write_config(settings, shared_images, steps=400)
    job_id = start_training(manager, str(config)).job_id
    wait_until(lambda: (manager.tick(), manager.live_progress(manager.get(job_id)).step >= 45)[1], what="step 45")
    job = manager.cancel(job_id)
    assert job.cancel_requested_at is not None
    job = wait_final(manager, job_id, timeout=10)
    assert job.state == JobState.CANCELLED and job.exit_code == 0
    assert "Job stopped" in "\n".join(manager.tail(job_id, 50))
    result = job_status(manager, job).training_result
    assert result is not None and not result.success and result.error == "cancelled" and result.lora_path is None
    # The supervisor exits right after recording the exit code; nothing of the job may linger.
    wait_until(lambda: process_gone(job.supervisor_pid) and group_gone(job.child_pid), 5, "no process left")
    # Resume continues from the newest checkpoint (step 40), not from zero; fast steps keep the test short.
    monkeypatch.setenv("FAKE_AITK_STEP_DELAY", "0.005")
    resumed = resume_training(manager, job_id)
    assert resumed.resumed_from == job_id
    done = wait_final(manager, resumed.job_id)
    assert done.state == JobState.SUCCEEDED
    assert done.progress.resumed_from_step == 40
    assert "RESUMING FROM" in "\n".join(manager.tail(done.id, 400))
    # The loss curve of the resumed run reaches back through the run it resumed.
    own = [step for step, _ in loss_history((done.job_dir / "log.txt").read_text())]
    lineage = [step for step, _ in loss_history(manager.lineage_log(done.id))]
    assert min(own) >= 40 and min(lineage) < 40 and max(lineage) == 400


class StubbornKind:
    """A job kind whose child ignores SIGINT, to prove the SIGKILL escalation."""

    kind = JobKind.TRAIN
    lane_kind = "gpu"

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        code = (
            "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('up', flush=True)\n"
            "time.sleep(600)"
        )
        return LaunchSpec(command=[sys.executable, "-c", code], cwd=job.job_dir)

    def make_parser(self, job: JobRecord) -> AitkLogParser:
        return AitkLogParser(job_name="stubborn")

    def outputs(self, job: JobRecord) -> dict[str, Any]:
        return {}

    def outcome(self, job: JobRecord, returncode: int | None, parser: Any, cancel_requested: bool) -> Outcome:
        return Outcome(JobState.CANCELLED if cancel_requested else JobState.FAILED)


def test_cancel_escalates_to_sigkill_after_the_grace_period(settings: Settings) -> None:
    from lora_mcp.jobs.manager import JobManager

    manager = JobManager(settings, [StubbornKind()], poll_interval=0.05, cancel_grace_seconds=1.0)
    job = manager.submit(JobKind.TRAIN, {"name": "stubborn"})
    wait_until(lambda: (manager.tick(), "up" in manager.tail(job.id, 5))[1], what="child up")
    manager.cancel(job.id)
    done = wait_final(manager, job.id, timeout=15)
    assert done.state == JobState.CANCELLED
    assert done.exit_code == -signal.SIGKILL
    assert group_gone(done.child_pid)


def test_a_new_manager_reattaches_and_finishes_the_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.03)
    first = new_manager(settings)
    config = write_config(settings, shared_images, steps=150)
    job_id = start_training(first, str(config)).job_id
    wait_until(lambda: (first.tick(), first.live_progress(first.get(job_id)).step >= 30)[1], what="step 30")
    first.tick()
    saved = first.get(job_id)
    assert saved.log_offset > 0 and saved.state == JobState.RUNNING
    # From here on `first` is never ticked again: the "server" is gone, its supervisor and trainer are not.

    second = new_manager(settings)
    second.reattach()
    job = wait_final(second, job_id)
    assert job.state == JobState.SUCCEEDED and job.progress.step == 150
    assert job.outputs["lora_path"]


def test_trainer_failure_is_classified(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch)
    monkeypatch.setenv("FAKE_AITK_FAIL", "oom_load")
    manager = new_manager(settings)
    config = write_config(settings, shared_images)
    job = wait_final(manager, start_training(manager, str(config)).job_id)
    assert job.state == JobState.FAILED and job.exit_code == 1
    assert job.error is not None and job.error.code == "oom", job.error
    assert job.error.hint
