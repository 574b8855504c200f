"""Progress from domain code running in a worker thread, sent as MCP progress notifications."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import anyio.from_thread
from mcp.server.mcpserver import Context


def thread_progress(ctx: Context, verb: str) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback for code run with anyio.to_thread; says '<verb> done/total images'."""

    def progress(done: int, total: int) -> None:
        anyio.from_thread.run(partial(ctx.report_progress, done, total, f"{verb} {done}/{total} images"))

    return progress
