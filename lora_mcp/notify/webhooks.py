"""Signed webhooks from the job event log: take events into the outbox, deliver them in order with retries.

Payload `{"type", "timestamp", "data"}` (data: the event's data plus `job_id` and `seq`), signed per the Standard
Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`). The body and the
id (`evt_<seq>_<job id>`) are fixed when the event is taken in, so every retry is the same message and a receiver
de-duplicates by `webhook-id`. Each URL gets its events in log order: a failing delivery holds back the later ones
for that URL (not for the others) until it succeeds or runs out of attempts. Progress is thinned per job to one
every LORA_MCP_WEBHOOK_PROGRESS_EVERY seconds (the newest kept; after a restart one extra may pass).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lora_mcp.jobs import events
from lora_mcp.jobs.store import JobEvent, JobStore
from lora_mcp.notify.outbox import DELIVERED, FAILED, PENDING, Outbox
from lora_mcp.settings import Settings

log = logging.getLogger(__name__)

CURSOR = "webhooks"
LEASE_SECONDS = 60.0
"""How long a claimed delivery stays claimed: a process killed mid-call leaves it to be retried after this."""
TIMEOUT_SECONDS = 10.0
BATCH = 500


@dataclass
class Backoff:
    """Retry delays: `base * 2**(attempt-1)` capped at `cap`; a delivery fails for good after `max_attempts`."""

    base: float = 2.0
    cap: float = 3600.0
    max_attempts: int = 15

    def delay(self, attempts: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempts - 1)))


def message_id(event: JobEvent) -> str:
    """The webhook-id of an event: stable across retries and restarts."""
    return f"evt_{event.seq}_{event.job_id}"


def payload(event: JobEvent) -> str:
    """The JSON body sent for an event."""
    stamp = datetime.fromtimestamp(event.created_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = {"job_id": event.job_id, "seq": event.seq, **event.data}
    return json.dumps({"type": event.type, "timestamp": stamp, "data": data}, separators=(",", ":"), default=str)


def sign_headers(secret: str | None, msg_id: str, body: str, now: float) -> dict[str, str]:
    """Standard Webhooks headers for one attempt (unsigned when no secret is set)."""
    stamp = datetime.fromtimestamp(int(now), UTC)
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(int(now))}
    if secret:
        from standardwebhooks import Webhook

        headers["webhook-signature"] = Webhook(secret).sign(msg_id, stamp, body)
    return headers


@dataclass
class WebhookFollower:
    """Takes new events into the outbox and delivers what is due."""

    settings: Settings
    store: JobStore
    outbox: Outbox
    backoff: Backoff = field(default_factory=Backoff)
    _last_progress: dict[str, float] = field(default_factory=dict)
    _client: Any = None

    def __post_init__(self) -> None:
        import standardwebhooks  # noqa: F401 - imported now, not on the first event (about 0.3 s)

        self._http()

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
        return self._client

    def take_in(self) -> int:
        """Add deliveries for the events after the cursor; return how many events were taken in."""
        cursor = self.outbox.read_cursor(CURSOR)
        if cursor is None:  # first run: webhooks start now, not with the whole history
            with self.outbox.tx() as conn:
                if self.outbox.cursor(conn, CURSOR) is None:
                    self.outbox.set_cursor(conn, CURSOR, self.store.max_event_seq())
            return 0
        restarted = self.store.max_event_seq() < cursor  # jobs.db was rebuilt and numbers again from 1
        if restarted:
            log.warning("jobs.db's event log restarted below the webhook cursor %s: following it from 0", cursor)
            cursor = 0
        batch = self.store.events(after=cursor, limit=BATCH)
        if not batch:
            return 0
        with self.outbox.tx() as conn:
            now = time.time()
            for event in batch:
                if not self._wanted(event):
                    continue
                body = payload(event)
                for url in self.settings.webhook_urls:
                    conn.execute(
                        "INSERT OR IGNORE INTO deliveries (event_seq, url, job_id, type, msg_id, body, next_attempt, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (event.seq, url, event.job_id, event.type, message_id(event), body, now, now),
                    )
            moved = batch[-1].seq if restarted else max(batch[-1].seq, self.outbox.cursor(conn, CURSOR) or 0)
            self.outbox.set_cursor(conn, CURSOR, moved)
        return len(batch)

    def _wanted(self, event: JobEvent) -> bool:
        if event.type != events.PROGRESS:
            return True
        last = self._last_progress.get(event.job_id)
        if last is not None and event.created_at - last < self.settings.webhook_progress_every:
            return False
        self._last_progress[event.job_id] = event.created_at
        return True

    def deliver_due(self) -> float | None:
        """Send every due delivery, URL by URL in event order; return the next retry time, if any."""
        nxt: float | None = None
        for url in self.settings.webhook_urls:
            while True:
                row = self._claim(url)
                if row is None:
                    break
                if isinstance(row, float):
                    nxt = row if nxt is None else min(nxt, row)
                    break
                if not self._send(row):
                    break  # keep this URL's order: later events wait for this one
        return nxt

    def _claim(self, url: str) -> dict[str, Any] | float | None:
        """The URL's oldest pending delivery, claimed; its due time when not due yet; None when there is none."""
        if not self.outbox.query("SELECT 1 FROM deliveries WHERE url = ? AND state = ? LIMIT 1", (url, PENDING)):
            return None  # the usual idle pass: no write transaction
        with self.outbox.tx() as conn:
            row = conn.execute(
                "SELECT * FROM deliveries WHERE url = ? AND state = ? ORDER BY event_seq LIMIT 1", (url, PENDING)
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            if row["next_attempt"] > now:
                return float(row["next_attempt"])
            conn.execute("UPDATE deliveries SET next_attempt = ? WHERE id = ?", (now + LEASE_SECONDS, row["id"]))
            return dict(row)

    def _send(self, row: dict[str, Any]) -> bool:
        import httpx

        error: str | None = None
        try:
            headers = sign_headers(self.settings.webhook_secret, row["msg_id"], row["body"], time.time())
            response = self._http().post(row["url"], content=row["body"].encode(), headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bad secret, a malformed URL: recorded on the row, never kills the follower
            error = f"{type(exc).__name__}: {exc}"
        self._record(row, error)
        return error is None

    def _record(self, row: dict[str, Any], error: str | None) -> None:
        attempts = row["attempts"] + 1
        now = time.time()
        with self.outbox.tx() as conn:
            if error is None:
                conn.execute(
                    "UPDATE deliveries SET state = ?, attempts = ?, delivered_at = ?, last_error = NULL WHERE id = ?",
                    (DELIVERED, attempts, now, row["id"]),
                )
                return
            state = FAILED if attempts >= self.backoff.max_attempts else PENDING
            conn.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
                (state, attempts, now + self.backoff.delay(attempts), error[:500], row["id"]),
            )
        log.warning("webhook %s to %s failed (attempt %d): %s", row["msg_id"], row["url"], attempts, error)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
