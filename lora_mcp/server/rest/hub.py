"""One in-process follower of the job event log, shared by every server-sent-event stream.

The log lives in jobs.db (`JobStore.events`). Polling SQLite once per connected client would cost 100 queries for
100 dashboards; instead one task (`EventHub.run`) watches `store.last_event_seq`, an int the writing process bumps
(a free "anything new?"), plus `max_event_seq()` every DB_POLL_SECONDS for events other processes wrote (the CLI,
another server). When the log grows it reads the new rows once into a bounded in-memory window and wakes every
waiting stream. A stream replays older history (a reconnect with an old Last-Event-ID) from SQLite itself, then
reads from the window.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from lora_mcp.errors import LoraMcpError
from lora_mcp.jobs.store import JobEvent, JobStore

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.02
"""How often the in-process counter is looked at (an attribute read)."""
DB_POLL_SECONDS = 0.5
"""How often jobs.db is asked for its newest seq (events written by other processes)."""
WINDOW = 5000
"""How many recent events the hub keeps for the streams; an older cursor replays from SQLite."""
REPLAY_PAGE = 500


@dataclass
class EventHub:
    """Follows the event log for every stream of this process (see the module docstring)."""

    store_of: Callable[[], JobStore]
    """The store (opened on first use: the job manager's)."""
    window: deque[JobEvent] = field(default_factory=lambda: deque(maxlen=WINDOW))
    head: int = -1
    """The newest seq read into the window; -1 until the hub has started."""
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def floor(self) -> int:
        """Every event with a seq above this (up to `head`) is in the window."""
        return self.window[0].seq - 1 if len(self.window) == self.window.maxlen else self._start

    _start: int = 0

    async def run(self) -> None:
        """Follow the log until cancelled; a failing read is logged and tried again."""
        next_db_poll = 0.0
        store: JobStore | None = None
        while True:
            try:
                if store is None:  # opened once (the job manager's); a failed open is tried again
                    store = await anyio.to_thread.run_sync(self.store_of)
                if self.head < 0:
                    self.head = self._start = await anyio.to_thread.run_sync(store.max_event_seq)
                now = anyio.current_time()
                if now >= next_db_poll:
                    await anyio.to_thread.run_sync(store.max_event_seq)  # bumps store.last_event_seq
                    next_db_poll = now + DB_POLL_SECONDS
                if store.last_event_seq > self.head:
                    await self._read(store)
            except (LoraMcpError, OSError):
                log.warning("the event hub cannot read jobs.db; trying again", exc_info=True)
                await anyio.sleep(DB_POLL_SECONDS)
            await anyio.sleep(WATCH_SECONDS)

    async def _read(self, store: JobStore) -> None:
        """Read the new rows into the window and wake the streams."""
        while True:
            rows = await anyio.to_thread.run_sync(lambda: store.events(after=self.head, limit=REPLAY_PAGE))
            self.window.extend(rows)
            if rows:
                self.head = rows[-1].seq
            if len(rows) < REPLAY_PAGE:
                break
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_past(self, seq: int, timeout: float) -> None:
        """Return when the hub has read an event newer than `seq`, or after `timeout` seconds."""
        if self.head > seq:
            return
        with anyio.move_on_after(timeout):
            await self._changed.wait()

    async def follow(self, job_id: str | None, after: int) -> AsyncIterator[JobEvent]:
        """The events of `job_id` (all jobs: None) with seq > `after`, then each new one as it is written."""
        cursor = after
        while self.head < 0:  # the hub has not read the log yet
            await anyio.sleep(WATCH_SECONDS)
        while True:
            if cursor < self.floor:  # older than the window: replay from SQLite
                upto = self.head
                rows = await anyio.to_thread.run_sync(self._replay, job_id, cursor)
                for row in rows:
                    yield row
                cursor = rows[-1].seq if len(rows) == REPLAY_PAGE else max(upto, rows[-1].seq if rows else cursor)
                continue
            head = self.head
            for row in self._recent(job_id, cursor, head):
                yield row
            cursor = max(cursor, head)
            await self.wait_past(cursor, 5.0)

    def _replay(self, job_id: str | None, after: int) -> list[JobEvent]:
        return self.store_of().events(after=after, job_id=job_id, limit=REPLAY_PAGE)

    def _recent(self, job_id: str | None, after: int, upto: int) -> list[JobEvent]:
        """The window's events of `job_id` in (after, upto], oldest first (walked from the newest end)."""
        found = []
        for row in reversed(self.window):
            if row.seq <= after:
                break
            if row.seq <= upto and (job_id is None or row.job_id == job_id):
                found.append(row)
        found.reverse()
        return found
