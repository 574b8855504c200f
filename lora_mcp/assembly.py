"""The application's wiring: which job kinds exist and how a job manager is put together.

The server and the CLI both call `open_manager`. The jobs layer (lora_mcp.jobs) knows no kind; the kinds live with
their domains (training, captioning, review) and meet the manager only here. A new kind is a name in
`lora_mcp.jobs.models.JobKind` and one handler in `default_kinds`.
"""

from __future__ import annotations

from typing import Any

from lora_mcp.jobs.kinds import KindHandler
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind
from lora_mcp.jobs.status import StatusParts
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import Settings


def default_kinds() -> list[KindHandler]:
    """Every job kind's handler (imports stay light: no torch, no pydantic_ai, no ray at this point)."""
    from lora_mcp.captioning.service import CAPTION_KIND
    from lora_mcp.review.service import REVIEW_KIND
    from lora_mcp.storage.service import IMPORT_KIND
    from lora_mcp.training.trainjob import TrainKind

    return [TrainKind(), CAPTION_KIND, REVIEW_KIND, IMPORT_KIND]


def open_manager(settings: Settings) -> JobManager:
    """A job manager for `settings`: every kind, the executor LORA_MCP_EXECUTOR names, and the GPU hand-off."""
    from lora_mcp.gpu_handoff import gpu_handoff_hooks

    return JobManager(
        settings,
        default_kinds(),
        before_gpu_launch=gpu_handoff_hooks(settings),
        status_parts=[storage_and_webhooks(settings)],
    )


def storage_and_webhooks(settings: Settings) -> StatusParts:
    """A job's automatic S3 upload and webhook deliveries, read from notify.db (only when they are configured)."""

    def parts(job: JobRecord) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if settings.upload_on_success and job.kind == JobKind.TRAIN:
            from lora_mcp.storage.autoupload import upload_state

            found["upload"] = upload_state(settings, job.id)
        if settings.webhook_urls:
            from lora_mcp.notify.state import delivery_state

            found["webhooks"] = delivery_state(settings, job.id)
        return found

    return parts
