"""REST job operations: start, list, read, cancel, resume, log, loss, samples and the live event stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from lora_mcp.errors import InvalidInput, NotFound
from lora_mcp.jobs import events
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.server.app import AppState
from lora_mcp.server.rest import models as m
from lora_mcp.server.rest.cache import StatusCache
from lora_mcp.server.rest.hub import EventHub
from lora_mcp.server.rest.routes import Handler, body_of, query_of, status_of, thread
from lora_mcp.training.artifacts import loss_history, sample_from_path

FINAL_EVENTS = frozenset(events.FINAL.values())
SSE_RETRY_MS = 1000
SSE_PING_SECONDS = 15


def job_id_of(request: Request) -> str:
    """The `{job_id}` of the path."""
    return str(request.path_params["job_id"])


async def start_train(request: Request, state: AppState) -> JobStatus:
    """Preflight a config and queue a training job (the start_training tool)."""
    from lora_mcp.training.service import start_training

    body = await body_of(request, m.TrainRequest)
    status: JobStatus = await thread(start_training, state.manager, body.config_path, body.idempotency_key)
    return status


async def list_jobs(request: Request, state: AppState) -> m.JobList:
    """Jobs, newest first, optionally of one kind or state (the list_jobs tool)."""
    query = query_of(request, m.JobFilter)

    def collect() -> m.JobList:
        jobs = state.manager.store.list_jobs(kind=query.kind, state=query.state)
        return m.JobList(jobs=[job_status(state.manager, j) for j in jobs])

    result: m.JobList = await anyio.to_thread.run_sync(collect)
    return result


def status_endpoints(cache: StatusCache) -> tuple[Handler, Handler]:
    """The handlers of GET /jobs/{id} (through `cache`) and POST /jobs/{id}/cancel (which refreshes it)."""

    async def get_job(request: Request, state: AppState) -> Response:
        """One job's state, phase, step, loss, ETA, error and outputs (the get_job tool)."""
        job_id = job_id_of(request)

        async def compute() -> bytes:
            status: JobStatus = await thread(status_of, state, job_id)
            return status.model_dump_json().encode()

        return Response(await cache.get(job_id, compute), media_type="application/json")

    async def cancel_job(request: Request, state: AppState) -> JobStatus:
        """Cancel a job: a queued one is dropped, a running one is stopped (the cancel_job tool)."""
        job_id = job_id_of(request)
        await thread(state.manager.cancel, job_id)
        cache.forget(job_id)
        status: JobStatus = await thread(status_of, state, job_id)
        return status

    return get_job, cancel_job


async def resume_job(request: Request, state: AppState) -> JobStatus:
    """Re-run a failed or cancelled training job from its newest checkpoint (the resume_training tool)."""
    from lora_mcp.training.service import resume_training

    status: JobStatus = await thread(resume_training, state.manager, job_id_of(request))
    return status


async def job_log(request: Request, state: AppState) -> m.JobLogs:
    """The last lines of a job's log, secrets redacted (the job_logs tool)."""
    query, job_id = query_of(request, m.TailQuery), job_id_of(request)
    lines: list[str] = await thread(state.manager.tail, job_id, query.tail)
    return m.JobLogs(job_id=job_id, lines=lines)


async def job_loss(request: Request, state: AppState) -> m.LossSeries:
    """A train job's loss by step, including the runs it resumed."""
    job_id = job_id_of(request)
    text: str = await thread(state.manager.lineage_log, job_id)
    points = [m.LossPoint(step=step, loss=loss) for step, loss in loss_history(text)]
    return m.LossSeries(job_id=job_id, points=points)


def read_config(state: AppState, job_id: str) -> str:
    """The frozen config of a job, as text."""
    job = state.manager.get(job_id)
    path = job.job_dir / "config.yaml"
    if not path.is_file():
        raise NotFound(f"Job {job.id} has no config.yaml (a {job.kind.value} job has none).")
    return path.read_text("utf-8")


async def job_config(request: Request, state: AppState) -> Response:
    """The AI-Toolkit config a job runs, as YAML (frozen when it was queued)."""
    text: str = await thread(read_config, state, job_id_of(request))
    return Response(text, media_type="application/yaml")


def sample_list(state: AppState, job_id: str) -> m.SampleList:
    """The samples a job's outputs list, with their URLs."""
    samples = [s for s in map(sample_from_path, status_of(state, job_id).outputs.samples) if s is not None]
    images = [
        m.SampleImage(
            file=Path(s.path).name,
            step=s.step,
            prompt_index=s.prompt_index,
            url=f"{m.PREFIX}/jobs/{job_id}/samples/{Path(s.path).name}",
        )
        for s in sorted(samples, key=lambda s: (s.step, s.prompt_index))
    ]
    return m.SampleList(job_id=job_id, samples=images)


async def job_samples(request: Request, state: AppState) -> m.SampleList:
    """A train job's sample images, by step then prompt."""
    result: m.SampleList = await thread(sample_list, state, job_id_of(request))
    return result


async def job_sample_file(request: Request, state: AppState) -> Response:
    """One sample image; only a file the job's outputs list is served (never a path the caller builds)."""
    job_id, name = job_id_of(request), str(request.path_params["file"])
    if "/" in name or "\\" in name or sample_from_path(name) is None:
        raise InvalidInput(
            f"{name!r} is not a sample file name (AI-Toolkit names them <time>__<step>_<prompt>.jpg).",
            hint=f"GET {m.PREFIX}/jobs/{job_id}/samples lists them.",
            field="file",
        )

    def listed_file() -> Path | None:
        listed = status_of(state, job_id).outputs.samples
        path = next((Path(p) for p in listed if Path(p).name == name), None)
        return path if path is not None and path.is_file() else None

    path: Path | None = await thread(listed_file)
    if path is None:
        raise NotFound(
            f"Job {job_id} has no sample {name!r}.", hint=f"GET {m.PREFIX}/jobs/{job_id}/samples lists them."
        )
    return FileResponse(path, headers={"cache-control": "private, max-age=86400, immutable"})


def last_event_id(request: Request, hub: EventHub) -> int:
    """Where a stream resumes: the Last-Event-ID header, else the `after` query parameter (-1: now), else 0."""
    header = request.headers.get("last-event-id", "").strip()
    if header:
        if not header.isdigit():
            raise InvalidInput(f"Last-Event-ID {header!r} is not an event seq.", field="Last-Event-ID")
        return int(header)
    after = query_of(request, m.EventsQuery).after
    return max(hub.head, 0) if after == -1 else after


def sse_event(row: Any) -> ServerSentEvent:
    """A job event as a server-sent event: `id` is its seq, `event` its type, `data` the EventRecord JSON."""
    record = m.EventRecord(seq=row.seq, job_id=row.job_id, type=row.type, data=row.data, created_at=row.created_at)
    return ServerSentEvent(data=json.dumps(record.model_dump(mode="json")), id=str(row.seq), event=row.type)


def event_stream(hub: EventHub, job_id: str | None, after: int) -> EventSourceResponse:
    """Replay the events after `after`, then follow live; a job's stream ends after its final event."""

    async def generate() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=SSE_RETRY_MS, comment="lora-mcp job events")
        async for row in hub.follow(job_id, after):
            yield sse_event(row)
            if job_id is not None and row.type in FINAL_EVENTS:
                return

    return EventSourceResponse(
        generate(), ping=SSE_PING_SECONDS, headers={"cache-control": "no-store", "x-accel-buffering": "no"}
    )


def events_endpoint(hub: EventHub, *, per_job: bool) -> Any:
    """The handler of GET /jobs/{id}/events (per_job) or GET /events (every job)."""

    async def job_events(request: Request, state: AppState) -> Response:
        """Server-sent events of one job: replayed from Last-Event-ID (or `after`), then live until it ends."""
        after = last_event_id(request, hub)
        if not per_job:
            return event_stream(hub, None, after)
        job_id = job_id_of(request)
        await thread(state.manager.get, job_id)  # an unknown job is a 404, not an empty stream
        return event_stream(hub, job_id, after)

    if not per_job:
        job_events.__doc__ = "Server-sent events of every job: replayed from Last-Event-ID (or `after`), then live."
    return job_events
