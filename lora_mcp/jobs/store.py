"""SQLite job store: WAL mode, named migrations, one row per job.

The store is the only durable record besides the job directory. Every write is a short transaction, so the
server, a second server and the CLI can share one database.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase, Progress

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_jobs",
        """
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            lane_kind TEXT NOT NULL,
            lane TEXT,
            job_dir TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            idempotency_key TEXT UNIQUE,
            resumed_from TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            supervisor_pid INTEGER,
            child_pid INTEGER,
            log_offset INTEGER NOT NULL DEFAULT 0,
            progress TEXT NOT NULL DEFAULT '{}',
            cancel_requested_at REAL,
            exit_code INTEGER,
            error TEXT,
            outputs TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX jobs_state_lane ON jobs(state, lane_kind, seq);
        """,
    ),
]


@dataclass(frozen=True)
class JobRecord:
    """One job row, decoded."""

    seq: int
    id: str
    kind: JobKind
    state: JobState
    lane_kind: str
    lane: str | None
    job_dir: Path
    params: dict[str, Any]
    idempotency_key: str | None
    resumed_from: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    supervisor_pid: int | None
    child_pid: int | None
    log_offset: int
    progress: Progress
    cancel_requested_at: float | None
    exit_code: int | None
    error: JobError | None
    outputs: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        data = dict(row)
        data["kind"] = JobKind(data["kind"])
        data["state"] = JobState(data["state"])
        data["job_dir"] = Path(data["job_dir"])
        data["params"] = json.loads(data["params"])
        data["outputs"] = json.loads(data["outputs"])
        data["progress"] = Progress.model_validate_json(data["progress"])
        data["error"] = JobError.model_validate_json(data["error"]) if data["error"] else None
        return cls(**data)


_COLUMNS = {f.name for f in fields(JobRecord)}


def _encode(name: str, value: Any) -> Any:
    if name in ("params", "outputs"):
        return json.dumps(value)
    if name in ("progress", "error"):
        return value.model_dump_json() if value is not None else None
    if name == "job_dir":
        return str(value)
    return value


def new_job_id(kind: JobKind) -> str:
    """A short, sortable, unique id such as `train-20261126-1f3a9c`."""
    return f"{kind.value}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class JobStore:
    """Thread-safe access to jobs.db."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self.migrate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; return their names."""
        applied: list[str] = []
        with self._tx() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                applied.append(name)
        return applied

    def insert(self, **values: Any) -> JobRecord:
        """Insert a queued job. With an idempotency key that exists, return the existing job instead."""
        values.setdefault("created_at", time.time())
        values.setdefault("state", JobState.QUEUED.value)
        values.setdefault("progress", Progress(phase=Phase.QUEUED))
        cols = list(values)
        with self._tx() as conn:
            key = values.get("idempotency_key")
            if key is not None:
                row = conn.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (key,)).fetchone()
                if row is not None:
                    return JobRecord.from_row(row)
            conn.execute(
                f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [_encode(c, values[c]) for c in cols],
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (values["id"],)).fetchone()
        return JobRecord.from_row(row)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord.from_row(row) if row else None

    def by_idempotency_key(self, key: str) -> JobRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (key,)).fetchone()
        return JobRecord.from_row(row) if row else None

    def update(self, job_id: str, *, only_if_state: JobState | None = None, **values: Any) -> bool:
        """Set columns of one job; with only_if_state, only when it is still in that state. True if written."""
        unknown = set(values) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown job columns: {sorted(unknown)}")
        sets = ", ".join(f"{c} = ?" for c in values)
        params = [_encode(c, v) for c, v in values.items()]
        sql = f"UPDATE jobs SET {sets} WHERE id = ?"
        params.append(job_id)
        if only_if_state is not None:
            sql += " AND state = ?"
            params.append(only_if_state.value)
        with self._tx() as conn:
            return conn.execute(sql, params).rowcount == 1

    def claim(self, job_id: str, lane: str) -> bool:
        """Atomically move a queued job onto a lane that nobody runs on, even across processes."""
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, lane = ?, started_at = ? WHERE id = ? AND state = ? "
                "AND NOT EXISTS (SELECT 1 FROM jobs WHERE state = ? AND lane = ?)",
                (
                    JobState.RUNNING.value,
                    lane,
                    time.time(),
                    job_id,
                    JobState.QUEUED.value,
                    JobState.RUNNING.value,
                    lane,
                ),
            )
            return cursor.rowcount == 1

    def list_jobs(
        self, *, kind: JobKind | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Newest first."""
        sql, params = "SELECT * FROM jobs WHERE 1=1", []
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind.value)
        if state is not None:
            sql += " AND state = ?"
            params.append(state.value)
        sql += " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, [*params, limit]).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def queued(self, lane_kind: str) -> list[JobRecord]:
        """Queued jobs of a lane kind in FIFO order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM jobs WHERE state = ? AND lane_kind = ? ORDER BY seq", (JobState.QUEUED.value, lane_kind)
            ).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def running(self) -> list[JobRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY seq", (JobState.RUNNING.value,)
            ).fetchall()
        return [JobRecord.from_row(r) for r in rows]
