"""The event hub in process: one reader for all streams, replay from SQLite past its window, per-job filtering,
events from another process's store, and the status cache's single flight."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import anyio
import pytest

from lora_mcp.jobs.store import JobStore
from lora_mcp.server.rest.cache import StatusCache
from lora_mcp.server.rest.hub import EventHub

pytestmark = pytest.mark.anyio


async def collect(hub: EventHub, job_id: str | None, after: int, count: int) -> list[int]:
    seen: list[int] = []
    with anyio.fail_after(10):
        async for event in hub.follow(job_id, after):
            seen.append(event.seq)
            if len(seen) == count:
                break
    return seen


async def test_replay_past_the_window_then_live(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    early = [store.add_event("a" if i % 2 else "b", "job.progress", {"step": i}) for i in range(10)]
    hub = EventHub(store_of=lambda: store, window=deque(maxlen=3))
    async with anyio.create_task_group() as group:
        group.start_soon(hub.run)
        while hub.head < 0:
            await anyio.sleep(0.01)
        late = [store.add_event("a" if i % 2 else "b", "job.progress", {"step": i}) for i in range(10, 20)]
        everything = early + late
        assert await collect(hub, None, 0, 20) == everything  # 17 of them are older than the window
        job_a = [seq for i, seq in enumerate(everything) if i % 2]
        assert await collect(hub, "a", 0, 10) == job_a
        assert await collect(hub, "a", job_a[4], 5) == job_a[5:]
        other_process = JobStore(tmp_path / "jobs.db")  # its writes reach this hub through max_event_seq()
        written = other_process.add_event("a", "job.succeeded", {})
        assert await collect(hub, "a", job_a[-1], 1) == [written]
        group.cancel_scope.cancel()


async def test_status_cache_shares_one_computation(tmp_path: Path) -> None:
    hub = EventHub(store_of=lambda: JobStore(tmp_path / "jobs.db"))
    hub.head = 5
    cache, calls = StatusCache(hub), []

    async def compute() -> bytes:
        calls.append(1)
        await anyio.sleep(0.05)
        return b'{"state": "running"}'

    results: list[bytes] = []

    async def ask() -> None:
        results.append(await cache.get("job", compute))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(ask)
    assert len(calls) == 1 and set(results) == {b'{"state": "running"}'}
    hub.head = 6  # the log moved: the next request computes again
    await cache.get("job", compute)
    assert len(calls) == 2
    cache.forget("job")
    await cache.get("job", compute)
    assert len(calls) == 3
