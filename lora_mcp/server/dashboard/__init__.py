"""The dashboard at /: plain HTML, CSS and JavaScript shipped with the package (no build step).

The page and its files hold no data, so they are served without the token; everything the page shows comes from the
REST API, which needs it. The page asks for the token once, keeps it in sessionStorage (for this tab only) and sends it
as `Authorization: Bearer` on every request, including the event stream, which it reads with fetch() instead of
EventSource (EventSource cannot send headers): the token never appears in a URL, a log line or the history.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/dashboard"
INDEX_PATHS = ("/", "/index.html")

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def is_dashboard_asset(path: str) -> bool:
    """True for the dashboard's page and static files (served without a token)."""
    return path in INDEX_PATHS or path.startswith(STATIC_PREFIX + "/")


async def index(_request: Request) -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


def dashboard_routes(guard: Callable[[ASGIApp], ASGIApp]) -> list[BaseRoute]:
    """The routes of the dashboard, each wrapped in `guard` (the Host/Origin check)."""
    static = StaticFiles(directory=STATIC_DIR)
    return [
        *(Route(path, guard(Route(path, index, methods=["GET", "HEAD"]))) for path in INDEX_PATHS),
        Mount(STATIC_PREFIX, app=guard(static)),
    ]
