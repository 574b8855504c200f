"""The Ray executor end to end, against a real Ray head on 127.0.0.1 (CPU only) and the fake AI-Toolkit.

lora-mcp stays the client: its queue orders the jobs, Ray runs them; the log comes back through the Jobs API into
the job's log.txt and the same parser, so progress, failure classes and outputs read exactly as for local jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs_fixtures import use_fake_aitk, wait_final, wait_until, write_config
from ray_fixtures import free_port, ray_head, use_ray

from lora_mcp.assembly import open_manager
from lora_mcp.errors import OperationFailed
from lora_mcp.jobs import events
from lora_mcp.jobs.executors import executor_name
from lora_mcp.jobs.executors.ray import RayExecutor, probe_shared_paths
from lora_mcp.jobs.kinds import LaunchSpec
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.status import job_status
from lora_mcp.jobs.store import JobRecord, JobStore
from lora_mcp.settings import Settings
from lora_mcp.training.service import start_training

pytestmark = pytest.mark.timeout(240)
__all__ = ["ray_head"]  # the session fixture, imported so pytest finds it


def ray_manager(settings: Settings) -> JobManager:
    manager = open_manager(settings)
    manager.poll_interval = 0.05
    manager.cancel_grace_seconds = 20
    return manager


def test_a_fake_training_runs_through_ray_with_progress_and_outputs(
    ray_head: str, monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    use_ray(monkeypatch, ray_head)
    settings = use_fake_aitk(monkeypatch, step_delay=0.03)
    manager = ray_manager(settings)
    assert manager.executor.name == "ray"
    job_id = start_training(manager, str(write_config(settings, shared_images, name="ray_a", steps=100))).job_id
    steps: set[int] = set()
    wait_until(lambda: (manager.tick(), steps.add(manager.live_progress(manager.get(job_id)).step))[1] is None and
               manager.get(job_id).state.final, 120, "the job to end")  # fmt: skip
    job = manager.get(job_id)
    assert job.state == JobState.SUCCEEDED, manager.tail(job_id, 30)
    assert executor_name(job.job_dir) == "ray" and job.supervisor_pid is None and job.exit_code == 0
    assert job.progress.step == 100 and len(steps) > 3, steps  # progress arrived while it ran, not only at the end
    status = job_status(manager, job)
    assert status.outputs.lora_path and status.outputs.lora_path.endswith("ray_a.safetensors")
    assert len(status.outputs.checkpoints) == 2 and status.outputs.samples
    assert status.training_result is not None and status.training_result.model_dump()["success"] is True
    kinds = [e.type for e in manager.store.events(job_id=job_id, limit=1000)]
    assert kinds[:2] == [events.QUEUED, events.STARTED] and kinds[-1] == events.SUCCEEDED
    assert kinds.count(events.PROGRESS) > 2 and events.CHECKPOINT in kinds
    log_text = (job.job_dir / "log.txt").read_text()
    saves = [line for line in log_text.splitlines() if "Saved checkpoint to" in line]
    assert len(saves) == len(set(saves)) == 3  # steps 40 and 80 and the final file: the mirror copied each byte once


def test_an_oom_on_ray_is_classified_like_a_local_one(
    ray_head: str, monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    use_ray(monkeypatch, ray_head)
    settings = use_fake_aitk(monkeypatch)
    monkeypatch.setenv("FAKE_AITK_FAIL", "oom_steps")
    manager = ray_manager(settings)
    job_id = start_training(manager, str(write_config(settings, shared_images, name="ray_oom", steps=100))).job_id
    job = wait_final(manager, job_id, timeout=120)
    assert job.state == JobState.FAILED and job.error is not None
    assert job.error.code == "oom", job.error
    assert job.exit_code not in (None, 0)


def test_cancel_stops_the_ray_job_and_it_is_cancelled_not_succeeded(
    ray_head: str, monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    use_ray(monkeypatch, ray_head)
    settings = use_fake_aitk(monkeypatch, step_delay=0.05)
    manager = ray_manager(settings)
    job_id = start_training(manager, str(write_config(settings, shared_images, name="ray_stop", steps=400))).job_id
    wait_until(lambda: (manager.tick(), manager.live_progress(manager.get(job_id)).step >= 10)[1], 120, "step 10")
    manager.cancel(job_id)
    job = wait_final(manager, job_id, timeout=60)
    assert job.state == JobState.CANCELLED, (job.error, manager.tail(job_id, 20))
    assert job.outputs.get("lora_path") is None
    from ray.job_submission import JobSubmissionClient

    assert str(JobSubmissionClient(ray_head).get_job_status(job_id).value) == "STOPPED"


def test_a_killed_server_reattaches_to_its_ray_job_by_id(
    ray_head: str, monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    use_ray(monkeypatch, ray_head)
    settings = use_fake_aitk(monkeypatch, step_delay=0.04)
    config = write_config(settings, shared_images, name="ray_survivor", steps=150)
    cli = subprocess.Popen(
        [sys.executable, "-m", "lora_mcp", "train", str(config), "--wait"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    store = JobStore(settings.db_path, settings.jobs_dir)
    try:
        wait_until(lambda: any(j.progress.step >= 20 for j in store.running()), 120, "step 20 under the first server")
    finally:
        os.kill(cli.pid, signal.SIGKILL)  # the lora-mcp process, mid-run, no goodbye
        cli.wait()
    [job] = store.running()
    offset_at_kill = (job.job_dir / "log.txt").stat().st_size
    time.sleep(1.0)  # the Ray job keeps running with nobody watching
    manager = ray_manager(settings)
    done = wait_final(manager, job.id, timeout=120)
    assert done.state == JobState.SUCCEEDED, manager.tail(job.id, 30)
    assert done.progress.step == 150
    log_text = (done.job_dir / "log.txt").read_text()
    saves = [line for line in log_text.splitlines() if "Saved checkpoint to" in line]
    assert len(saves) == len(set(saves)) == 4  # 40, 80, 120, final: nothing lost or copied twice across the restart
    assert len(log_text.encode()) > offset_at_kill
    assert job_status(manager, done).outputs.lora_path


def test_a_job_submitted_while_another_runs_waits_its_turn(
    ray_head: str, monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    use_ray(monkeypatch, ray_head)
    settings = use_fake_aitk(monkeypatch, step_delay=0.02)
    manager = ray_manager(settings)  # one GPU lane (LORA_MCP_GPUS=0): one GPU job at a time
    first = start_training(manager, str(write_config(settings, shared_images, name="ray_one", steps=100)))
    second = start_training(manager, str(write_config(settings, shared_images, name="ray_two", steps=100)))
    assert manager.get(first.job_id).state == JobState.RUNNING
    assert second.state == JobState.QUEUED and second.queue_position == 1
    done_first = wait_final(manager, first.job_id, timeout=120)
    done_second = wait_final(manager, second.job_id, timeout=120)
    assert (done_first.state, done_second.state) == (JobState.SUCCEEDED, JobState.SUCCEEDED)
    assert done_second.started_at is not None and done_first.finished_at is not None
    assert done_second.started_at >= done_first.finished_at


def test_the_storage_probe_names_what_the_cluster_cannot_see(ray_head: str, tmp_path: Path) -> None:
    executor = RayExecutor(ray_head, gpus_per_job=0)
    here = tmp_path / "shared"
    here.mkdir()
    probe_shared_paths(executor, read=[here], write=[here])  # same machine: everything is shared
    assert not list(here.iterdir()), "the probe cleans up its marker"
    with pytest.raises(OperationFailed) as info:
        probe_shared_paths(executor, read=[tmp_path / "not-on-the-nodes"], write=[here])
    assert "not-on-the-nodes" in info.value.message and "shared mount" in (info.value.hint or "")


class TrueKind:
    """A kind whose child would be `true`; the tests below never get that far."""

    kind = JobKind.CAPTION
    lane_kind = "cpu"

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        return LaunchSpec(command=["true"], cwd=job.job_dir)


def test_an_unreachable_cluster_fails_the_job_with_what_to_check(settings: Settings) -> None:
    pytest.importorskip("ray.job_submission")
    executor = RayExecutor(f"http://127.0.0.1:{free_port()}", gpus_per_job=0)  # nothing listens there
    manager = JobManager(settings, [TrueKind()], executor=executor)  # type: ignore[list-item]
    job = manager.get(manager.submit(JobKind.CAPTION, {}).id)
    assert job.state == JobState.FAILED and job.error is not None and job.error.code == "preflight"
    assert "LORA_MCP_RAY_ADDRESS" in job.error.hint and executor.address in job.error.message


def test_the_server_starts_without_importing_ray(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom lora_mcp.server.app import build_server\nfrom lora_mcp.assembly import open_manager\n"
        "from lora_mcp.settings import get_settings\nbuild_server(); open_manager(get_settings())\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    env = {**os.environ, "LORA_MCP_EXECUTOR": "ray", "LORA_MCP_RAY_ADDRESS": "http://127.0.0.1:9"}
    env["LORA_MCP_HOME"] = str(tmp_path / "state")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
