"""LORA_MCP_UPLOAD_ON_SUCCESS: export every succeeded train job to S3, following the job event log.

`job.succeeded` events of train jobs become rows in notify.db's `uploads` table (with the follower's cursor, in one
transaction), and each row is exported with `export_lora(destination="s3")`, retried with backoff while the storage
is unreachable. A crash between the two loses nothing: the row waits for the next start. `upload_state` is what
get_job shows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from lora_mcp.errors import InvalidInput, LoraMcpError
from lora_mcp.jobs import events
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.status import StatusPart
from lora_mcp.notify.outbox import DONE, FAILED, PENDING, Outbox, outbox_path, read_rows
from lora_mcp.settings import Settings

log = logging.getLogger(__name__)

CURSOR = "uploads"
LEASE_SECONDS = 600.0
MAX_ATTEMPTS = 10


class UploadState(StatusPart):
    """Where LORA_MCP_UPLOAD_ON_SUCCESS put a job's LoRA, or why it is not there yet."""

    state: Literal["pending", "done", "failed"]
    uri: str | None = Field(None, description="The LoRA's s3:// URI once uploaded.")
    url: str | None = Field(None, description="A presigned download URL made at upload time (export_lora renews it).")
    url_expires_at: str | None = None
    attempts: int = 0
    error: str | None = Field(None, description="The last failure, while retrying or after giving up.")


@dataclass
class UploadFollower:
    """Takes succeeded train jobs into the outbox and exports the due ones."""

    manager: JobManager
    outbox: Outbox
    retry_base: float = 30.0

    def take_in(self) -> int:
        """Queue an upload for each succeeded train job after the cursor; return how many events were read."""
        store = self.manager.store
        cursor = self.outbox.read_cursor(CURSOR)
        if cursor is None:  # first run: only jobs that succeed from now on
            with self.outbox.tx() as conn:
                if self.outbox.cursor(conn, CURSOR) is None:
                    self.outbox.set_cursor(conn, CURSOR, store.max_event_seq())
            return 0
        restarted = store.max_event_seq() < cursor  # jobs.db rebuilt: its event log numbers again from 1
        cursor = 0 if restarted else cursor
        batch = store.events(after=cursor, types=(events.SUCCEEDED,), limit=500)
        if not batch:
            return 0
        with self.outbox.tx() as conn:
            now = time.time()
            for event in batch:
                if event.data.get("kind") == "train":
                    conn.execute(
                        "INSERT OR IGNORE INTO uploads (job_id, event_seq, next_attempt, updated_at) VALUES (?,?,?,?)",
                        (event.job_id, event.seq, now, now),
                    )
            moved = batch[-1].seq if restarted else max(batch[-1].seq, self.outbox.cursor(conn, CURSOR) or 0)
            self.outbox.set_cursor(conn, CURSOR, moved)
        return len(batch)

    def run_due(self) -> None:
        """Export every due pending upload (one at a time; each claimed first)."""
        while (job_id := self._claim()) is not None:
            self._export(job_id)

    def _claim(self) -> str | None:
        with self.outbox.tx() as conn:
            now = time.time()
            row = conn.execute(
                "SELECT job_id FROM uploads WHERE state = ? AND next_attempt <= ? ORDER BY event_seq LIMIT 1",
                (PENDING, now),
            ).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE uploads SET next_attempt = ? WHERE job_id = ?", (now + LEASE_SECONDS, row[0]))
            return str(row[0])

    def _export(self, job_id: str) -> None:
        from lora_mcp.training.export import export_lora

        try:
            result = export_lora(self.manager, job_id, "s3")
        except LoraMcpError as exc:
            self._failed(job_id, str(exc), final=isinstance(exc, InvalidInput))
            return
        except Exception as exc:  # an unexpected failure is recorded on the row and retried, never kills the thread
            log.exception("automatic upload of job %s failed", job_id)
            self._failed(job_id, f"{type(exc).__name__}: {exc}", final=False)
            return
        with self.outbox.tx() as conn:
            conn.execute(
                "UPDATE uploads SET state = ?, attempts = attempts + 1, uri = ?, url = ?, url_expires_at = ?, "
                "error = NULL, updated_at = ? WHERE job_id = ?",
                (DONE, result.path, result.url, result.url_expires_at, time.time(), job_id),
            )

    def _failed(self, job_id: str, error: str, *, final: bool) -> None:
        with self.outbox.tx() as conn:
            row = conn.execute("SELECT attempts FROM uploads WHERE job_id = ?", (job_id,)).fetchone()
            attempts = int(row[0]) + 1
            state = FAILED if final or attempts >= MAX_ATTEMPTS else PENDING
            delay = min(3600.0, self.retry_base * 2 ** (attempts - 1))
            conn.execute(
                "UPDATE uploads SET state = ?, attempts = ?, next_attempt = ?, error = ?, updated_at = ? "
                "WHERE job_id = ?",
                (state, attempts, time.time() + delay, error[:1000], time.time(), job_id),
            )
        log.warning("automatic upload of job %s failed (attempt %d): %s", job_id, attempts, error)


def upload_state(settings: Settings, job_id: str) -> UploadState | None:
    """The automatic S3 upload of a job (LORA_MCP_UPLOAD_ON_SUCCESS); None when there is none."""
    rows = read_rows(outbox_path(settings.home), "SELECT * FROM uploads WHERE job_id = ?", (job_id,))
    if not rows:
        return None
    row = rows[0]
    return UploadState(
        state=row["state"],
        uri=row["uri"],
        url=row["url"],
        url_expires_at=row["url_expires_at"],
        attempts=row["attempts"],
        error=row["error"],
    )
