"""notify.db: the durable outbox that follows the job event log (jobs.db `events`) for webhooks and S3 uploads.

Each follower keeps a cursor (the last event seq it has taken in). Taking events in is one transaction here: the
rows they produce (a delivery per event and URL, an upload per succeeded train job) and the moved cursor commit
together, so a crash or kill -9 before the commit re-reads the same events and one after it finds the rows. A row is
claimed by pushing its `next_attempt` forward by a lease before the network call, so two servers sharing the state
dir never send it at the same time, and a process killed mid-call leaves a row that is retried when the lease ends.
Schema changes are named, ordered migrations, like jobs.db's.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from lora_mcp import sqlitedb
from lora_mcp.errors import StoreUnavailable

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_outbox",
        """
        CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_seq INTEGER NOT NULL,
            url TEXT NOT NULL,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            msg_id TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            delivered_at REAL,
            UNIQUE (event_seq, url)
        );
        CREATE INDEX deliveries_due ON deliveries(state, url, event_seq);
        CREATE INDEX deliveries_job ON deliveries(job_id);
        CREATE TABLE uploads (
            job_id TEXT PRIMARY KEY,
            event_seq INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            uri TEXT,
            url TEXT,
            url_expires_at TEXT,
            error TEXT,
            updated_at REAL NOT NULL
        );
        """,
    ),
]

PENDING, DELIVERED, FAILED, DONE = "pending", "delivered", "failed", "done"


def outbox_path(home: Path) -> Path:
    """Where notify.db lives: beside jobs.db in the state dir."""
    return home / "notify.db"


def read_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Rows of a query on notify.db opened read-only (no write, no migration: cheap enough for every get_job); []
    when the file or its tables do not exist yet."""
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params).fetchall())
    except sqlite3.Error:
        return []
    finally:
        conn.close()


class Outbox:
    """Thread-safe access to notify.db (short transactions, so several processes can share it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlitedb.connect(path)
            self.migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"The notification outbox {path} cannot be opened: {exc}.",
                hint="Check that the state folder (LORA_MCP_HOME) is writable, then restart the server.",
            ) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: other processes wait, never interleave)."""
        return sqlitedb.transaction(self._conn, self._lock)

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; return their names."""
        return sqlitedb.migrate(self._conn, self._lock, MIGRATIONS)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    @staticmethod
    def cursor(conn: sqlite3.Connection, name: str) -> int | None:
        """A follower's cursor inside a transaction; None before its first run."""
        row = conn.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def set_cursor(conn: sqlite3.Connection, name: str, seq: int) -> None:
        conn.execute(
            "INSERT INTO cursors (name, seq) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
            (name, seq),
        )

    def read_cursor(self, name: str) -> int | None:
        """A follower's cursor (None before its first run)."""
        with self._lock:
            return self.cursor(self._conn, name)
