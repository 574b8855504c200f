"""The `ray` executor: each child is a Ray job, submitted to a cluster through its Jobs API.

lora-mcp stays the client: its queue still orders the jobs and its lanes still bound how many run at once; Ray
places each one on a node with the resources it asks for (`entrypoint_num_gpus` from the job's lane kind). The Ray
submission id is the lora-mcp job id, so a restarted server finds its jobs again by id alone.

The child's log is mirrored from `get_job_logs` into `<job_dir>/log.txt` and parsed there exactly like a local job's.
`<job_dir>/executor.json` records how many bytes of log.txt came before the Ray output (lora-mcp's own pre-launch
lines), so the mirror resumes at the right byte after a restart. Datasets, outputs, the job dirs (the frozen config)
and AI-Toolkit itself must be at the same paths on every node: a shared mount. `probe_shared_paths` checks that.

Ray is imported only when a job is launched or looked at, never at server start-up.
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_mcp.errors import OperationFailed
from lora_mcp.fsutil import write_text_atomic
from lora_mcp.jobs.executors.base import EXECUTOR_NAME, ChildExit, ExecutorUnavailable, Launched
from lora_mcp.jobs.executors.local import STARTUP_GRACE, read_log_file
from lora_mcp.jobs.kinds import LaunchSpec
from lora_mcp.jobs.models import JobError
from lora_mcp.jobs.store import JobRecord
from lora_mcp.jobs.supervisor import LOG_NAME
from lora_mcp.secrets import SECRET_NAME
from lora_mcp.settings import Settings

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
NOT_PASSED = ("CUDA_VISIBLE_DEVICES", "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TEMP", "TMP", "LD_LIBRARY_PATH")
"""Left to each node: Ray picks the GPU, and paths, user and temp folders are the node's own. Secrets (`HF_TOKEN`...)
are left out too: a Ray job's runtime_env is shown on the cluster's dashboard; a node gets its own from the
environment `ray start` ran in."""


def remote_variable(name: str) -> bool:
    """True for a trainer environment variable a Ray job carries to whichever node runs it."""
    return name not in NOT_PASSED and not SECRET_NAME.search(name)


@dataclass
class _Mirror:
    """Per-job state: the newest Ray status and when the log was last copied."""

    base: int
    status: str | None = None
    synced_at: float = -1e9
    ended: ChildExit | None = None


def entrypoint(spec: LaunchSpec) -> str:
    """The shell line Ray runs: the same command in the same folder (`exec`, so Ray's stop signal reaches it)."""
    return f"cd {shlex.quote(str(spec.cwd))} && exec {shlex.join(spec.command)}"


class RayExecutor:
    """Children as Ray jobs on the cluster at `address` (its dashboard, e.g. http://head:8265)."""

    name = "ray"

    def __init__(self, address: str | None, *, gpus_per_job: float = 1.0, poll_interval: float = 0.5) -> None:
        self.address = address
        self.gpus_per_job = gpus_per_job
        self.poll_interval = poll_interval
        self._client: Any = None
        self._lock = threading.Lock()
        self._mirrors: dict[str, _Mirror] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RayExecutor:
        """The executor LORA_MCP_RAY_ADDRESS, LORA_MCP_RAY_GPUS_PER_JOB and LORA_MCP_RAY_POLL_INTERVAL describe."""
        return cls(
            settings.ray_address, gpus_per_job=settings.ray_gpus_per_job, poll_interval=settings.ray_poll_interval
        )

    # -- the cluster ------------------------------------------------------------------------------------------

    def client(self) -> Any:
        """The JobSubmissionClient (created on first use; it checks that the cluster answers)."""
        with self._lock:
            if self._client is None:
                if not self.address:
                    raise OperationFailed(
                        "LORA_MCP_EXECUTOR=ray needs the cluster's address, and LORA_MCP_RAY_ADDRESS is not set.",
                        hint="Set LORA_MCP_RAY_ADDRESS to the Ray head's dashboard, e.g. http://ray-head:8265.",
                    )
                try:
                    from ray.job_submission import JobSubmissionClient
                except ImportError as exc:
                    raise OperationFailed(
                        "LORA_MCP_EXECUTOR=ray but Ray is not installed.",
                        hint="pip install 'lora-mcp[ray]' (ray[default]) in the server's environment.",
                    ) from exc
                self._client = JobSubmissionClient(self.address)
            return self._client

    # -- the Executor interface -------------------------------------------------------------------------------

    def launch(self, job: JobRecord, spec: LaunchSpec) -> Launched:
        """Submit the job with its id as the submission id; the log mirror starts after the current log.txt."""
        base = (job.job_dir / LOG_NAME).stat().st_size
        write_text_atomic(
            job.job_dir / EXECUTOR_NAME,
            json.dumps({"executor": self.name, "address": self.address, "submission_id": job.id, "log_base": base}),
        )
        env = {k: v for k, v in {"PYTHONUNBUFFERED": "1", **spec.env}.items() if remote_variable(k)}
        gpus = self.gpus_per_job if job.lane_kind == "gpu" else 0
        try:
            self.client().submit_job(
                entrypoint=entrypoint(spec),
                submission_id=job.id,
                runtime_env={"env_vars": env},
                entrypoint_num_gpus=gpus,
                metadata={"lora_mcp_job": job.id, "kind": job.kind.value},
            )
        except Exception as exc:  # unreachable cluster, refused request: the job fails, with what to check
            raise ExecutorUnavailable(
                JobError(
                    code="preflight",
                    message=f"Ray at {self.address} did not accept job {job.id}: {exc}",
                    hint="Check that the cluster is up (`ray status` on the head) and LORA_MCP_RAY_ADDRESS points "
                    "at its dashboard (port 8265 by default); then start the job again.",
                )
            ) from exc
        self._mirrors[job.id] = _Mirror(base=base)
        log.info("submitted job %s to Ray at %s (%s GPU)", job.id, self.address, gpus)
        return Launched()

    def reattach(self, job: JobRecord) -> None:
        """Find the Ray job by its submission id (the job id); the mirror resumes where log.txt ends."""
        self._mirror(job)

    def read_log(self, job: JobRecord, offset: int, limit: int) -> bytes | None:
        """Copy new Ray log bytes into log.txt (at most every poll_interval), then read it like a local log."""
        self._sync(job, force=False)
        return read_log_file(job.job_dir, offset, limit)

    def poll(self, job: JobRecord) -> ChildExit | None:
        """None while Ray runs (or queues) it; once it ended, the whole log is mirrored and its exit code read."""
        mirror = self._mirror(job)
        if mirror.ended is not None:
            return mirror.ended
        if time.monotonic() - mirror.synced_at < self.poll_interval and mirror.status not in TERMINAL:
            return None
        status = self._status(job, mirror)
        if status not in TERMINAL:
            return None
        self._sync(job, force=True)
        mirror.ended = ChildExit(self._exit_code(job, status))
        return mirror.ended

    def signal(self, job: JobRecord, signum: int) -> None:
        """Ask Ray to stop the job (Ray sends SIGTERM, then SIGKILL after its own grace period)."""
        try:
            self.client().stop_job(job.id)
        except Exception as exc:  # already over, or the cluster is briefly away: the next poll tells
            log.warning("stop_job(%s) with signal %s failed: %s", job.id, signal.Signals(signum).name, exc)

    def child_pid(self, job: JobRecord) -> int | None:
        """A Ray job has no pid on this machine."""
        return None

    def release(self, job: JobRecord) -> None:
        """Forget the mirror state."""
        self._mirrors.pop(job.id, None)

    # -- internals --------------------------------------------------------------------------------------------

    def _mirror(self, job: JobRecord) -> _Mirror:
        mirror = self._mirrors.get(job.id)
        if mirror is None:
            try:
                record = json.loads((job.job_dir / EXECUTOR_NAME).read_text(encoding="utf-8"))
                base = int(record["log_base"])
            except (OSError, ValueError, KeyError, TypeError):
                base = 0
            mirror = self._mirrors[job.id] = _Mirror(base=base)
        return mirror

    def _status(self, job: JobRecord, mirror: _Mirror) -> str | None:
        try:
            mirror.status = str(self.client().get_job_status(job.id).value)
        except Exception as exc:
            if "does not exist" in str(exc) and time.time() - (job.started_at or 0) >= STARTUP_GRACE:
                self._note(job, f"Ray has no job {job.id} (was the cluster restarted?)")
                mirror.status = "FAILED"
            else:  # the cluster is briefly unreachable, or another manager is still submitting: look again later
                log.warning("Ray status of job %s unavailable: %s", job.id, exc)
        return mirror.status

    def _sync(self, job: JobRecord, *, force: bool) -> None:
        """Append the part of Ray's log that log.txt lacks."""
        mirror = self._mirror(job)
        now = time.monotonic()
        if mirror.ended is not None or (not force and now - mirror.synced_at < self.poll_interval):
            return
        mirror.synced_at = now
        if not force:
            self._status(job, mirror)
        try:
            text: str = self.client().get_job_logs(job.id)
        except Exception as exc:
            log.debug("Ray logs of job %s unavailable: %s", job.id, exc)
            return
        path = job.job_dir / LOG_NAME
        have = path.stat().st_size - mirror.base
        data = text.encode("utf-8", "replace")
        if len(data) > have:
            with open(path, "ab") as fh:
                fh.write(data[have:])

    def _exit_code(self, job: JobRecord, status: str) -> int | None:
        try:
            info = self.client().get_job_info(job.id)
        except Exception:
            info = None
        code = getattr(info, "driver_exit_code", None)
        if code is not None:
            return int(code)
        if status == "SUCCEEDED":
            return 0
        if status == "STOPPED":
            return -signal.SIGTERM
        message = getattr(info, "message", None)
        if message:
            self._note(job, f"Ray: {message.splitlines()[0]}")
        return None

    def _note(self, job: JobRecord, line: str) -> None:
        """A line of lora-mcp's own in the job log (after the mirrored part, which is then complete)."""
        with open(job.job_dir / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(f"\nlora-mcp: {line}\n")


PROBE_CACHE_SECONDS = 300.0
_probed: dict[tuple[str, ...], float] = {}


def check_shared_paths(executor: RayExecutor, read: list[Path], write: list[Path], timeout: float = 120.0) -> None:
    """`probe_shared_paths`, at most once per PROBE_CACHE_SECONDS for the same cluster and paths (a probe is a Ray
    job: a second or more)."""
    key = (str(executor.address), *map(str, read), "|", *map(str, write))
    if time.monotonic() - _probed.get(key, -1e9) < PROBE_CACHE_SECONDS:
        return
    probe_shared_paths(executor, read, write, timeout)
    _probed[key] = time.monotonic()


def probe_shared_paths(executor: RayExecutor, read: list[Path], write: list[Path], timeout: float = 120.0) -> None:
    """Run a tiny Ray job that must see every path in `read` and leave a file in each of `write` that this machine
    then sees: the same storage, not merely the same path names.

    Raises OperationFailed naming what the cluster side cannot see. No GPU is asked for, so the probe shows the
    storage of whichever node runs it: the paths should be on one mount that every node has (docs/ray.md).
    """
    client = executor.client()
    token = f"lora-mcp-probe-{uuid.uuid4().hex[:12]}"
    markers = [folder / f".{token}" for folder in write]
    code = (
        "import json, os, sys\n"
        "paths, markers, token = json.loads(sys.argv[1])\n"
        "missing = [p for p in paths if not os.access(p, os.R_OK)]\n"
        "for m in markers:\n"
        "    try:\n"
        "        open(m, 'w').write(token)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('LORA_MCP_PROBE ' + json.dumps(missing), flush=True)\n"
    )
    argument = json.dumps([[str(p) for p in read], [str(m) for m in markers], token])
    submission = client.submit_job(
        entrypoint=f"python3 -c {shlex.quote(code)} {shlex.quote(argument)}", submission_id=token, entrypoint_num_gpus=0
    )
    deadline = time.monotonic() + timeout
    while str(client.get_job_status(submission).value) not in TERMINAL:
        if time.monotonic() > deadline:
            client.stop_job(submission)
            raise OperationFailed(
                f"The Ray cluster at {executor.address} did not run a 1-second probe job within {timeout:.0f} s.",
                hint="Check `ray status` on the head: are its nodes up, with a free CPU?",
            )
        time.sleep(0.2)
    logs = client.get_job_logs(submission)
    line = next((ln for ln in logs.splitlines() if ln.startswith("LORA_MCP_PROBE ")), None)
    missing = json.loads(line.split(" ", 1)[1]) if line else [str(p) for p in read]
    for marker in markers:
        seen = marker.is_file() and marker.read_text(encoding="utf-8") == token
        marker.unlink(missing_ok=True)
        if not seen:
            missing.append(f"{marker.parent} (a file the probe wrote there did not show up on this machine)")
    if missing:
        raise OperationFailed(
            f"The Ray cluster at {executor.address} cannot see: {'; '.join(missing)}.",
            hint="Datasets, outputs, LORA_MCP_HOME and AI-Toolkit must be at the same paths on every Ray node: put "
            "them on a shared mount (NFS, a cluster file system) mounted at the same place (docs/ray.md).",
        )
