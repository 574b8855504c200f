"""jobs.db is an index of the job folders: a damaged, emptied or deleted one is rebuilt from them, losing no job.

Real SQLite files, real job folders, real supervised processes; the kill -9 tests SIGKILL a real `lora-mcp serve`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, wait_until, write_config
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from test_jobs_mcp import follow, parent_pid
from unprivileged import unprivileged

from lora_mcp.errors import StoreUnavailable
from lora_mcp.jobs import records
from lora_mcp.jobs.kinds import LaunchSpec, Outcome
from lora_mcp.jobs.manager import JobManager, pid_alive
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.store import JobRecord, JobStore
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings
from lora_mcp.system import system_check
from lora_mcp.training.logparse import AitkLogParser
from lora_mcp.training.service import start_training


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PARKED = "parked"
"""A lane kind with no lanes: jobs submitted to it stay queued, for tests of the store alone."""


class QuickKind:
    """A job kind whose child sleeps `params["sleep"]` seconds and exits `params["rc"]`."""

    kind = JobKind.CAPTION
    lane_kind = "cpu"

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        code = "import sys, time; time.sleep(float(sys.argv[1])); print('done', flush=True); sys.exit(int(sys.argv[2]))"
        args = [str(job.params.get("sleep", 0)), str(job.params.get("rc", 0))]
        return LaunchSpec(command=[sys.executable, "-c", code, *args], cwd=job.job_dir)

    def make_parser(self, job: JobRecord) -> AitkLogParser:
        return AitkLogParser(job_name="quick")

    def outputs(self, job: JobRecord) -> dict[str, Any]:
        return {}

    def outcome(self, job: JobRecord, returncode: int | None, parser: Any, cancel_requested: bool) -> Outcome:
        if cancel_requested:
            return Outcome(JobState.CANCELLED)
        return Outcome(JobState.SUCCEEDED if returncode == 0 else JobState.FAILED, outputs={"rc": returncode})


def quick_manager(settings: Settings) -> JobManager:
    return JobManager(settings, [QuickKind()], poll_interval=0.05, cancel_grace_seconds=5)


def ids_newest_first(store: JobStore) -> list[str]:
    return [job.id for job in store.list_jobs()]


# -- the job folder holds everything ------------------------------------------------------------------------------


def test_job_folder_records_submit_launch_and_end(settings: Settings) -> None:
    manager = quick_manager(settings)
    job = manager.submit(JobKind.CAPTION, {"rc": 3}, idempotency_key="k1")
    done = wait_final(manager, job.id, timeout=30)
    assert done.state == JobState.FAILED and done.exit_code == 3
    written = records.read_job(done.job_dir)
    assert written == records.JobFile(done.id, JobKind.CAPTION, "cpu", {"rc": 3}, "k1", None, done.created_at)
    launch = records.read_launch(done.job_dir)
    assert launch is not None and launch.lane == done.lane == "cpu:0"
    assert launch.supervisor_pid == done.supervisor_pid and launch.started_at == done.started_at
    assert json.loads((done.job_dir / "command.json").read_text())["command"][0] == sys.executable
    result = records.read_result(done.job_dir)
    assert result is not None and result.state == JobState.FAILED and result.exit_code == 3
    assert result.finished_at == done.finished_at and result.outputs == {"rc": 3} and result.progress == done.progress


def test_a_job_cancelled_while_queued_records_its_end(settings: Settings) -> None:
    manager = quick_manager(settings)
    job = manager.submit(JobKind.CAPTION, {}, lane_kind=PARKED)
    cancelled = manager.cancel(job.id)
    result = records.read_result(job.job_dir)
    assert result is not None and result.state == JobState.CANCELLED
    assert result.cancel_requested_at == cancelled.cancel_requested_at == cancelled.finished_at


# -- rebuild ------------------------------------------------------------------------------------------------------


def damage(db: Path, how: str) -> None:
    """Damage a closed jobs.db: half-truncated, emptied to 0 bytes, or deleted; -wal and -shm go in every case."""
    if how == "half":
        with sqlite3.connect(db) as conn:  # everything into the main file first, so half of it is really missing
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with open(db, "r+b") as fh:
            fh.truncate(db.stat().st_size // 2)
    elif how == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def moved_aside(settings: Settings) -> list[Path]:
    """The damaged databases moved aside in the state dir (without their -wal and -shm)."""
    found = settings.home.glob("jobs.db.damaged-*")
    return [path for path in found if not path.name.endswith(("-wal", "-shm"))]


@pytest.mark.parametrize("how", ["half", "empty", "deleted"])
def test_every_end_state_survives_a_lost_database(
    settings: Settings, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = quick_manager(settings)
    ok = wait_final(manager, manager.submit(JobKind.CAPTION, {"rc": 0}).id, timeout=30)
    bad = wait_final(manager, manager.submit(JobKind.CAPTION, {"rc": 1}).id, timeout=30)
    dropped = manager.cancel(manager.submit(JobKind.CAPTION, {"n": 1}, lane_kind=PARKED).id)
    queued = manager.submit(JobKind.CAPTION, {"n": 2}, lane_kind=PARKED)
    before = manager.store.list_jobs()
    manager.store.close()
    damage(settings.db_path, how)

    store = JobStore(settings.db_path, settings.jobs_dir)
    after = store.list_jobs()
    assert [j.id for j in after] == [queued.id, dropped.id, bad.id, ok.id]
    assert [(j.kind, j.state, j.params, j.created_at) for j in after] == [
        (j.kind, j.state, j.params, j.created_at) for j in before
    ]
    assert [j.exit_code for j in after] == [None, None, 1, 0]
    assert [(j.lane, j.outputs, j.finished_at, j.progress) for j in after[2:]] == [
        (j.lane, j.outputs, j.finished_at, j.progress) for j in before[2:]
    ]
    assert store.imported == [ok.id, bad.id, dropped.id, queued.id]
    moved = moved_aside(settings)
    if how == "half":
        assert store.moved_aside in moved and len(moved) == 1
        assert str(store.moved_aside) in caplog.text and "damaged" in caplog.text
        assert store.recovery and str(store.moved_aside) in store.recovery and "4 job(s)" in store.recovery
        assert system_check(settings).job_store_notes == [
            f"jobs.db was damaged and rebuilt from the job folders; the damaged copy is {store.moved_aside} "
            "(delete it, and its -wal and -shm files, once nobody needs it)."
        ]
    else:
        assert moved == [] and store.moved_aside is None
        assert system_check(settings).job_store_notes == []
    store.close()

    again = JobStore(settings.db_path, settings.jobs_dir)
    assert again.imported == [] and again.recovery is None
    assert ids_newest_first(again) == [queued.id, dropped.id, bad.id, ok.id]


def test_a_job_that_ended_while_no_server_ran_is_finished_from_its_folder(settings: Settings) -> None:
    first = quick_manager(settings)
    job = first.submit(JobKind.CAPTION, {"sleep": 0.2, "rc": 0})  # launched by submit; never ticked again
    wait_until(lambda: (job.job_dir / "exit_code.json").exists(), 30, "the child to end")
    first.store.close()
    damage(settings.db_path, "deleted")

    second = quick_manager(settings)
    imported = second.get(job.id)
    assert imported.state == JobState.RUNNING and imported.lane == "cpu:0" and imported.log_offset == 0
    done = wait_final(second, job.id, timeout=30)
    assert done.state == JobState.SUCCEEDED and done.exit_code == 0 and done.outputs == {"rc": 0}


def test_a_healthy_database_missing_some_jobs_gets_them_back_in_creation_order(settings: Settings) -> None:
    manager = quick_manager(settings)
    ids = [manager.submit(JobKind.CAPTION, {"n": n}, lane_kind=PARKED).id for n in range(4)]
    with manager.store._tx() as conn:
        conn.execute("DELETE FROM jobs WHERE id IN (?, ?)", (ids[0], ids[2]))
    manager.store.close()

    store = JobStore(settings.db_path, settings.jobs_dir)
    assert store.imported == [ids[0], ids[2]] and store.moved_aside is None
    assert ids_newest_first(store) == ids[::-1]
    assert [j.id for j in store.queued(PARKED)] == ids, "FIFO order is creation order again"
    assert JobStore(settings.db_path, settings.jobs_dir).imported == []


def test_folders_from_before_job_json_are_recovered(settings: Settings) -> None:
    jobs = settings.jobs_dir
    jobs.mkdir(parents=True)

    def legacy(name: str, files: dict[str, str], age: float = 3600) -> Path:
        folder = jobs / name
        folder.mkdir()
        (folder / "log.txt").write_text("")
        for file, text in files.items():
            (folder / file).write_text(text)
        os.utime(folder, (time.time() - age, time.time() - age))
        return folder

    exit_ok = json.dumps({"returncode": 0, "started_at": 1.0, "finished_at": 2.0})
    command = json.dumps({"command": ["python", "run.py"], "cwd": "/x"})
    legacy(
        "train-20250101-120000-abcdef",
        {"params.json": '{"config": "a"}', "command.json": command, "exit_code.json": exit_ok},
    )
    legacy("caption-20250101-120500-abc123", {"params.json": '{"backend": "ollama"}'})
    legacy("review-20250101-110000-fedcba", {"params.json": "{}", "command.json": command})
    legacy("train-20250101-130000-000000", {"params.json": "{}"}, age=0)  # a submit in progress elsewhere
    legacy("not-a-job", {"params.json": "{}"})

    store = JobStore(settings.db_path, jobs)
    assert store.imported == [
        "review-20250101-110000-fedcba",
        "train-20250101-120000-abcdef",
        "caption-20250101-120500-abc123",
    ]
    review, train, caption = (store.get(i) for i in store.imported)
    assert review is not None and train is not None and caption is not None
    assert (review.kind, review.state, review.lane_kind) == (JobKind.REVIEW, JobState.RUNNING, "cpu")
    assert (train.kind, train.state, train.params) == (JobKind.TRAIN, JobState.RUNNING, {"config": "a"})
    assert train.started_at == 1.0 and train.lane is None
    assert (caption.kind, caption.state, caption.lane_kind) == (JobKind.CAPTION, JobState.QUEUED, "cpu")
    assert train.created_at == time.mktime((2025, 1, 1, 12, 0, 0, 0, 0, -1))


# -- submit leaves no orphan folder -------------------------------------------------------------------------------


def test_losing_an_idempotency_race_leaves_no_orphan_folder(settings: Settings) -> None:
    winner_side, loser_side = quick_manager(settings), quick_manager(settings)  # two processes' managers
    won: list[JobRecord] = []

    def meanwhile(_job_dir: Path) -> None:
        # The loser passed its own "key already used?" check; now the other caller submits the same key.
        won.append(winner_side.submit(JobKind.CAPTION, {"n": 1}, idempotency_key="same", lane_kind=PARKED))

    lost = loser_side.submit(JobKind.CAPTION, {"n": 2}, idempotency_key="same", lane_kind=PARKED, prepare=meanwhile)
    assert lost.id == won[0].id
    assert sorted(p.name for p in settings.jobs_dir.iterdir()) == [won[0].id]
    assert JobStore(settings.db_path, settings.jobs_dir).imported == []


def test_a_failed_submit_leaves_no_folder(settings: Settings) -> None:
    manager = quick_manager(settings)

    def broken(_job_dir: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        manager.submit(JobKind.CAPTION, {}, prepare=broken)
    manager.store.close()  # the insert itself fails now
    with pytest.raises(sqlite3.ProgrammingError):
        manager.submit(JobKind.CAPTION, {})
    assert list(settings.jobs_dir.iterdir()) == []


# -- a database that cannot be opened -----------------------------------------------------------------------------


def serve_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "LORA_MCP_HOME": str(settings.home)}


def test_serve_stops_with_one_clear_line_when_jobs_db_is_a_folder(settings: Settings) -> None:
    settings.db_path.mkdir(parents=True)
    with pytest.raises(StoreUnavailable, match="Cannot open the job database"):
        JobStore(settings.db_path, settings.jobs_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "lora_mcp", "serve"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=serve_env(settings),
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: Cannot open the job database {settings.db_path}: ")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "LORA_MCP_HOME" in proc.stderr and settings.db_path.is_dir(), "a folder is never moved aside"


def test_serve_stops_with_one_clear_line_when_the_state_dir_is_read_only(settings: Settings) -> None:
    settings.ensure_dirs()
    settings.home.chmod(0o555)
    try:
        proc = subprocess.run(
            unprivileged([sys.executable, "-m", "lora_mcp", "serve"]),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=serve_env(settings),
            timeout=60,
        )
    finally:
        settings.home.chmod(0o755)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: Cannot open the job database {settings.db_path}: ")


@pytest.mark.anyio
async def test_an_mcp_session_survives_an_unopenable_store(settings: Settings) -> None:
    settings.ensure_dirs()
    settings.db_path.mkdir()
    async with Client(build_server(settings)) as client:
        listed = await client.call_tool("list_jobs", {})
        assert listed.is_error
        assert f"Cannot open the job database {settings.db_path}" in listed.content[0].text  # type: ignore[union-attr]
        checked = await client.call_tool("system_check", {})
        assert not checked.is_error


# -- kill -9 of a real server, then a damaged database ------------------------------------------------------------


def kill_group(pgid: int | None) -> None:
    """Leave no trainer behind when a test fails half-way."""
    if pgid and pid_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["half", "empty", "deleted"])
async def test_sigkilled_server_and_damaged_database_lose_no_job(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path, tmp_path: Path, how: str
) -> None:
    monkeypatch.setenv("LORA_MCP_TRAINER_ENV_PASSTHROUGH", "FAKE_AITK_*")
    settings = use_fake_aitk(monkeypatch, step_delay=0.005)
    quick = str(write_config(settings, shared_images, name="quick", steps=100))
    # A succeeded and a failed job, run to their end by a manager in this process.
    manager = new_manager(settings)
    succeeded = wait_final(manager, start_training(manager, quick).job_id)
    monkeypatch.setenv("FAKE_AITK_FAIL", "oom_load")
    failed = wait_final(manager, start_training(manager, quick).job_id)
    monkeypatch.delenv("FAKE_AITK_FAIL")
    manager.store.close()
    assert (succeeded.state, failed.state) == (JobState.SUCCEEDED, JobState.FAILED)

    # A running job, and one cancelled while queued behind it, in a stdio server that is then SIGKILLed.
    slow = str(write_config(settings, shared_images, name="slow", steps=150))
    env = {**os.environ, "FAKE_AITK_STEP_DELAY": "0.04"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "lora_mcp", "serve"], env=env)
    running_id = ""
    try:
        running_id, queued_id, before = await start_then_sigkill(params, slow, settings)
        damage(settings.db_path, how)
        stderr_path = tmp_path / "server.stderr"
        with open(stderr_path, "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                listed = await client.call_tool("list_jobs", {})
                jobs = listed.structured_content["jobs"]  # type: ignore[index]
                status = await follow(client, running_id, [])
        assert [j["job_id"] for j in jobs] == [queued_id, running_id, failed.id, succeeded.id]
        assert [j["kind"] for j in jobs] == ["train"] * 4
        assert [j["state"] for j in jobs] == ["cancelled", jobs[1]["state"], "failed", "succeeded"]
        assert jobs[1]["state"] in ("running", "succeeded")
        assert jobs[2]["error"]["code"] == "oom" and jobs[3]["outputs"]["lora_path"].endswith("quick.safetensors")
        # The running job was tailed again from its log and its supervisor's exit code.
        assert status["state"] == "succeeded" and status["step"] == 150, status
        assert status["outputs"]["lora_path"].endswith("slow.safetensors")

        store = JobStore(settings.db_path, settings.jobs_dir)  # a second start imports nothing twice
        assert store.imported == [] and store.recovery is None
        rebuilt = {j.id: j for j in store.list_jobs()}
        assert len(rebuilt) == 4
        assert rebuilt[succeeded.id].params == succeeded.params and rebuilt[failed.id].params == failed.params
        assert all(rebuilt[i].params == before[i].params for i in (running_id, queued_id))
        log = stderr_path.read_text()
        moved = moved_aside(settings)
        if how == "half":
            assert len(moved) == 1 and f"moved it aside to {moved[0]}" in log, log
        else:
            assert moved == []
        assert f"jobs.db did not list 4 job folder(s) in {settings.jobs_dir}" in log, log
        assert f"reattached to job {running_id} at log offset 0" in log, log
    finally:
        record = JobStore(settings.db_path).get(running_id) if running_id else None
        kill_group(record.child_pid if record else None)


async def start_then_sigkill(
    params: StdioServerParameters, config: str, settings: Settings
) -> tuple[str, str, dict[str, JobRecord]]:
    """Start a job and queue-then-cancel a second one through a stdio server; SIGKILL it mid-run."""
    killed = False
    try:
        async with Client(params) as client:
            started = await client.call_tool("start_training", {"config_path": config})
            running_id = started.structured_content["job_id"]  # type: ignore[index]
            queued = await client.call_tool("start_training", {"config_path": config})
            queued_id = queued.structured_content["job_id"]  # type: ignore[index]
            dropped = await client.call_tool("cancel_job", {"job_id": queued_id})
            assert dropped.structured_content["state"] == "cancelled"  # type: ignore[index]
            with anyio.fail_after(60):
                step = 0
                while step < 20:
                    status = await client.call_tool("wait_for_job", {"job_id": running_id, "timeout_seconds": 1})
                    step = status.structured_content["step"]  # type: ignore[index]
            before = {j.id: j for j in JobStore(settings.db_path).list_jobs()}
            os.kill(parent_pid(before[running_id].supervisor_pid or 0), signal.SIGKILL)  # no goodbye
            killed = True
            await client.call_tool("system_check", {})
    except Exception:  # the client loses its server; that is the point
        assert killed, "the client failed before the server was killed"
    return running_id, queued_id, before
