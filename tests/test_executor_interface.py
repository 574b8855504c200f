"""The manager reaches a running child only through the Executor interface; `local` is that interface over the
supervisor. A recording executor (a fake that implements the real interface by delegating to LocalExecutor) shows
which calls a job's life makes, and a job launched by one executor is reattached through it by a later manager."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from jobs_fixtures import wait_final, wait_until

from lora_mcp.jobs.executors import ChildExit, Launched, LocalExecutor, executor_name, make_executor
from lora_mcp.jobs.executors.base import EXECUTOR_NAME
from lora_mcp.jobs.kinds import LaunchSpec
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.store import JobRecord
from lora_mcp.jobs.worker import WorkerKind
from lora_mcp.settings import Settings


class ScriptKind(WorkerKind):
    """A worker kind whose child runs a short Python script."""

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        return LaunchSpec(command=[sys.executable, "-c", job.params["script"]], cwd=job.job_dir)


SUCCEED = "import json\nprint(json.dumps({'event': 'result', 'outputs': {'ok': 1}}), flush=True)"
SLEEP = "import time\nprint('up', flush=True)\ntime.sleep(60)"


@dataclass
class RecordingExecutor:
    """The local executor under another name, recording every call the manager makes."""

    name: str = "recording"
    inner: LocalExecutor = field(default_factory=LocalExecutor)
    calls: list[str] = field(default_factory=list)

    def launch(self, job: JobRecord, spec: LaunchSpec) -> Launched:
        self.calls.append("launch")
        (job.job_dir / EXECUTOR_NAME).write_text(json.dumps({"executor": self.name}))
        return self.inner.launch(job, spec)

    def reattach(self, job: JobRecord) -> None:
        self.calls.append("reattach")

    def read_log(self, job: JobRecord, offset: int, limit: int) -> bytes | None:
        self.calls.append("read_log")
        return self.inner.read_log(job, offset, limit)

    def poll(self, job: JobRecord) -> ChildExit | None:
        self.calls.append("poll")
        return self.inner.poll(job)

    def signal(self, job: JobRecord, signum: int) -> None:
        self.calls.append(f"signal:{signal.Signals(signum).name}")
        self.inner.signal(job, signum)

    def child_pid(self, job: JobRecord) -> int | None:
        return self.inner.child_pid(job)

    def release(self, job: JobRecord) -> None:
        self.calls.append("release")


def manager_with(settings: Settings, executor: Any) -> JobManager:
    return JobManager(settings, [ScriptKind(JobKind.CAPTION, "cpu", "unused")], poll_interval=0.05, executor=executor)


def test_the_default_executor_is_local(settings: Settings) -> None:
    manager = manager_with(settings, None)
    assert isinstance(manager.executor, LocalExecutor)
    job = wait_final(manager, manager.submit(JobKind.CAPTION, {"script": SUCCEED}).id)
    assert job.state == JobState.SUCCEEDED and job.supervisor_pid and executor_name(job.job_dir) == "local"
    assert not (job.job_dir / EXECUTOR_NAME).exists(), "a local job's folder is as it was before executors"


def test_a_job_life_goes_through_the_executor(settings: Settings) -> None:
    executor = RecordingExecutor()
    manager = manager_with(settings, executor)
    job = wait_final(manager, manager.submit(JobKind.CAPTION, {"script": SUCCEED}).id)
    assert job.state == JobState.SUCCEEDED and job.outputs == {"ok": 1}
    assert executor.calls[0] == "launch" and executor.calls[-1] == "release"
    assert {"read_log", "poll"} <= set(executor.calls)


def test_cancel_is_a_signal_through_the_executor(settings: Settings) -> None:
    executor = RecordingExecutor()
    manager = manager_with(settings, executor)
    job = manager.submit(JobKind.CAPTION, {"script": SLEEP})
    wait_until(lambda: (manager.tick(), "up" in manager.tail(job.id, 5))[1], what="child up")
    manager.cancel(job.id)
    done = wait_final(manager, job.id, timeout=30)
    assert done.state == JobState.CANCELLED and "signal:SIGINT" in executor.calls


def test_a_later_manager_reattaches_through_the_executor_that_launched(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = RecordingExecutor()
    job = manager_with(settings, first).submit(JobKind.CAPTION, {"script": SLEEP})
    assert executor_name(job.job_dir) == "recording"
    second = RecordingExecutor()
    # The later manager's own executor is local; the job's folder names `recording`, so that one is asked for.
    monkeypatch.setattr(
        "lora_mcp.jobs.manager.make_executor", lambda name, s: second if name == "recording" else make_executor(name, s)
    )
    later = manager_with(settings, LocalExecutor())
    later.tick()
    assert second.calls[:1] == ["reattach"] and "poll" in second.calls
    later.cancel(job.id)
    assert wait_final(later, job.id, timeout=30).state == JobState.CANCELLED


def test_a_ray_job_carries_no_secret_and_no_host_paths() -> None:
    """A Ray job's runtime_env is shown on the cluster's dashboard and applies on another machine."""
    from lora_mcp.jobs.executors.ray import remote_variable

    assert all(remote_variable(n) for n in ("HF_HOME", "HF_HUB_OFFLINE", "PYTORCH_CUDA_ALLOC_CONF", "SEED"))
    hidden = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "PATH", "HOME", "CUDA_VISIBLE_DEVICES")
    assert not any(remote_variable(n) for n in hidden)
