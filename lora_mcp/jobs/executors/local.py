"""The `local` executor: each child runs on this machine under `lora_mcp.jobs.supervisor`.

The supervisor starts the child in a session of its own, appends its output to the job log and writes the exit code
when it ends, so a job outlives the server; reattaching needs nothing but the job dir and the pids in jobs.db.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lora_mcp.jobs.executors.base import ChildExit, Launched
from lora_mcp.jobs.kinds import LaunchSpec
from lora_mcp.jobs.store import JobRecord
from lora_mcp.jobs.supervisor import CHILD_PID_NAME, EXIT_CODE_NAME, LOG_NAME

STARTUP_GRACE = 10.0  # seconds a claimed job may have no supervisor pid yet (another manager is launching it)


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read_child_pid(job_dir: Path) -> int | None:
    """The pid the supervisor recorded for its child, if any."""
    try:
        return int((job_dir / CHILD_PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def read_exit_code(job_dir: Path) -> dict[str, Any] | None:
    """The supervisor's exit record, once the child has ended."""
    try:
        return dict(json.loads((job_dir / EXIT_CODE_NAME).read_text()))
    except (OSError, ValueError):
        return None


def read_log_file(job_dir: Path, offset: int, limit: int) -> bytes | None:
    """Up to `limit` bytes of the job log from `offset`; None when it cannot be read."""
    try:
        with open(job_dir / LOG_NAME, "rb") as fh:
            fh.seek(offset)
            return fh.read(limit)
    except OSError:
        return None


class LocalExecutor:
    """Children as supervised processes on this machine (the default)."""

    name = "local"

    def __init__(self) -> None:
        self._popens: dict[str, subprocess.Popen[bytes]] = {}

    def launch(self, job: JobRecord, spec: LaunchSpec) -> Launched:
        """Start the supervisor (in its own session) that runs `spec`; the GPU lane picks CUDA_VISIBLE_DEVICES."""
        env = {**(os.environ if spec.inherit_env else {}), "PYTHONUNBUFFERED": "1", **spec.env}
        if job.lane and job.lane.startswith("gpu:"):
            env["CUDA_VISIBLE_DEVICES"] = job.lane.split(":", 1)[1]
        command = [sys.executable, "-m", "lora_mcp.jobs.supervisor", str(job.job_dir), str(spec.cwd), "--"]
        with open(job.job_dir / "supervisor.log", "ab") as err:
            popen = subprocess.Popen(
                [*command, *spec.command],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        self._popens[job.id] = popen
        return Launched(supervisor_pid=popen.pid)

    def reattach(self, job: JobRecord) -> None:
        """Nothing to do: the pids are in jobs.db and the exit code will be in the job dir."""

    def read_log(self, job: JobRecord, offset: int, limit: int) -> bytes | None:
        """Read the log file the supervisor appends to."""
        return read_log_file(job.job_dir, offset, limit)

    def poll(self, job: JobRecord) -> ChildExit | None:
        """Ended once the exit record exists, or once neither the supervisor nor the child is alive."""
        popen = self._popens.get(job.id)
        if popen is not None:
            popen.poll()  # reap our own supervisor so it does not linger as a zombie
        exit_record = read_exit_code(job.job_dir)
        child_pid = self.child_pid(job)
        starting = job.supervisor_pid is None and time.time() - (job.started_at or 0) < STARTUP_GRACE
        if exit_record is None and (starting or pid_alive(job.supervisor_pid) or pid_alive(child_pid)):
            return None
        return ChildExit(exit_record["returncode"] if exit_record else None)

    def signal(self, job: JobRecord, signum: int) -> None:
        """Signal the child's process group, or the supervisor while the child is not up yet."""
        child_pid = self.child_pid(job)
        targets = [("group", child_pid)] if pid_alive(child_pid) else [("pid", job.supervisor_pid)]
        for how, pid in targets:
            if not pid:
                continue
            try:
                if how == "group":
                    os.killpg(pid, signum)
                else:
                    os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def child_pid(self, job: JobRecord) -> int | None:
        """From jobs.db, else from the pid file the supervisor wrote."""
        return job.child_pid or read_child_pid(job.job_dir)

    def release(self, job: JobRecord) -> None:
        """Forget the supervisor handle (it was reaped by `poll`)."""
        self._popens.pop(job.id, None)
