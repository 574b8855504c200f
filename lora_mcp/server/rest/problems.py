"""Errors over REST: RFC 9457 problem details carrying the same codes as the MCP tool errors.

A domain error is translated once, by the same function the MCP edge uses (`lora_mcp.server.errors.structured`):
the body holds `code`, `retryable`, `field` and `hint` beside the standard `type`, `title`, `status` and `detail`,
so a client that handles `path_not_allowed` from an MCP tool handles it from REST too.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from starlette.responses import JSONResponse

from lora_mcp.errors import InvalidInput, LoraMcpError
from lora_mcp.server.errors import ToolErrorInfo, translate

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:lora-mcp:problem:{code}"
"""The problem `type`: one URI per error code (docs/rest-api.md lists them)."""
PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_BY_CODE = {
    "invalid_input": 422,
    "path_not_allowed": 403,
    "not_found": 404,
    "precondition_failed": 409,
    "operation_failed": 500,
    "store_unavailable": 503,
    "unauthorized": 401,
}
TITLES = {
    "invalid_input": "Invalid input",
    "path_not_allowed": "Path not allowed",
    "not_found": "Not found",
    "precondition_failed": "Precondition failed",
    "operation_failed": "Operation failed",
    "store_unavailable": "Job store unavailable",
    "unauthorized": "Unauthorized",
    "misdirected_request": "Misdirected request",
    "origin_not_allowed": "Origin not allowed",
    "method_not_allowed": "Method not allowed",
}


class ProblemDetails(BaseModel):
    """An RFC 9457 problem details object with lora-mcp's error fields (the MCP tool error's `_meta` object)."""

    type: str = Field(description="urn:lora-mcp:problem:<code>, one URI per error code.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong, naming the bad value and the rule (the MCP error message).")
    instance: str | None = Field(default=None, description="The request path.")
    code: str = Field(description="invalid_input, path_not_allowed, not_found, operation_failed, ...")
    retryable: bool = Field(description="True: the same request may succeed later unchanged; false: fix it first.")
    field: str | None = Field(default=None, description="The argument at fault, when one is.")
    hint: str | None = Field(default=None, description="What to do next.")


def problem_response(info: ToolErrorInfo, instance: str | None = None, status: int | None = None) -> JSONResponse:
    """The problem+json response for one structured error."""
    status = status or STATUS_BY_CODE.get(info.code, 400 if not info.retryable else 500)
    problem = ProblemDetails(
        type=PROBLEM_TYPE.format(code=info.code),
        title=TITLES.get(info.code, "Error"),
        status=status,
        detail=info.message,
        instance=instance,
        code=info.code,
        retryable=info.retryable,
        field=info.field,
        hint=info.hint,
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True), status_code=status, media_type=PROBLEM_MEDIA_TYPE
    )


def error_problem(exc: LoraMcpError | OSError | ModuleNotFoundError, instance: str | None = None) -> JSONResponse:
    """A domain error (or an unanticipated OSError / missing module) as problem details, translated like MCP's."""
    return problem_response(translate("rest", exc).info, instance)


def validation_problem(exc: ValidationError, instance: str | None = None) -> JSONResponse:
    """A request body that does not match its model: invalid_input naming the first bad field."""
    errors = exc.errors(include_url=False)
    where = ".".join(str(p) for p in errors[0]["loc"]) or None if errors else None
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}" for e in errors[:5]]
    error = InvalidInput(
        f"The request body is invalid: {'; '.join(parts)}.",
        hint="Fix the named fields (GET /api/v1/openapi.json describes every body), then send it again.",
        field=where,
    )
    return error_problem(error, instance)


def plain_problem(status: int, code: str, detail: str, hint: str | None = None, **extra: Any) -> JSONResponse:
    """A problem that comes from the HTTP layer itself (unknown route, bad method, bad JSON)."""
    info = ToolErrorInfo(code=code, retryable=False, hint=hint, message=detail, **extra)
    return problem_response(info, status=status)
