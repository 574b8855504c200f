"""Executors: where the children of jobs run. `local` (supervised processes here) or `ray` (Ray Jobs on a cluster)."""

from __future__ import annotations

import json
from pathlib import Path

from lora_mcp.errors import InvalidInput
from lora_mcp.jobs.executors.base import EXECUTOR_NAME, ChildExit, Executor, ExecutorUnavailable, Launched
from lora_mcp.jobs.executors.local import LocalExecutor
from lora_mcp.settings import Settings

__all__ = [
    "ChildExit",
    "Executor",
    "ExecutorUnavailable",
    "Launched",
    "LocalExecutor",
    "executor_name",
    "make_executor",
]


def make_executor(name: str, settings: Settings) -> Executor:
    """The executor called `name`, configured from `settings` (Ray itself is imported only when first used)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from lora_mcp.jobs.executors.ray import RayExecutor

        return RayExecutor.from_settings(settings)
    raise InvalidInput(f"Unknown executor {name!r}.", hint="Set LORA_MCP_EXECUTOR to local or ray.")


def executor_name(job_dir: Path) -> str:
    """Which executor launched the job in `job_dir` (`local` when none is recorded: every job before executors)."""
    try:
        return str(json.loads((job_dir / EXECUTOR_NAME).read_text(encoding="utf-8"))["executor"])
    except (OSError, ValueError, KeyError, TypeError):
        return "local"
