"""The HTTP face of the server (streamable HTTP or SSE): bearer-token auth, DNS-rebinding protection, /healthz."""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lora_mcp import __version__
from lora_mcp.errors import InvalidInput

HttpTransport = Literal["sse", "streamable-http"]
HEALTH_PATH = "/healthz"
LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerTokenMiddleware:
    """Pure ASGI middleware: every HTTP request except /healthz needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        supplied = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(supplied, self.expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": "unauthorized",
                "message": "Send the LORA_MCP_HTTP_TOKEN value as 'Authorization: Bearer <token>'.",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="lora-mcp"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


def transport_security_for(host: str, allowed_hosts: list[str]) -> TransportSecuritySettings | None:
    """Loopback: let the SDK enable DNS-rebinding protection. Elsewhere: enforce the allowed Host list if given."""
    if is_loopback(host):
        return None
    if allowed_hosts:
        origins = [f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts]
        return TransportSecuritySettings(allowed_hosts=allowed_hosts, allowed_origins=origins)
    # Off loopback the bearer token is what keeps strangers out; a browser tricked by DNS rebinding has no token.
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def build_http_app(
    server: MCPServer,
    transport: HttpTransport,
    *,
    host: str,
    token: str | None,
    allowed_hosts: list[str] | None = None,
) -> Any:
    """The ASGI app for `transport`, with /healthz and (when a token is set) bearer auth around everything else."""
    if not is_loopback(host) and not token:
        raise InvalidInput(
            f"Refusing to listen on {host} without a token: anyone who can reach the port could train and read files.",
            hint="Set LORA_MCP_HTTP_TOKEN to a long random string (e.g. `openssl rand -hex 32`), or bind 127.0.0.1.",
            field="host",
        )

    @server.custom_route(HEALTH_PATH, methods=["GET"])
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": "lora-mcp", "version": __version__, "transport": transport})

    security = transport_security_for(host, allowed_hosts or [])
    if transport == "sse":
        app: ASGIApp = server.sse_app(transport_security=security, host=host)
    else:
        app = server.streamable_http_app(transport_security=security, host=host)
    return BearerTokenMiddleware(app, token) if token else app


def serve_http(
    server: MCPServer,
    transport: HttpTransport,
    *,
    host: str,
    port: int,
    token: str | None,
    allowed_hosts: list[str] | None = None,
    log_level: str = "info",
) -> None:
    """Run the HTTP server until interrupted."""
    import uvicorn

    app = build_http_app(server, transport, host=host, token=token, allowed_hosts=allowed_hosts)
    uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="on")
