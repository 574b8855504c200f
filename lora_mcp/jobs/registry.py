"""The job kinds this server runs. A new kind is one handler added here; the manager does not change."""

from __future__ import annotations

from lora_mcp.jobs.kinds import KindHandler
from lora_mcp.jobs.manager import JobManager
from lora_mcp.settings import Settings


def default_kinds() -> list[KindHandler]:
    """Every job kind's handler (imports stay light: no torch, no pydantic_ai at this point)."""
    from lora_mcp.captioning.service import CAPTION_KIND
    from lora_mcp.review.service import REVIEW_KIND
    from lora_mcp.training.trainjob import TrainKind

    return [TrainKind(), CAPTION_KIND, REVIEW_KIND]


def open_manager(settings: Settings) -> JobManager:
    """A job manager for `settings` with every kind registered and the GPU hand-off the settings ask for."""
    from lora_mcp.gpu_handoff import gpu_handoff_hooks

    return JobManager(settings, default_kinds(), before_gpu_launch=gpu_handoff_hooks(settings))
