"""The REST app: the operation table, its router, the OpenAPI route and the Host/Origin guard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lora_mcp.captioning.params import CaptionRequest
from lora_mcp.dataset.models import DatasetReport
from lora_mcp.jobs.status import JobStatus
from lora_mcp.review.apply import ApplyResult
from lora_mcp.server.app import AppState
from lora_mcp.server.rest import jobs as j
from lora_mcp.server.rest import models as m
from lora_mcp.server.rest import routes as r
from lora_mcp.server.rest.cache import StatusCache
from lora_mcp.server.rest.hub import EventHub
from lora_mcp.server.rest.openapi import openapi_document
from lora_mcp.server.rest.problems import plain_problem
from lora_mcp.system import SystemReport
from lora_mcp.training.generate import GeneratedConfig

SSE = "text/event-stream"


def operations(hub: EventHub) -> list[r.Operation]:
    """Every REST operation, in the order the OpenAPI document lists them."""
    op = r.Operation
    get_job, cancel_job = j.status_endpoints(StatusCache(hub))
    return [
        op("GET", "/system", r.get_system, response=SystemReport),
        op("POST", "/datasets/inspect", r.inspect_dataset, body=m.InspectRequest, response=DatasetReport),
        op("POST", "/captions", r.start_captions, body=CaptionRequest, response=JobStatus),
        op("POST", "/reviews", r.start_review, body=m.ReviewRequest, response=JobStatus),
        op("POST", "/reviews/apply", r.apply_review, body=m.ApplyReviewRequest, response=ApplyResult),
        op("POST", "/configs", r.generate_config, body=m.ConfigRequest, response=GeneratedConfig),
        op("POST", "/jobs/train", j.start_train, body=m.TrainRequest, response=JobStatus),
        op("GET", "/jobs", j.list_jobs, query=m.JobFilter, response=m.JobList),
        op("GET", "/jobs/{job_id}", get_job, response=JobStatus),
        op("POST", "/jobs/{job_id}/cancel", cancel_job, response=JobStatus),
        op("POST", "/jobs/{job_id}/resume", j.resume_job, response=JobStatus),
        op("GET", "/jobs/{job_id}/log", j.job_log, query=m.TailQuery, response=m.JobLogs),
        op("GET", "/jobs/{job_id}/config", j.job_config, media_type="application/yaml"),
        op("GET", "/jobs/{job_id}/loss", j.job_loss, response=m.LossSeries),
        op("GET", "/jobs/{job_id}/samples", j.job_samples, response=m.SampleList),
        op("GET", "/jobs/{job_id}/samples/{file}", j.job_sample_file, media_type="image/jpeg"),
        op("GET", "/jobs/{job_id}/events", j.events_endpoint(hub, per_job=True), query=m.EventsQuery, media_type=SSE),
        op("GET", "/events", j.events_endpoint(hub, per_job=False), query=m.EventsQuery, media_type=SSE),
    ]


def _endpoint(op: r.Operation, state: AppState) -> Callable[[Request], Awaitable[Response]]:
    handler = r.run(op.handler)

    async def endpoint(request: Request) -> Response:
        return await handler(request, state)

    return endpoint


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return plain_problem(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}.")
    return plain_problem(
        404,
        "not_found",
        f"No REST operation at {request.url.path}.",
        hint="GET /api/v1/openapi.json lists the operations.",
    )


def build_rest_app(state: AppState, hub: EventHub) -> Starlette:
    """The Starlette app of the REST API (its routes without the /api/v1 prefix, which the mount adds)."""
    ops = operations(hub)
    document = openapi_document(ops)

    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(document)

    routes = [Route(op.path, _endpoint(op, state), methods=[op.method]) for op in ops]
    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})


class HostOriginGuard:
    """Pure ASGI middleware: the MCP transports' Host/Origin check (421 / 403), for the routes the SDK does not serve.

    Same settings object as the transport (`transport_security_for`), so the rules cannot drift apart.
    """

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self.check = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = await self.check.validate_request(Request(scope), is_post=False)
            if refusal is not None:
                code = "misdirected_request" if refusal.status_code == 421 else "origin_not_allowed"
                text = bytes(refusal.body).decode()
                hint = "Use this server's own address (see --host and LORA_MCP_HTTP_ALLOWED_HOSTS)."
                await plain_problem(refusal.status_code, code, f"{text}.", hint=hint)(scope, receive, send)
                return
        await self.app(scope, receive, send)
