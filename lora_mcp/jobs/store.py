"""SQLite job store: WAL mode, named migrations, one row per job.

jobs.db is an index of the job folders, which are the source of truth (`lora_mcp.jobs.records`). Opening the store
checks the file (`PRAGMA quick_check`): a damaged one is moved aside as `jobs.db.damaged-<UTC time>` and a fresh one
is built. Then every job folder the database does not list is imported, so a deleted, emptied or damaged jobs.db
loses no job. A database that cannot be opened at all (read-only folder, a folder in its place) raises
`StoreUnavailable`. Every write is a short transaction, so the server, a second server and the CLI can share one
database.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lora_mcp import sqlitedb
from lora_mcp.errors import StoreUnavailable
from lora_mcp.jobs import records
from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase, Progress

log = logging.getLogger(__name__)

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
    (
        "0002_events",
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            key TEXT
        );
        CREATE INDEX events_job ON events(job_id, seq);
        CREATE UNIQUE INDEX events_once ON events(job_id, type, key)
        """,
    ),
]

Event = tuple[str, dict[str, Any]]
"""An event to record with a write: its type (`lora_mcp.jobs.events.EVENT_TYPES`) and its JSON data."""


@dataclass(frozen=True)
class JobEvent:
    """One row of the event log: what happened to a job, in the order it happened (`seq` only grows)."""

    seq: int
    job_id: str
    type: str
    data: dict[str, Any]
    created_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobEvent:
        return cls(row["seq"], row["job_id"], row["type"], json.loads(row["data"]), row["created_at"])


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


def _insert_row(conn: sqlite3.Connection, values: dict[str, Any]) -> None:
    cols = list(values)
    unknown = set(cols) - _COLUMNS
    if unknown:
        raise ValueError(f"unknown job columns: {sorted(unknown)}")
    conn.execute(
        f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [_encode(c, values[c]) for c in cols],
    )


def _renumber(conn: sqlite3.Connection) -> None:
    """Make seq follow created_at again after older jobs were imported into a database that lists newer ones."""
    order = [row[0] for row in conn.execute("SELECT seq FROM jobs ORDER BY created_at, seq")]
    if order == sorted(order):
        return
    conn.execute("UPDATE jobs SET seq = -seq")  # two steps: seq is unique at every statement
    conn.executemany("UPDATE jobs SET seq = ? WHERE seq = ?", [(new, -old) for new, old in enumerate(order, 1)])


def new_job_id(kind: JobKind) -> str:
    """A short, sortable, unique id such as `train-20261126-1f3a9c`."""
    return f"{kind.value}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _close(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        conn.close()


class _Damaged(Exception):
    """jobs.db is not a sound SQLite database (SQLITE_CORRUPT, SQLITE_NOTADB or a failed quick_check)."""


class JobStore:
    """Thread-safe access to jobs.db."""

    def __init__(self, path: Path, jobs_dir: Path | None = None) -> None:
        """Open jobs.db (rebuilding it when damaged); with `jobs_dir`, import the job folders it does not list."""
        self.path = path
        self._lock = threading.RLock()
        self.damage: str | None = None
        """What was wrong with jobs.db when this store opened it; None when it was sound."""
        self.moved_aside: Path | None = None
        """Where the damaged jobs.db was moved (its -wal and -shm beside it with the same prefix)."""
        self.last_event_seq = 0
        """The newest event seq this process wrote or saw: a cheap "anything new?" for readers in this process."""
        self.imported: list[str] = []
        """Ids of the jobs this open re-imported from their folders, oldest first."""
        self._open()
        if jobs_dir is not None:
            self.imported = self.import_job_dirs(jobs_dir)

    @property
    def recovery(self) -> str | None:
        """What opening the store repaired, as a sentence for people; None when jobs.db was sound and complete."""
        parts = []
        if self.moved_aside is not None:
            parts.append(f"{self.path.name} was damaged ({self.damage}) and was moved aside to {self.moved_aside}")
        if self.imported:
            parts.append(f"{len(self.imported)} job(s) were re-imported from their job folders")
        return "; ".join(parts) + "." if parts else None

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connect()
            return
        except _Damaged as exc:
            self.damage = str(exc)
        except (OSError, sqlite3.Error) as exc:  # cannot open, read-only, locked, I/O: not the file's fault
            raise self._unavailable(exc) from None
        self.moved_aside = self._move_aside()
        log.warning(
            "%s was damaged (%s): moved it aside to %s and building a fresh one from the job folders",
            self.path,
            self.damage,
            self.moved_aside,
        )
        try:
            self._connect()
        except (_Damaged, OSError, sqlite3.Error) as exc:
            raise self._unavailable(exc) from None

    def _connect(self) -> None:
        """Connect, check and migrate; raise _Damaged when the file itself is broken."""
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlitedb.connect(self.path)
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise _Damaged("; ".join(problems[:3]))
            self._conn = conn
            self.migrate()
        except sqlite3.OperationalError:
            _close(conn)
            raise
        except sqlite3.DatabaseError as exc:  # Python maps SQLITE_CORRUPT and SQLITE_NOTADB here
            _close(conn)
            raise _Damaged(str(exc)) from exc
        except BaseException:
            _close(conn)
            raise

    def _move_aside(self) -> Path:
        """Rename the damaged jobs.db (and its -wal and -shm) to jobs.db.damaged-<UTC time>; return the new path."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
        try:
            for suffix in ("", "-wal", "-shm"):  # a stale -wal left beside a fresh database would be replayed into it
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(f"{target}{suffix}")
        except OSError as exc:
            raise StoreUnavailable(
                f"The job database {self.path} is damaged ({self.damage}) and could not be moved aside: {exc}.",
                hint=f"Move {self.path} and its -wal and -shm files out of {self.path.parent} (the job folders "
                "hold everything needed to rebuild it), then start lora-mcp again.",
            ) from None
        return target

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"Cannot open the job database {self.path}: {exc}.",
            hint=f"Make sure {self.path.parent} is a writable folder and {self.path} is a SQLite file or absent "
            "(not a folder), or set LORA_MCP_HOME to a writable folder; then start lora-mcp again.",
        )

    def import_job_dirs(self, jobs_dir: Path) -> list[str]:
        """Add the jobs whose folders in `jobs_dir` jobs.db does not list; return their ids, oldest first.

        Cheap when nothing is missing (one listdir and one SELECT) and safe from several processes at once.
        """
        try:
            names = os.listdir(jobs_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot list the job folders in %s: %s", jobs_dir, exc)
            return []
        now = time.time()
        with self._tx() as conn:
            known = {row[0]: row[1] for row in conn.execute("SELECT id, idempotency_key FROM jobs")}
            rows = [row for name in names if name not in known and (row := records.recover(jobs_dir / name, now))]
            rows.sort(key=lambda row: (row["created_at"], row["id"]))
            keys = {key for key in known.values() if key is not None}
            for row in rows:
                if row["idempotency_key"] in keys:
                    row["idempotency_key"] = None  # jobs.db already gives that key to another job
                elif row["idempotency_key"] is not None:
                    keys.add(row["idempotency_key"])
                _insert_row(conn, row)
            if rows and known:
                _renumber(conn)
        if rows:
            log.warning(
                "jobs.db did not list %d job folder(s) in %s: re-imported %s",
                len(rows),
                jobs_dir,
                ", ".join(row["id"] for row in rows),
            )
        return [row["id"] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlitedb.transaction(self._conn, self._lock)

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; return their names."""
        return sqlitedb.migrate(self._conn, self._lock, MIGRATIONS)

    def insert(self, *, event: Event | None = None, **values: Any) -> JobRecord:
        """Insert a queued job. With an idempotency key that exists, return the existing job instead.

        `event` is recorded in the same transaction, only when this call inserted the job.
        """
        values.setdefault("created_at", time.time())
        values.setdefault("state", JobState.QUEUED.value)
        values.setdefault("progress", Progress(phase=Phase.QUEUED))
        with self._tx() as conn:
            key = values.get("idempotency_key")
            if key is not None:
                row = conn.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (key,)).fetchone()
                if row is not None:
                    return JobRecord.from_row(row)
            # Another process may have imported this job from its folder between job.json and this insert.
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (values["id"],)).fetchone()
            if row is None:
                _insert_row(conn, values)
                if event is not None:
                    self._add_event(conn, values["id"], event)
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

    def update(
        self, job_id: str, *, only_if_state: JobState | None = None, event: Event | None = None, **values: Any
    ) -> bool:
        """Set columns of one job; with only_if_state, only when it is still in that state. True if written.

        `event` is recorded in the same transaction, only when the row was written: a state change and its event
        happen together or not at all, whichever of several managers makes it.
        """
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
            written = conn.execute(sql, params).rowcount == 1
            if written and event is not None:
                self._add_event(conn, job_id, event)
            return written

    def claim(self, job_id: str, lane: str, *, event: Event | None = None) -> bool:
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
            if cursor.rowcount == 1 and event is not None:
                self._add_event(conn, job_id, (event[0], {**event[1], "lane": lane}))
            return cursor.rowcount == 1

    # -- the event log ----------------------------------------------------------------------------------------

    def _add_event(self, conn: sqlite3.Connection, job_id: str, event: Event, key: str | None = None) -> int:
        kind, data = event
        cursor = conn.execute(
            "INSERT OR IGNORE INTO events (job_id, type, data, created_at, key) VALUES (?, ?, ?, ?, ?)",
            (job_id, kind, json.dumps(data), time.time(), key),
        )
        if cursor.rowcount != 1:
            return 0  # told already (by another manager following the same job)
        seq = int(cursor.lastrowid or 0)
        # Set before COMMIT, but readers query under the same lock, which this transaction holds until it commits.
        self.last_event_seq = max(self.last_event_seq, seq)
        return seq

    def add_event(self, job_id: str, kind: str, data: dict[str, Any], *, key: str | None = None) -> int:
        """Append one event to the log; return its seq, or 0 when one of this job and type already has this `key`.

        The key makes an event that several managers may see (a step, a checkpoint's path) recorded once.
        """
        with self._tx() as conn:
            return self._add_event(conn, job_id, (kind, data), key)

    def events(
        self, *, after: int = 0, job_id: str | None = None, types: tuple[str, ...] = (), limit: int = 1000
    ) -> list[JobEvent]:
        """Events with seq > `after`, oldest first (of one job, of some types, when asked)."""
        sql, params = "SELECT * FROM events WHERE seq > ?", list[Any]([after])
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        if types:
            sql += f" AND type IN ({', '.join('?' * len(types))})"
            params.extend(types)
        sql += " ORDER BY seq LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, [*params, limit]).fetchall()
        return [JobEvent.from_row(r) for r in rows]

    def max_event_seq(self) -> int:
        """The newest event's seq in the database (written by any process), 0 when there is none."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(seq) FROM events").fetchone()
        seq = int(row[0] or 0)
        self.last_event_seq = max(self.last_event_seq, seq)
        return seq

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
