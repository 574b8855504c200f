"""The executor interface: how the job manager talks to "a running child", wherever it runs.

The manager owns the queue, the lanes, the parsers and the store; an executor owns the child. It launches a
`LaunchSpec`, reports whether the child still runs and how it ended, hands over the log bytes the child wrote, sends
the cancel signal, and finds a child again by its job id after lora-mcp restarted. Every executor keeps the job's log
in `<job_dir>/log.txt`, so the log tools, the resources and a rebuild of jobs.db read one place whatever ran the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lora_mcp.jobs.kinds import LaunchSpec
from lora_mcp.jobs.models import JobError
from lora_mcp.jobs.store import JobRecord

EXECUTOR_NAME = "executor.json"
"""In a job dir: which executor (other than `local`) launched the job, so a restart reattaches through the same one."""


@dataclass(frozen=True)
class Launched:
    """What an executor reports once a child was started."""

    supervisor_pid: int | None = None
    """The local supervisor's pid (recorded in jobs.db and command.json); None where no local process watches."""


@dataclass(frozen=True)
class ChildExit:
    """How a child ended, as far as its executor knows."""

    returncode: int | None
    """The child's exit code (negative: killed by that signal); None when it is gone without leaving one."""


class ExecutorUnavailable(Exception):
    """Raised by `launch` when the child cannot be started at all; the job fails with `error`."""

    def __init__(self, error: JobError) -> None:
        super().__init__(error.message)
        self.error = error


class Executor(Protocol):
    """Runs the children of jobs: on this machine (`local`) or on a cluster (`ray`)."""

    name: str

    def launch(self, job: JobRecord, spec: LaunchSpec) -> Launched:
        """Start `spec` for `job` (claimed, on `job.lane`); output goes to the job's log."""
        ...

    def reattach(self, job: JobRecord) -> None:
        """Take over a job launched earlier (by this process before a restart, or by another manager)."""
        ...

    def read_log(self, job: JobRecord, offset: int, limit: int) -> bytes | None:
        """Up to `limit` log bytes from `offset` (b"" when nothing is new; None when the log cannot be read)."""
        ...

    def poll(self, job: JobRecord) -> ChildExit | None:
        """None while the child runs (or is still being started); how it ended once it has."""
        ...

    def signal(self, job: JobRecord, signum: int) -> None:
        """Deliver a cancel signal: SIGINT asks the child to stop, SIGKILL ends it."""
        ...

    def child_pid(self, job: JobRecord) -> int | None:
        """The child's pid where it runs on this machine, else None."""
        ...

    def release(self, job: JobRecord) -> None:
        """The job is final: drop what the executor kept for it."""
        ...
