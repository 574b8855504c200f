"""The contract between the job manager and a kind of job.

The jobs layer knows no kind: every kind (training, captioning, review, ...) is a `KindHandler` that the application
layer (`lora_mcp.assembly`) hands to the manager. A handler says how to launch its child, how to read its log, what
it produced, how it ended, and what an agent reads about it (next steps, status extras).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lora_mcp.jobs.models import JobError, JobKind, JobState, Progress
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import Settings


class LogParser(Protocol):
    """Turns a job's log, fed in arbitrary chunks, into progress."""

    progress: Progress

    def feed(self, chunk: str) -> None: ...

    def tail(self, n: int) -> list[str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LaunchSpec:
    """How to start a job's child process."""

    command: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    inherit_env: bool = True
    """False: the child gets `env` alone (plus PYTHONUNBUFFERED and the GPU choice), not the server's environment."""


class LaunchRefused(Exception):
    """Raised by `launch_spec` when a job must not start now (e.g. too little free GPU memory); fails the job."""

    def __init__(self, error: JobError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Outcome:
    """How a finished job ended."""

    state: JobState
    error: JobError | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


class KindHandler(Protocol):
    """Everything kind-specific the manager needs."""

    # Read-only, so frozen dataclasses (lora_mcp.jobs.worker.WorkerKind) qualify as well as class attributes.
    @property
    def kind(self) -> JobKind: ...

    @property
    def lane_kind(self) -> str:  # "gpu" or "cpu"
        ...

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec: ...

    def make_parser(self, job: JobRecord) -> LogParser: ...

    def outputs(self, job: JobRecord) -> dict[str, Any]: ...

    def outcome(self, job: JobRecord, returncode: int | None, parser: LogParser, cancel_requested: bool) -> Outcome: ...

    @property
    def next_steps(self) -> Mapping[JobState, str]:
        """What an agent should call next, per state, where the generic text (lora_mcp.jobs.status) does not fit."""
        ...

    def status_extras(self, job: JobRecord, outputs: dict[str, Any]) -> dict[str, Any]:
        """Kind-specific fields of the job status (e.g. `training_result`), given the job's current outputs."""
        ...
