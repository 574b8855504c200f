"""What a job directory records about its job, so that jobs.db can be rebuilt from the folders alone.

The job folders are the source of truth and jobs.db is an index of them. Each folder holds:
- `job.json`, written at submit: id, kind, lane, params, idempotency key, resumed_from, created_at;
- `command.json`, written at launch: the command and cwd, plus lane, started_at and supervisor_pid;
- `cancel_requested.json`, written when a running job is asked to stop;
- `result.json`, written at every end: state, times, exit code, error, outputs, progress.
The supervisor adds `child.pid` and `exit_code.json`. `recover` turns a folder into the columns of a job row: a
final job from its result, a launched one as running (the manager then finishes it from `exit_code.json` and the
log, or keeps tailing it), anything else as queued. Folders from before `job.json` existed are read as far as
their name and `params.json` allow. Standard library, `lora_mcp.fsutil` and the job models only.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lora_mcp.fsutil import write_text_atomic
from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase, Progress
from lora_mcp.jobs.supervisor import CHILD_PID_NAME, EXIT_CODE_NAME, LOG_NAME

log = logging.getLogger(__name__)

JOB_NAME = "job.json"
PARAMS_NAME = "params.json"
LAUNCH_NAME = "command.json"
CANCEL_NAME = "cancel_requested.json"
RESULT_NAME = "result.json"
LAUNCH_NOTES_NAME = "launch_notes.json"

LEGACY_ID = re.compile(r"^(?P<kind>train|caption|review)-(?P<when>\d{8}-\d{6})-[0-9a-f]{6}$")
LEGACY_SETTLE_SECONDS = 60.0
"""A folder without job.json this young may be a submit in progress in another process: leave it for now."""
LEGACY_LANE_KIND = {"train": "gpu", "caption": "gpu", "review": "cpu"}
"""Lanes of the kinds that existed before job.json: a fixed fact of that old folder format, not a kind registry."""


@dataclass(frozen=True)
class JobFile:
    """job.json: what submit knew about the job."""

    id: str
    kind: JobKind
    lane_kind: str
    params: dict[str, Any]
    idempotency_key: str | None
    resumed_from: str | None
    created_at: float


@dataclass(frozen=True)
class LaunchFile:
    """command.json: how and where the job was started."""

    command: list[str]
    cwd: str
    lane: str | None = None
    started_at: float | None = None
    supervisor_pid: int | None = None


@dataclass(frozen=True)
class ResultFile:
    """result.json: how the job ended."""

    state: JobState
    finished_at: float | None
    exit_code: int | None
    error: JobError | None
    outputs: dict[str, Any]
    progress: Progress
    cancel_requested_at: float | None


def write_job(job_dir: Path, record: JobFile) -> None:
    """Write job.json atomically (raises OSError)."""
    write_text_atomic(job_dir / JOB_NAME, json.dumps(asdict(record), indent=2))


def write_launch(job_dir: Path, launch: LaunchFile) -> None:
    """Write command.json atomically (raises OSError)."""
    write_text_atomic(job_dir / LAUNCH_NAME, json.dumps(asdict(launch)))


def write_cancel_request(job_dir: Path, at: float) -> None:
    """Record that a running job was asked to stop; never raises (jobs.db holds the request too)."""
    _best_effort(job_dir, CANCEL_NAME, json.dumps({"cancel_requested_at": at}))


def write_result(job_dir: Path, result: ResultFile) -> None:
    """Write result.json atomically; never raises (the outcome is in jobs.db already, a rebuild would miss it)."""
    data = {
        **asdict(result),
        "error": result.error.model_dump(mode="json") if result.error else None,
        "progress": result.progress.model_dump(mode="json"),
    }
    _best_effort(job_dir, RESULT_NAME, json.dumps(data, indent=2))


def write_launch_notes(job_dir: Path, notes: list[str]) -> None:
    """Record what happened just before a job started (read back by `read_launch_notes`)."""
    (job_dir / LAUNCH_NOTES_NAME).write_text(json.dumps(notes, indent=2), encoding="utf-8")


def read_launch_notes(job_dir: Path) -> list[str]:
    """The launch notes of a job, or [] when it has none (or they cannot be read)."""
    try:
        notes = json.loads((job_dir / LAUNCH_NOTES_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(n) for n in notes] if isinstance(notes, list) else []


def _best_effort(job_dir: Path, name: str, text: str) -> None:
    try:
        write_text_atomic(job_dir / name, text)
    except OSError as exc:
        log.warning("could not write %s: %s (a rebuild of jobs.db will not see it)", job_dir / name, exc)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_job(job_dir: Path) -> JobFile | None:
    """job.json, or None when absent or unreadable."""
    data = _read_json(job_dir / JOB_NAME)
    if data is None:
        return None
    try:
        return JobFile(
            id=str(data["id"]),
            kind=JobKind(data["kind"]),
            lane_kind=str(data["lane_kind"]),
            params=dict(data.get("params") or {}),
            idempotency_key=data.get("idempotency_key"),
            resumed_from=data.get("resumed_from"),
            created_at=float(data["created_at"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def read_launch(job_dir: Path) -> LaunchFile | None:
    """command.json, or None when absent or unreadable (older folders hold only command and cwd)."""
    data = _read_json(job_dir / LAUNCH_NAME)
    if data is None:
        return None
    try:
        return LaunchFile(
            command=[str(part) for part in data.get("command") or []],
            cwd=str(data.get("cwd") or ""),
            lane=data.get("lane"),
            started_at=_number(data.get("started_at")),
            supervisor_pid=int(data["supervisor_pid"]) if data.get("supervisor_pid") else None,
        )
    except (TypeError, ValueError):
        return None


def read_result(job_dir: Path) -> ResultFile | None:
    """result.json, or None when absent, unreadable or not a final state."""
    data = _read_json(job_dir / RESULT_NAME)
    if data is None:
        return None
    try:
        state = JobState(data["state"])
        result = ResultFile(
            state=state,
            finished_at=_number(data.get("finished_at")),
            exit_code=int(data["exit_code"]) if data.get("exit_code") is not None else None,
            error=JobError.model_validate(data["error"]) if data.get("error") else None,
            outputs=dict(data.get("outputs") or {}),
            progress=Progress.model_validate(data.get("progress") or {}),
            cancel_requested_at=_number(data.get("cancel_requested_at")),
        )
    except (KeyError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return None
    return result if state.final else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def legacy_job(job_dir: Path, now: float) -> JobFile | None:
    """A JobFile for a folder from before job.json existed, read from its name and params.json; None if not one."""
    match = LEGACY_ID.match(job_dir.name)
    if match is None or not job_dir.is_dir():
        return None
    mtime = job_dir.stat().st_mtime
    if now - mtime < LEGACY_SETTLE_SECONDS:
        return None
    try:
        created_at = time.mktime(time.strptime(match["when"], "%Y%m%d-%H%M%S"))  # new_job_id uses local time
    except (OverflowError, ValueError):
        created_at = mtime
    kind = JobKind(match["kind"])
    params = _read_json(job_dir / PARAMS_NAME) or {}
    lane_kind = LEGACY_LANE_KIND[kind.value]
    if kind.value == "caption" and params.get("backend") not in (None, "joycaption"):
        lane_kind = "cpu"  # as start_captioning chose: only JoyCaption needs a GPU
    return JobFile(job_dir.name, kind, lane_kind, params, None, None, created_at)


def recover(job_dir: Path, now: float) -> dict[str, Any] | None:
    """The columns of a job row rebuilt from its folder, or None when the folder is not a job (or not yet one)."""
    try:
        job = read_job(job_dir) or legacy_job(job_dir, now)
    except OSError:
        return None
    if job is None or job.id != job_dir.name:
        return None
    row: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind.value,
        "lane_kind": job.lane_kind,
        "job_dir": job_dir,
        "params": job.params,
        "idempotency_key": job.idempotency_key,
        "resumed_from": job.resumed_from,
        "created_at": job.created_at,
        "log_offset": 0,
    }
    launch = read_launch(job_dir)
    exit_record = _read_json(job_dir / EXIT_CODE_NAME)
    result = read_result(job_dir)
    if launch is not None:
        row.update(lane=launch.lane, started_at=launch.started_at, supervisor_pid=launch.supervisor_pid)
    if exit_record is not None and row.get("started_at") is None:
        row["started_at"] = _number(exit_record.get("started_at"))
    row["child_pid"] = _child_pid(job_dir)
    if result is not None:
        try:
            size = (job_dir / LOG_NAME).stat().st_size
        except OSError:
            size = 0
        row.update(
            state=result.state.value,
            finished_at=result.finished_at,
            exit_code=result.exit_code,
            error=result.error,
            outputs=result.outputs,
            progress=result.progress,
            cancel_requested_at=result.cancel_requested_at,
            log_offset=size,
        )
    elif launch is not None or exit_record is not None:
        cancel = _read_json(job_dir / CANCEL_NAME) or {}
        row.update(
            state=JobState.RUNNING.value,
            progress=Progress(phase=Phase.STARTING, message="re-imported from its job folder"),
            cancel_requested_at=_number(cancel.get("cancel_requested_at")),
        )
    else:
        row.update(state=JobState.QUEUED.value, progress=Progress(phase=Phase.QUEUED))
    return row


def _child_pid(job_dir: Path) -> int | None:
    try:
        return int((job_dir / CHILD_PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None
