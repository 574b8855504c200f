"""Resource-updated notifications for subscribed `lora://jobs/{job_id}` resources.

mcp 2.3 serves two subscription styles, and a client uses the one its protocol version has:
- `resources/subscribe` / `resources/unsubscribe` (2025-11-25 and earlier): the server answers and later sends
  `notifications/resources/updated` on that connection's standalone channel (`ServerSession.send_resource_updated`).
  MCPServer has no decorator for these two requests, so they are registered on its low-level server, which is also
  what makes `initialize` declare `resources.subscribe`. A connection's subscriptions end with it (its exit stack).
- `subscriptions/listen` (2026-07-28): the client opens a stream naming the URIs; the SDK's own listen handler
  serves it from the server's SubscriptionBus, the bus `Context.notify_resource_updated` publishes to. A server
  middleware sees each listen request for as long as its stream is open, so the watcher learns its URIs; the SDK
  declares `resources.subscribe` for this era itself.

One poller (`JobWatch.run`, run by the server lifespan while a session is open) looks only at subscribed jobs,
every POLL_SECONDS: a state or phase change, a new checkpoint, sample or final LoRA is announced at once; other
progress (step, loss, message) at most once every PROGRESS_INTERVAL seconds. The job manager is only read.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    UnsubscribeRequestParams,
)

from lora_mcp.errors import LoraMcpError
from lora_mcp.jobs.status import job_status

if TYPE_CHECKING:
    from lora_mcp.server.app import AppState

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
PROGRESS_INTERVAL = 2.0
JOB_URI = re.compile(r"^lora://jobs/(?P<job_id>[^/?#]+)$")


def subscription_bus(server: MCPServer) -> SubscriptionBus:
    """The bus the server's `subscriptions/listen` streams read: what `Context.notify_resource_updated` publishes to.

    mcp 2.3 hands it to each request's Context but keeps the server's attribute private; a background task has no
    Context, so it is read here, in one place.
    """
    return server._subscriptions  # pyright: ignore[reportPrivateUsage]


@dataclass(frozen=True)
class Snapshot:
    """What a subscriber is told about: `major` changes at once, `progress` ones throttled."""

    major: tuple[Any, ...]
    progress: tuple[Any, ...]


@dataclass
class Throttle:
    """Decides, poll by poll, whether a job's change is worth a notification now."""

    interval: float = PROGRESS_INTERVAL
    last: Snapshot | None = None
    sent_at: float = -math.inf

    def due(self, snapshot: Snapshot, now: float) -> bool:
        """True if a notification should go out now (and record it as sent)."""
        if self.last is None:  # the first look is the baseline: the subscriber reads the resource itself
            self.last = snapshot
            return False
        quiet = snapshot.progress == self.last.progress or now - self.sent_at < self.interval
        if snapshot.major == self.last.major and quiet:
            return False  # unchanged, or progress too soon after the last notification: compared again later
        self.last, self.sent_at = snapshot, now
        return True


def job_uri(uri: str) -> str | None:
    """The job id of a `lora://jobs/{job_id}` URI, else None."""
    match = JOB_URI.match(uri)
    return match["job_id"] if match else None


@dataclass
class JobWatch:
    """Who subscribed to which job resource, and the poller that notifies them."""

    app: AppState
    server: MCPServer
    sessions: dict[str, dict[Hashable, ServerSession]] = field(default_factory=dict)
    """URI -> connection -> a session of that connection, for `resources/subscribe` subscribers."""
    streams: Counter[str] = field(default_factory=Counter)
    """URI -> how many open `subscriptions/listen` streams name it."""
    throttles: dict[str, Throttle] = field(default_factory=dict)
    _wake: anyio.Event | None = None
    _lock: anyio.Lock | None = None

    def install(self) -> None:
        """Serve both subscription styles on the server and run the poller while sessions are open."""
        lowlevel = self.server._lowlevel_server  # pyright: ignore[reportPrivateUsage]  # no public hook in 2.3
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self.on_subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self.on_unsubscribe)
        self.server.middleware.append(self.on_listen)
        self.app.background.append(self.run)

    def subscribed(self) -> list[str]:
        """The URIs someone is subscribed to now."""
        return sorted({*self.sessions, *(uri for uri, n in self.streams.items() if n > 0)})

    # -- the two subscription styles -------------------------------------------------------------------------

    async def on_subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        """`resources/subscribe`: only job resources of known jobs."""
        job_id = job_uri(params.uri)
        if job_id is None:
            raise MCPError(INVALID_PARAMS, f"Only lora://jobs/{{job_id}} can be subscribed, not {params.uri!r}.")
        try:
            await anyio.to_thread.run_sync(self.app.manager.get, job_id)
        except LoraMcpError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from exc
        key = connection_key(ctx.session)
        if not any(key in by_conn for by_conn in self.sessions.values()):
            forget = self.forget_connection
            connection = getattr(ctx.session, "_connection", None)
            if connection is not None:  # drop its subscriptions when the connection closes
                connection.exit_stack.callback(forget, key)
        self.sessions.setdefault(params.uri, {})[key] = ctx.session
        self.wake()
        return EmptyResult()

    async def on_unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        """`resources/unsubscribe`: no more notifications for this URI on this connection."""
        by_conn = self.sessions.get(params.uri, {})
        by_conn.pop(connection_key(ctx.session), None)
        if not by_conn:
            self.sessions.pop(params.uri, None)
        return EmptyResult()

    async def on_listen(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Middleware: while a `subscriptions/listen` stream is open, watch the job URIs it names."""
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        try:
            params = SubscriptionsListenRequestParams.model_validate(ctx.params or {})
            uris = [u for u in params.notifications.resource_subscriptions or [] if job_uri(u)]
        except ValueError:
            uris = []  # the SDK's handler answers the malformed request
        self.streams.update(uris)
        self.wake()
        try:
            return await call_next(ctx)
        finally:
            self.streams.subtract(uris)
            self.streams = +self.streams  # drop the zero counts

    def forget_connection(self, key: Hashable) -> None:
        """A connection closed: drop its `resources/subscribe` subscriptions."""
        for uri in list(self.sessions):
            self.sessions[uri].pop(key, None)
            if not self.sessions[uri]:
                del self.sessions[uri]

    # -- the poller ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll the subscribed jobs until cancelled; one poller at a time (each open session's lifespan runs one)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            while True:
                uris = self.subscribed()
                for uri in set(self.throttles) - set(uris):
                    del self.throttles[uri]
                if not uris:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                for uri in uris:
                    try:
                        await self.check(uri)
                    except Exception:  # a failing job read must not end the watcher (or the session with it)
                        log.exception("could not check %s", uri)
                await anyio.sleep(POLL_SECONDS)

    def wake(self) -> None:
        """A subscription arrived: let an idle poller start."""
        if self._wake is not None:
            self._wake.set()

    async def check(self, uri: str) -> None:
        """Look at one job; notify its subscribers when its throttle says so."""
        job_id = job_uri(uri)
        if job_id is None:
            return
        snapshot = await anyio.to_thread.run_sync(self.snapshot, job_id)
        throttle = self.throttles.setdefault(uri, Throttle())
        if throttle.due(snapshot, anyio.current_time()):
            await self.notify(uri)

    def snapshot(self, job_id: str) -> Snapshot:
        """The parts of the job's status that subscribers hear about (what get_job and the resource return)."""
        try:
            status = job_status(self.app.manager, self.app.manager.get(job_id))
        except LoraMcpError:
            return Snapshot(major=("missing",), progress=())
        out = status.outputs
        major = (status.state, status.phase, tuple(out.checkpoints), len(out.samples), out.lora_path)
        return Snapshot(major=major, progress=(status.step, status.loss, status.message))

    async def notify(self, uri: str) -> None:
        """Tell every subscriber of `uri`: listen streams through the bus, subscribe-style connections directly."""
        if self.streams.get(uri):
            await subscription_bus(self.server).publish(ResourceUpdated(uri=uri))
        for key, session in list(self.sessions.get(uri, {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # the connection is gone: forget it
                log.info("dropping the subscription to %s of a closed connection", uri)
                self.forget_connection(key)


def connection_key(session: ServerSession) -> Hashable:
    """What identifies the connection a request came on (sessions are per request; their connection is not)."""
    # mcp 2.3 keeps a session's Connection private; without it each request's session stands alone.
    return getattr(session, "_connection", session)
