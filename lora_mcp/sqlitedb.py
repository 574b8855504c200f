"""SQLite as lora-mcp uses it (jobs.db, notify.db): WAL, short write transactions, named migrations.

Every database is shared by several processes (the server, a second server, the CLI), so each write is one
`BEGIN IMMEDIATE` transaction: other writers wait for it (up to the busy timeout) and never interleave with it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000


def connect(path: Path) -> sqlite3.Connection:
    """A connection for any thread (callers hold their own lock), autocommit outside `transaction`, rows by name."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """One write transaction on `conn`, rolled back if the block raises."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, lock: threading.RLock, migrations: Sequence[tuple[str, str]]) -> list[str]:
    """Apply the named migrations not yet recorded in `_migrations`, in order; return their names."""
    applied: list[str] = []
    with transaction(conn, lock):
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
        for name, sql in migrations:
            if name in done:
                continue
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            applied.append(name)
    return applied
