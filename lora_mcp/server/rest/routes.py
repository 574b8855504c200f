"""The REST operations: thin adapters over the same domain functions the MCP tools call.

Each handler validates its body or query with a pydantic model, confines paths to the roots, calls one domain
function in a worker thread and returns a pydantic model; `operation` turns domain errors into problem details.
`OPERATIONS` is the one table both the router and the OpenAPI document are built from.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lora_mcp.captioning.params import CaptionRequest
from lora_mcp.dataset.models import DatasetReport
from lora_mcp.errors import InvalidInput, LoraMcpError
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.paths import confine_existing_dir, confine_existing_file
from lora_mcp.review.apply import ApplyResult
from lora_mcp.server.app import AppState
from lora_mcp.server.rest import models as m
from lora_mcp.server.rest.problems import error_problem, validation_problem
from lora_mcp.system import SystemReport
from lora_mcp.training.generate import GeneratedConfig

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request, AppState], Awaitable[BaseModel | Response]]


@dataclass(frozen=True)
class Operation:
    """One REST operation: how it is routed, documented and run."""

    method: str
    path: str
    handler: Handler
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    media_type: str = "application/json"

    @property
    def summary(self) -> str:
        """The handler's docstring, which is also the OpenAPI summary."""
        return inspect.getdoc(self.handler) or ""


async def json_object(request: Request) -> dict[str, Any]:
    """The JSON object a request carries (a missing body is an empty object)."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise InvalidInput(f"The request body is not valid JSON: {exc}.", hint="Send a JSON object.") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"The request body must be a JSON object, not {type(data).__name__}.", hint="Send {...}.")
    return data


async def body_of(request: Request, model: type[M]) -> M:
    """The JSON body as `model`."""
    return model.model_validate(await json_object(request))


def query_of(request: Request, model: type[M]) -> M:
    """The query string as `model`."""
    return model.model_validate(dict(request.query_params))


def run(handler: Handler) -> Callable[[Request, AppState], Awaitable[Response]]:
    """Call `handler`, rendering its model as JSON and its errors as problem details."""

    @functools.wraps(handler)
    async def wrapper(request: Request, state: AppState) -> Response:
        try:
            result = await handler(request, state)
        except ValidationError as exc:
            return validation_problem(exc, request.url.path)
        except (LoraMcpError, OSError, ModuleNotFoundError) as exc:
            return error_problem(exc, request.url.path)
        if isinstance(result, Response):
            return result
        return JSONResponse(result.model_dump(mode="json"))

    return wrapper


async def thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking domain call in a worker thread."""
    return await anyio.to_thread.run_sync(partial(fn, *args))


def status_of(state: AppState, job_id: str) -> JobStatus:
    """A job's status as get_job returns it."""
    return job_status(state.manager, state.manager.get(job_id))


# -- system, datasets, captions, reviews, configs ---------------------------------------------------------------


async def get_system(_request: Request, state: AppState) -> SystemReport:
    """GPUs, AI-Toolkit install, free disk and the allowed roots (the system_check tool)."""
    from lora_mcp.system import system_check

    report: SystemReport = await thread(system_check, state.settings)
    return report


async def inspect_dataset(request: Request, state: AppState) -> DatasetReport:
    """Read-only check of a training folder (the inspect_dataset tool)."""
    from lora_mcp.dataset.factcache import facts_cache_for
    from lora_mcp.dataset.inspect import inspect_dataset as inspect_folder

    body = await body_of(request, m.InspectRequest)
    path = await thread(confine_existing_dir, body.folder, state.settings.roots)
    run_it = partial(
        inspect_folder,
        path,
        trigger_word=body.trigger_word,
        resolutions=body.resolutions,
        facts_cache=facts_cache_for(state.settings),
    )
    report: DatasetReport = await anyio.to_thread.run_sync(run_it)
    return report


async def start_captions(request: Request, state: AppState) -> JobStatus:
    """Caption every image of a folder as a job (the caption_images tool)."""
    from lora_mcp.captioning.service import start_captioning

    body = await body_of(request, CaptionRequest)
    folder = await thread(confine_existing_dir, str(body.folder), state.settings.roots)
    status: JobStatus = await thread(start_captioning, state.manager, body.model_copy(update={"folder": folder}))
    return status


async def start_review(request: Request, state: AppState) -> JobStatus:
    """Review captions with rules and an LLM as a job (the review_captions tool)."""
    from lora_mcp.review.params import ReviewParams
    from lora_mcp.review.service import start_review as start

    body = await body_of(request, m.ReviewRequest)
    folder = await thread(confine_existing_dir, body.folder, state.settings.roots)
    params = ReviewParams.request(state.settings, **{**body.model_dump(), "folder": str(folder)})
    status: JobStatus = await thread(start, state.manager, params)
    return status


async def apply_review(request: Request, state: AppState) -> ApplyResult:
    """Write approved captions from a review file (the apply_caption_review tool)."""
    from lora_mcp.review.apply import apply_review as apply

    body = await body_of(request, m.ApplyReviewRequest)
    path = await thread(partial(confine_existing_file, what="review_file"), body.review_file, state.settings.roots)
    result: ApplyResult = await thread(apply, path, body.approve, state.settings.roots)
    return result


async def generate_config(request: Request, state: AppState) -> GeneratedConfig:
    """Check a dataset and settings, then write an AI-Toolkit YAML (the generate_training_config tool)."""
    from lora_mcp.training.config import parse_config
    from lora_mcp.training.generate import generate_training_config

    raw = await json_object(request)
    options = m.ConfigOptions.model_validate({k: raw.pop(k) for k in m.ConfigOptions.model_fields if k in raw})
    config = parse_config(raw)  # its errors name the fields, as the tool's do
    run_it = partial(generate_training_config, config, state.settings, **options.model_dump())
    result: GeneratedConfig = await anyio.to_thread.run_sync(run_it)
    return result
