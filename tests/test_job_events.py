"""The job event log: every transition recorded once, in order, durable in jobs.db; progress throttled."""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, write_config

from lora_mcp.jobs import events
from lora_mcp.jobs.kinds import LaunchSpec
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.store import JobRecord, JobStore
from lora_mcp.jobs.supervisor import LOG_NAME
from lora_mcp.jobs.worker import WorkerKind
from lora_mcp.secrets import REDACTED
from lora_mcp.settings import Settings
from lora_mcp.training.service import resume_training, start_training


def test_a_training_run_is_told_in_order(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch)
    manager = new_manager(settings)
    config = write_config(settings, shared_images, steps=100)
    job_id = start_training(manager, str(config)).job_id
    job = wait_final(manager, job_id)
    assert job.state == JobState.SUCCEEDED

    log = manager.store.events(job_id=job_id)
    types = [e.type for e in log]
    assert types[:2] == [events.QUEUED, events.STARTED]
    assert types[-1] == events.SUCCEEDED and types.count(events.SUCCEEDED) == 1
    assert [e.seq for e in log] == sorted(e.seq for e in log)
    steps = [e.data["step"] for e in log if e.type == events.PROGRESS]
    assert steps == sorted(steps) and steps[-1] == 100
    assert len(steps) > 3, "the run's steps were reported along the way"
    checkpoints = [e.data for e in log if e.type == events.CHECKPOINT]
    assert [c["step"] for c in checkpoints] == [40, 80]
    assert all(Path(c["path"]).is_file() for c in checkpoints)
    samples = [e.data["path"] for e in log if e.type == events.SAMPLE]
    assert sorted(samples) == sorted(s["path"] for s in job.outputs["samples"])
    # Every checkpoint and sample is told before the end, and the end carries the LoRA.
    assert max(types.index(events.CHECKPOINT), types.index(events.SAMPLE)) < types.index(events.SUCCEEDED)
    assert log[-1].data["outputs"]["lora_path"] == job.outputs["lora_path"]
    assert log[1].data["lane"] == "gpu:0"

    # Durable: a fresh store on the same file reads the same log.
    again = JobStore(settings.db_path)
    assert [e.seq for e in again.events(job_id=job_id)] == [e.seq for e in log]
    assert again.max_event_seq() == log[-1].seq


def test_progress_events_are_throttled(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.0)  # as fast as the fake trainer goes
    manager = new_manager(settings)
    config = write_config(settings, shared_images, steps=400)
    job = wait_final(manager, start_training(manager, str(config)).job_id)
    log = manager.store.events(job_id=job.id, types=(events.PROGRESS,))
    training = [e for e in log if e.data["phase"] == "training"]
    # Within one phase, two events are PROGRESS_EVERY apart (the last one may come at the end).
    gaps = [b.created_at - a.created_at for a, b in itertools.pairwise(training[:-1])]
    assert all(gap >= events.PROGRESS_EVERY * 0.9 for gap in gaps), gaps
    assert log[-1].data["step"] == 400


def test_cancel_of_a_queued_job_and_a_resume_tell_only_news(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.05)
    manager = new_manager(settings, grace=5)
    config = write_config(settings, shared_images, steps=100)
    first = start_training(manager, str(config)).job_id
    queued = start_training(manager, str(config)).job_id
    manager.cancel(queued)
    assert [e.type for e in manager.store.events(job_id=queued)] == [events.QUEUED, events.CANCELLED]
    # Let the first one write a checkpoint (step 40), then stop it.
    while not any(e.type == events.CHECKPOINT for e in manager.store.events(job_id=first)):
        manager.tick()
    manager.cancel(first)
    assert wait_final(manager, first).state == JobState.CANCELLED
    assert manager.store.events(job_id=first)[-1].type == events.CANCELLED

    resumed = resume_training(manager, first).job_id
    assert wait_final(manager, resumed).state == JobState.SUCCEEDED
    told = [e.data["step"] for e in manager.store.events(job_id=resumed, types=(events.CHECKPOINT,))]
    assert 40 not in told and told == [80], "the checkpoint of the earlier run is not news"


@dataclass(frozen=True)
class EchoKind(WorkerKind):
    """A worker that reports one progress line and one result, both quoting a token it was given."""

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        lines = [
            {"event": "progress", "done": 1, "total": 1, "message": f"using {os.environ['HF_TOKEN']}"},
            {"event": "result", "outputs": {"note": os.environ["HF_TOKEN"]}},
        ]
        script = "".join(f"print({json.dumps(json.dumps(line))}, flush=True);" for line in lines)
        return LaunchSpec(command=[sys.executable, "-c", script], cwd=job.job_dir)


def test_events_carry_no_secret(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    secret = "hf_" + "s3cr3t" * 4
    monkeypatch.setenv("HF_TOKEN", secret)
    manager = JobManager(settings, [EchoKind(JobKind.CAPTION, "cpu", "unused")], poll_interval=0.05)
    job = wait_final(manager, manager.submit(JobKind.CAPTION, {}).id)
    assert job.state == JobState.SUCCEEDED
    assert secret in (job.job_dir / LOG_NAME).read_text()
    told = json.dumps([e.data for e in manager.store.events(job_id=job.id)])
    assert secret not in told
    assert told.count(REDACTED) == 2, "the progress message and the result both quoted it"


def test_two_managers_record_each_transition_once(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.02)
    one, two = new_manager(settings), new_manager(settings)
    config = write_config(settings, shared_images, steps=100)
    job_id = start_training(one, str(config)).job_id
    while not two.get(job_id).state.final:
        one.tick()
        two.tick()
    log = one.store.events(job_id=job_id)
    types = [e.type for e in log]
    assert types.count(events.STARTED) == 1 and types.count(events.SUCCEEDED) == 1
    # Both managers followed the log and saw the same steps and checkpoints: each is told once.
    steps = [(e.data["phase"], e.data["step"]) for e in log if e.type == events.PROGRESS]
    assert len(steps) == len(set(steps)) and steps[-1][1] == 100
    checkpoints = [e.data["path"] for e in log if e.type == events.CHECKPOINT]
    assert len(checkpoints) == len(set(checkpoints)) == 2
