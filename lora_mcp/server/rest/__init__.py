"""The REST API under /api/v1: the MCP tools' operations over plain HTTP, for people, scripts and n8n-style flows.

Same ASGI app, bearer token, Host/Origin rules and roots as the MCP transports; the same domain functions behind each
operation; the same error codes (as RFC 9457 problem details). `build_rest_app` makes the Starlette app that
`lora_mcp.server.http.build_http_app` mounts.
"""

from __future__ import annotations

from lora_mcp.server.rest.app import HostOriginGuard, build_rest_app, operations
from lora_mcp.server.rest.hub import EventHub
from lora_mcp.server.rest.models import PREFIX

__all__ = ["PREFIX", "EventHub", "HostOriginGuard", "build_rest_app", "operations"]
