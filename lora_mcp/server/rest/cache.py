"""A short-lived, single-flight cache of job status bodies for GET /jobs/{id}.

Fifty dashboards or scripts polling one running job would each rebuild the same status (a jobs.db read, a listing of
the output folder, safetensors headers). Here concurrent requests for one job share one computation, and its JSON is
reused until the event log moves (`EventHub.head`) or TTL_SECONDS pass, so a poller sees at most TTL_SECONDS-old
progress; the event stream remains the live path. A write through the API (cancel) drops the entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from lora_mcp.server.rest.hub import EventHub

TTL_SECONDS = 0.25
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Entry:
    at: float
    head: int
    body: bytes


@dataclass
class StatusCache:
    """Job id -> the JSON of its status, shared by concurrent requests (see the module docstring)."""

    hub: EventHub
    entries: dict[str, Entry] = field(default_factory=dict)
    inflight: dict[str, anyio.Event] = field(default_factory=dict)

    def fresh(self, job_id: str) -> bytes | None:
        """The cached body when it is still current."""
        entry = self.entries.get(job_id)
        if entry and entry.head == self.hub.head and anyio.current_time() - entry.at < TTL_SECONDS:
            return entry.body
        return None

    async def get(self, job_id: str, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """The status body of `job_id`: cached, awaited from a computation in flight, or computed now."""
        if (body := self.fresh(job_id)) is not None:
            return body
        if (pending := self.inflight.get(job_id)) is not None:
            await pending.wait()
            if (body := self.fresh(job_id)) is not None:
                return body
        done = self.inflight[job_id] = anyio.Event()
        head, at = self.hub.head, anyio.current_time()
        try:
            body = await compute()
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.clear()
            self.entries[job_id] = Entry(at, head, body)
            return body
        finally:
            del self.inflight[job_id]
            done.set()

    def forget(self, job_id: str) -> None:
        """Drop a job's entry (after a change made through the API)."""
        self.entries.pop(job_id, None)
