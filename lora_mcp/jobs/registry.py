"""The job kinds this server runs. A new kind is one handler added here; the manager does not change."""

from __future__ import annotations

from lora_mcp.jobs.kinds import KindHandler
from lora_mcp.jobs.manager import JobManager
from lora_mcp.settings import Settings


def default_kinds() -> list[KindHandler]:
    """Every job kind's handler (imports stay light: no torch, no pydantic_ai at this point)."""
    from lora_mcp.training.trainjob import TrainKind

    return [TrainKind()]


def open_manager(settings: Settings) -> JobManager:
    """A job manager for `settings` with every kind registered."""
    return JobManager(settings, default_kinds())
