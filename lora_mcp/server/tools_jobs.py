"""Tool adapters for jobs: start/resume training, status, wait, cancel, list, logs, checkpoints; job resources."""

from __future__ import annotations

import base64
from functools import partial
from typing import Annotated

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from lora_mcp.errors import LoraMcpError
from lora_mcp.jobs.models import JobKind, JobState, Progress
from lora_mcp.jobs.status import JobList, JobLogs, JobStatus, job_status
from lora_mcp.jobs.store import JobRecord
from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.server.job_watch import JobWatch
from lora_mcp.training.checkpoints import CheckpointComparison

MAX_WAIT_SECONDS = 45.0

JobId = Annotated[str, Field(description="A job id as returned by start_training or list_jobs.")]


def job_images(status: JobStatus, log_text: str) -> list[ImageContent]:
    """A contact sheet of the newest sample per prompt and a smoothed loss curve, as MCP images."""
    from lora_mcp.training.artifacts import (
        contact_sheet,
        loss_curve_png,
        loss_history,
        newest_samples,
        sample_from_path,
    )

    samples = [s for s in map(sample_from_path, status.outputs.samples) if s is not None]
    pictures = [contact_sheet(newest_samples(samples)), loss_curve_png(loss_history(log_text))]
    return [
        ImageContent(type="image", data=base64.b64encode(p).decode(), mime_type="image/png")
        for p in pictures
        if p is not None
    ]


def register(server: MCPServer, app: AppState) -> None:
    """Register the job tools and resources."""

    def status_of(job_id: str) -> JobStatus:
        return job_status(app.manager, app.manager.get(job_id))

    @server.tool()
    @tool_errors
    async def start_training(
        config_path: Annotated[str, Field(description="AI-Toolkit YAML from generate_training_config.")],
        idempotency_key: Annotated[
            str | None, Field(description="Retry-safe key: the same key returns the same job instead of a new one.")
        ] = None,
    ) -> JobStatus:
        """Preflight a config and queue a training job on the GPU; returns at once. Follow it with wait_for_job."""
        from lora_mcp.training.service import start_training as start

        return await anyio.to_thread.run_sync(partial(start, app.manager, config_path, idempotency_key))

    @server.tool()
    @tool_errors
    async def resume_training(job_id: JobId) -> JobStatus:
        """Re-run a failed or cancelled training job's config; AI-Toolkit continues from its newest checkpoint."""
        from lora_mcp.training.service import resume_training as resume

        return await anyio.to_thread.run_sync(partial(resume, app.manager, job_id))

    @server.tool()
    @tool_errors
    async def get_job(
        job_id: JobId,
        include_images: Annotated[
            bool, Field(description="Also return a contact sheet of the newest samples and a loss curve.")
        ] = False,
    ) -> Annotated[CallToolResult, JobStatus]:
        """Status of one job: state, phase, step, loss, ETA, error with a hint, and its outputs."""
        status = await anyio.to_thread.run_sync(status_of, job_id)
        content: list[TextContent | ImageContent] = [TextContent(type="text", text=status.model_dump_json())]
        if include_images:
            log_text = await anyio.to_thread.run_sync(app.manager.lineage_log, job_id)
            content += await anyio.to_thread.run_sync(job_images, status, log_text)
        return CallToolResult(content=content, structured_content=status.model_dump(mode="json"))

    @server.tool()
    @tool_errors
    async def compare_checkpoints(
        job_id: JobId,
        prompts: Annotated[
            list[int | str] | None,
            Field(description="Sample prompts to show, by index (0, 1, ...) or text; default: all of them."),
        ] = None,
    ) -> Annotated[CallToolResult, CheckpointComparison]:
        """One image comparing a train job's saved steps: a row per checkpoint (step and loss), a column per sample
        prompt. Works while it runs. export_lora(job_id, checkpoint=<step>) then exports the step you prefer."""
        from lora_mcp.training.checkpoints import compare_checkpoints as compare

        result, png = await anyio.to_thread.run_sync(partial(compare, app.manager, job_id, prompts))
        image = ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png")
        content: list[TextContent | ImageContent] = [TextContent(type="text", text=result.model_dump_json()), image]
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    @server.tool()
    @tool_errors
    async def wait_for_job(
        job_id: JobId,
        ctx: Context,
        timeout_seconds: Annotated[
            float, Field(ge=0, description="How long to wait (capped at 45 s so clients do not time out).")
        ] = 30,
    ) -> JobStatus:
        """Wait until the job ends or the timeout passes, sending progress (step/total, newest log line)."""

        sent: list[float] = []

        async def on_change(job: JobRecord, progress: Progress) -> None:
            total = progress.total_steps or job.params.get("steps")
            # MCP requires progress to increase with every notification: a new message at the same step
            # (a phase change, a save) moves it by a hair instead of repeating the step.
            value = float(progress.step) if not sent or progress.step > sent[-1] else sent[-1] + 0.001
            sent.append(value)
            await ctx.report_progress(value, total, progress.message or job.state.value)

        await app.manager.wait(job_id, min(timeout_seconds, MAX_WAIT_SECONDS), on_change)
        return await anyio.to_thread.run_sync(status_of, job_id)

    @server.tool()
    @tool_errors
    async def cancel_job(job_id: JobId) -> JobStatus:
        """Cancel a job: a queued one is dropped; a running one gets SIGINT, then SIGKILL after a grace period."""
        await anyio.to_thread.run_sync(app.manager.cancel, job_id)
        return await anyio.to_thread.run_sync(status_of, job_id)

    @server.tool()
    @tool_errors
    async def list_jobs(
        kind: Annotated[JobKind | None, Field(description="Only jobs of this kind.")] = None,
        state: Annotated[JobState | None, Field(description="Only jobs in this state.")] = None,
    ) -> JobList:
        """All jobs this server knows, newest first."""

        def collect() -> JobList:
            jobs = app.manager.store.list_jobs(kind=kind, state=state)
            return JobList(jobs=[job_status(app.manager, j) for j in jobs])

        return await anyio.to_thread.run_sync(collect)

    @server.tool()
    @tool_errors
    async def job_logs(
        job_id: JobId,
        tail: Annotated[int, Field(ge=1, le=5000, description="How many of the last lines to return.")] = 200,
    ) -> JobLogs:
        """The last lines of a job's log."""
        lines = await anyio.to_thread.run_sync(app.manager.tail, job_id, tail)
        return JobLogs(job_id=job_id, lines=lines)

    @server.resource("lora://jobs/{job_id}", mime_type="application/json")
    async def job_resource(job_id: str) -> str:
        """A job's status, as get_job returns it. Subscribe to be told of state, phase, checkpoint and sample changes
        at once and of progress at most every 2 s."""
        try:
            status = await anyio.to_thread.run_sync(status_of, job_id)
        except LoraMcpError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        return status.model_dump_json()

    JobWatch(app, server).install()

    @server.resource("lora://jobs/{job_id}/log", mime_type="text/plain")
    def job_log_resource(job_id: str) -> str:
        """A job's log: the whole of a small one, else its last MiB; secrets redacted."""
        text = read_job_file(app, job_id, "log.txt", hint=" Call job_logs(job_id, tail=N) to read it by lines.")
        return app.manager.redact(text)

    @server.resource("lora://jobs/{job_id}/config", mime_type="application/yaml")
    def job_config_resource(job_id: str) -> str:
        """The AI-Toolkit config a job runs (frozen when it was queued)."""
        return read_job_file(app, job_id, "config.yaml")


RESOURCE_MAX_BYTES = 1024 * 1024
"""The most of a job file a resource returns: its end, so a long log costs the server and the client little."""


def read_job_file(app: AppState, job_id: str, name: str, *, hint: str = "") -> str:
    """A file of a job's directory as text (a bigger one's last RESOURCE_MAX_BYTES), or a resource-not-found error.

    A tail starts after the first line break in its window and opens with a line saying what it is, then `hint`.
    """
    try:
        job = app.manager.get(job_id)
    except LoraMcpError as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    path = job.job_dir / name
    if not path.is_file():
        raise ResourceNotFoundError(f"Job {job_id} has no {name}.")
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size <= RESOURCE_MAX_BYTES:
            return fh.read(RESOURCE_MAX_BYTES).decode("utf-8", "replace")
        fh.seek(size - RESOURCE_MAX_BYTES - 1)  # one byte more: is the window's first byte a line start?
        data = fh.read(RESOURCE_MAX_BYTES + 1)
    # Drop the partial first line; a window of carriage-return repaints (a progress bar) may hold no newline.
    start = "from a line start"
    for separator in (b"\n", b"\r"):
        if (cut := data.find(separator)) != -1:
            data = data[cut + 1 :]
            break
    else:
        data, start = data[1:], "cut mid-line (no line break in it)"
    header = f"[Tail of {name}: the last {len(data):,} of {size:,} bytes, {start}.{hint}]\n"
    return header + data.decode("utf-8", "replace")
