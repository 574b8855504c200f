"""The HTTP face of the server (streamable HTTP or SSE): bearer-token auth, DNS-rebinding protection, /healthz,
the REST API under /api/v1 and the dashboard at /.

Layers, outermost first: `BearerTokenMiddleware` (when a token is set; /healthz and the dashboard's static files stay
open), then `HostCaseMiddleware` (Host and Origin lower-cased), then a Starlette router: /api/v1 (REST) and the
dashboard behind `HostOriginGuard`, everything else to the SDK's app, whose transport checks those headers itself;
both check against the same `transport_security_for(...)`.

Lifespan: the app's own lifespan keeps the job manager running (`AppState.acquire`) and the event hub following the
event log for as long as the server runs, not only while an MCP session is open, then runs the SDK app's lifespan.

Sessions: the SDK's streamable-HTTP session manager forgets a session once no request has been in flight for
`session_idle_timeout` (an open GET stream counts as one); we pass it the `http_session_idle_seconds` setting, and
/healthz reports how many sessions are open. An SSE session lives exactly as long as its GET /sse stream, so a client
that goes away takes its session with it.
"""

from __future__ import annotations

import copy
import hmac
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from lora_mcp import __version__
from lora_mcp.errors import InvalidInput
from lora_mcp.server.app import AppState, app_state_of
from lora_mcp.settings import get_settings

log = logging.getLogger(__name__)

HttpTransport = Literal["sse", "streamable-http"]
HEALTH_PATH = "/healthz"
GRACEFUL_SHUTDOWN_SECONDS = 10
"""On SIGTERM, how long open connections (event streams, keep-alive clients) may delay the exit before they are cut."""
LOOPBACK_NAMES = {"localhost"}
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bearer_token(scope: Scope) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or None."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


def is_open_path(scope: Scope) -> bool:
    """Requests that need no token: /healthz, and GETs of the dashboard's page and static files (no data in them)."""
    if scope["type"] != "http":
        return False
    path = scope.get("path", "")
    if path == HEALTH_PATH:
        return True
    from lora_mcp.server.dashboard import is_dashboard_asset

    return scope.get("method") in ("GET", "HEAD") and is_dashboard_asset(path)


class BearerTokenMiddleware:
    """Pure ASGI middleware: every HTTP request except GET /healthz and the dashboard's files needs
    `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or is_open_path(scope):
            await self.app(scope, receive, send)
            return
        supplied = _bearer_token(scope)
        if supplied is not None and hmac.compare_digest(supplied, self.expected):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket or an unknown scope type: refuse without a body
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {
                "error": "unauthorized",
                "message": "Send the LORA_MCP_HTTP_TOKEN value as 'Authorization: Bearer <token>'.",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="lora-mcp"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class HostCaseMiddleware:
    """Pure ASGI middleware: lower-case the Host and Origin headers, since host names are case-insensitive (RFC 9110).

    The SDK compares them case-sensitively, so without this `Host: LOCALHOST:8765` would get 421 on loopback.
    """

    LOWERED = (b"host", b"origin")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = [(n, v.lower() if n in self.LOWERED else v) for n, v in scope.get("headers") or []]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def open_sessions(server: MCPServer) -> int | None:
    """How many streamable-HTTP sessions the SDK holds now; None before its app exists (or on SSE)."""
    try:
        manager = server.session_manager
    except RuntimeError:  # streamable_http_app() was never called: an SSE server
        return None
    sessions = getattr(manager, "_server_instances", None)  # the SDK's own table; no public count in mcp 2.3
    return len(sessions) if sessions is not None else None


def transport_security_for(host: str, allowed_hosts: list[str]) -> TransportSecuritySettings:
    """Host/Origin checks: loopback names (plus `allowed_hosts`) on loopback; off loopback `allowed_hosts` if given."""
    # Compared with the lower-cased headers (HostCaseMiddleware), so spelled in lower case too.
    host, allowed_hosts = host.lower(), [h.lower() for h in allowed_hosts]
    if is_loopback(host):
        # The SDK only turns this on for three spellings of loopback; spell it out so 127.0.0.2 or [::1] get it too.
        hosts = [*LOOPBACK_HOSTS, *allowed_hosts]
        if not any(h.startswith(f"{host}:") for h in hosts):
            hosts.append(f"[{host}]:*" if ":" in host and not host.startswith("[") else f"{host}:*")
    elif allowed_hosts:
        hosts = list(allowed_hosts)
    else:
        # Off loopback the bearer token is what keeps strangers out; a browser tricked by DNS rebinding has no token.
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token: anyone on the network could then read files and train."""
    if not is_loopback(host) and not token:
        raise InvalidInput(
            f"Refusing to listen on {host} without a token: anyone who can reach the port could train and read files.",
            hint="Set LORA_MCP_HTTP_TOKEN to a long random string (e.g. `openssl rand -hex 32`), or bind 127.0.0.1.",
            field="host",
        )


def build_http_app(
    server: MCPServer,
    transport: HttpTransport,
    *,
    host: str,
    token: str | None,
    allowed_hosts: list[str] | None = None,
    session_idle_seconds: float | None = None,
) -> ASGIApp:
    """The ASGI app for `transport`, with /healthz and (when a token is set) bearer auth around everything else.

    `session_idle_seconds` defaults to the `http_session_idle_seconds` setting.
    """
    check_bind(host, token)
    if session_idle_seconds is None:
        session_idle_seconds = get_settings().http_session_idle_seconds

    @server.custom_route(HEALTH_PATH, methods=["GET"])
    async def healthz(_request: Request) -> JSONResponse:
        body = {"status": "ok", "server": "lora-mcp", "version": __version__, "transport": transport}
        return JSONResponse({**body, "sessions": open_sessions(server)})

    security = transport_security_for(host, allowed_hosts or [])
    if transport == "sse":
        app: ASGIApp = server.sse_app(transport_security=security, host=host)
    else:
        app = server.streamable_http_app(
            transport_security=security, host=host, session_idle_timeout=session_idle_seconds
        )
    state = app_state_of(server)
    if state is not None and isinstance(app, Starlette):
        app = with_rest_and_dashboard(app, state, security)
    app = HostCaseMiddleware(app)
    return BearerTokenMiddleware(app, token) if token else app


def with_rest_and_dashboard(mcp_app: Starlette, state: AppState, security: TransportSecuritySettings) -> Starlette:
    """`mcp_app` with the REST API and the dashboard beside it, and a lifespan that runs the job manager."""
    from lora_mcp.server.dashboard import dashboard_routes
    from lora_mcp.server.rest import PREFIX, EventHub, HostOriginGuard, build_rest_app

    hub = EventHub(store_of=lambda: state.manager.store)
    routes: list[BaseRoute] = [
        Mount(PREFIX, app=HostOriginGuard(build_rest_app(state, hub), security)),
        *dashboard_routes(lambda app: HostOriginGuard(app, security)),
        Mount("", app=mcp_app),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(state.acquire)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(hub.run)
                try:
                    async with mcp_app.router.lifespan_context(mcp_app):
                        yield
                finally:
                    group.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(state.release)

    return Starlette(routes=routes, lifespan=lifespan)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging config with the access log moved from stdout to stderr, like every other log line."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def serve_http(
    server: MCPServer,
    transport: HttpTransport,
    *,
    host: str,
    port: int,
    token: str | None,
    allowed_hosts: list[str] | None = None,
    session_idle_seconds: float | None = None,
    log_level: str = "info",
) -> None:
    """Run the HTTP server until interrupted."""
    import uvicorn

    app = build_http_app(
        server,
        transport,
        host=host,
        token=token,
        allowed_hosts=allowed_hosts,
        session_idle_seconds=session_idle_seconds,
    )
    from lora_mcp.server.rest import PREFIX

    where = f"[{host}]" if ":" in host else host
    log.info(
        "dashboard at http://%s:%d/ ; REST API at http://%s:%d%s (see docs/rest-api.md)",
        where,
        port,
        where,
        port,
        PREFIX,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=uvicorn_log_config(),
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
