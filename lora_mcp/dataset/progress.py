"""Throttled progress: a callback fired often enough to show life, rarely enough not to flood an MCP client."""

from __future__ import annotations

import time
from collections.abc import Callable

ProgressFn = Callable[[int, int], None]


class ThrottledProgress:
    """Forward `(done, total)` at most every `interval` seconds or every `step` fraction of the work, and at the end.

    1,000 quick items yield about 20 calls (one per 5%), not 1,000; slow items still report every quarter second.
    """

    def __init__(
        self,
        callback: ProgressFn | None,
        total: int,
        *,
        interval: float = 0.25,
        step: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._callback = callback
        self._total = total
        self._interval = interval
        self._step_items = max(1, int(total * step))
        self._clock = clock
        self._last_time = clock()
        self._last_done = 0
        self.calls = 0

    def start(self) -> None:
        """Announce the total before the first item."""
        self._emit(0)

    def update(self, done: int) -> None:
        """Record that `done` items are finished; forwards when the interval or step has passed, or at the end."""
        if done >= self._total:
            if self._last_done < self._total or self.calls == 0:
                self._emit(self._total)
            return
        if done - self._last_done >= self._step_items or self._clock() - self._last_time >= self._interval:
            self._emit(done)

    def _emit(self, done: int) -> None:
        self._last_done = done
        self._last_time = self._clock()
        self.calls += 1
        if self._callback is not None:
            self._callback(done, self._total)
