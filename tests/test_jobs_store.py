"""The SQLite job store: migrations, idempotency, atomic lane claims across connections."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase, Progress
from lora_mcp.jobs.store import JobStore, new_job_id


def make(store: JobStore, tmp_path: Path, **extra: object):
    job_id = new_job_id(JobKind.TRAIN)
    return store.insert(id=job_id, kind="train", lane_kind="gpu", job_dir=tmp_path / job_id, params={"a": 1}, **extra)


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    assert store.migrate() == []
    store.close()
    again = JobStore(tmp_path / "jobs.db")
    names = [r[0] for r in sqlite3.connect(tmp_path / "jobs.db").execute("SELECT name FROM _migrations")]
    assert names == ["0001_jobs", "0002_events"]
    assert again.migrate() == []
    mode = sqlite3.connect(tmp_path / "jobs.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_insert_roundtrip_and_update(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = make(store, tmp_path)
    assert job.state == JobState.QUEUED and job.progress.phase == Phase.QUEUED and job.params == {"a": 1}
    error = JobError(code="oom", message="m", hint="h")
    assert store.update(job.id, state="failed", error=error, progress=Progress(step=7, loss=0.5))
    got = store.get(job.id)
    assert got is not None
    assert got.state == JobState.FAILED and got.error == error and got.progress.step == 7
    assert not store.update(job.id, only_if_state=JobState.RUNNING, state="succeeded")
    assert store.get(job.id).state == JobState.FAILED  # type: ignore[union-attr]


def test_idempotency_key_returns_the_first_job(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    first = make(store, tmp_path, idempotency_key="k1")
    second = make(store, tmp_path, idempotency_key="k1")
    assert second.id == first.id
    assert len(store.list_jobs()) == 1


def test_claim_is_exclusive_per_lane_across_connections(tmp_path: Path) -> None:
    a, b = JobStore(tmp_path / "jobs.db"), JobStore(tmp_path / "jobs.db")
    j1, j2 = make(a, tmp_path), make(a, tmp_path)
    assert [j.id for j in b.queued("gpu")] == [j1.id, j2.id]
    assert a.claim(j1.id, "gpu:0")
    assert not b.claim(j2.id, "gpu:0"), "a second job must not start on a busy lane"
    assert not b.claim(j1.id, "gpu:1"), "a claimed job must not be claimed again"
    assert b.claim(j2.id, "gpu:1")
    assert {j.lane for j in a.running()} == {"gpu:0", "gpu:1"}
