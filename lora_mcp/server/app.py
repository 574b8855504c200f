"""Build the MCPServer: one place that wires settings into the tool modules."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server import MCPServer

from lora_mcp import __version__
from lora_mcp.errors import StoreUnavailable
from lora_mcp.settings import Settings, get_settings

if TYPE_CHECKING:
    from lora_mcp.jobs.manager import JobManager
    from lora_mcp.notify.service import Notifier

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
lora-mcp takes a folder of images to a trained Z-Image LoRA with Ostris AI-Toolkit.
Typical flow: system_check -> inspect_dataset(folder) -> fix what it reports -> caption_images if captions are
missing -> review_captions, then apply_caption_review once the review file's decisions are set ->
generate_training_config -> start_training -> wait_for_job (call again until the job ends) -> get_job for the LoRA
and samples -> export_lora to hand it to ComfyUI. Captioning, review and training are jobs: each returns a job id at
once; follow it with wait_for_job. Every path must lie inside the configured roots (system_check lists them).
Without file tools: view_dataset shows the images, set_caption fixes one caption, and get_caption_review +
decide_captions read and decide a review."""


@dataclass
class AppState:
    """What every tool adapter needs; built once per server."""

    settings: Settings
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    """Tasks run while a session is open (the job watcher); they must not raise. Tool modules add them."""
    _users: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def manager(self) -> JobManager:
        """The job manager (created on first use; its store is jobs.db in the state dir)."""
        from lora_mcp.assembly import open_manager

        return open_manager(self.settings)

    @cached_property
    def notifier(self) -> Notifier:
        """Webhooks and automatic S3 uploads following the job event log (idle unless configured)."""
        from lora_mcp.notify.service import Notifier

        return Notifier(self.manager)

    def acquire(self) -> None:
        """A session started: make sure jobs are being watched.

        When jobs.db cannot be opened the session still starts: the job tools then answer with that error (each
        call tries again), and the tools that need no job keep working.
        """
        with self._lock:
            self._users += 1
            try:
                self.manager.start()
                self.notifier.start()
            except StoreUnavailable as exc:
                log.error("job tools are unavailable: %s", exc)

    def release(self) -> None:
        """A session ended: stop watching when it was the last (jobs keep running under their supervisors)."""
        with self._lock:
            self._users -= 1
            if self._users == 0 and "notifier" in self.__dict__:
                self.notifier.stop()
            if self._users == 0 and "manager" in self.__dict__:  # never opened (or could not be): nothing to stop
                self.manager.stop()


def lifespan_for(state: AppState) -> Any:
    """An MCPServer lifespan that watches jobs while any session is open."""

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState]:
        state.acquire()
        try:
            async with in_background(state.background):
                yield state
        finally:
            state.release()

    return lifespan


@asynccontextmanager
async def in_background(tasks: list[Callable[[], Coroutine[Any, Any, None]]]) -> AsyncIterator[None]:
    """Run `tasks` while the block runs; the block's own exception leaves unchanged (not in an ExceptionGroup)."""
    error: BaseException | None = None
    async with anyio.create_task_group() as group:
        for task in tasks:
            group.start_soon(task)
        try:
            yield
        except BaseException as exc:  # re-raised outside the group, which would wrap it
            error = exc
        group.cancel_scope.cancel()
    if error is not None:
        raise error


STATE_ATTRIBUTE = "lora_mcp_state"
"""Where build_server leaves the AppState on the server, for the HTTP app's REST API and lifespan."""


def app_state_of(server: MCPServer) -> AppState | None:
    """The AppState `build_server` made for `server`; None for a server built elsewhere."""
    state = getattr(server, STATE_ATTRIBUTE, None)
    return state if isinstance(state, AppState) else None


def build_server(settings: Settings | None = None) -> MCPServer:
    """Create the lora-mcp MCPServer with every tool registered."""
    from lora_mcp.server import (
        prompts,
        tools_caption,
        tools_dataset,
        tools_export,
        tools_jobs,
        tools_review,
        tools_storage,
        tools_system,
        tools_training_config,
    )
    from lora_mcp.server.errors import structured_tool_errors

    settings = settings or get_settings()
    settings.ensure_dirs()
    state = AppState(settings=settings)
    server = MCPServer("lora-mcp", instructions=INSTRUCTIONS, version=__version__, lifespan=lifespan_for(state))
    tools_system.register(server, state)
    tools_dataset.register(server, state)
    tools_caption.register(server, state)
    tools_jobs.register(server, state)
    tools_training_config.register(server, state)
    tools_review.register(server, state)
    tools_export.register(server, state)
    tools_storage.register(server, state)
    prompts.register(server, state)
    setattr(server, STATE_ATTRIBUTE, state)
    return structured_tool_errors(server)
