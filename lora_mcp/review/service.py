"""Start review jobs (resuming an interrupted one of the same review) and apply reviews: what the tools call.

Resume semantics: `review_captions` with the same folder, trigger word and options as a review job that failed or
was cancelled starts a NEW job (`resumed_from` = the old id) seeded with a copy of the old job's checkpoint and its
thread id, so captions the old job had reviewed are not sent to the LLM again. A finished review is never resumed:
asking again gives a fresh review. A review of the same options still queued or running is returned as it is.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from lora_mcp.errors import OperationFailed
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.jobs.store import JobRecord
from lora_mcp.jobs.worker import WorkerKind
from lora_mcp.review.params import CHECKPOINT_NAME, ReviewParams

NEXT_STEPS = {
    JobState.SUCCEEDED: "Read outputs.details.review_file, set each image's decision (or keep pending to accept "
    "every suggested fix), then call apply_caption_review(review_file).",
    JobState.FAILED: "Read error.hint, fix the cause, then call review_captions again with the same arguments: "
    "it resumes and keeps the captions already reviewed.",
    JobState.CANCELLED: "Call review_captions again with the same arguments to resume where it stopped.",
}

REVIEW_KIND = WorkerKind(kind=JobKind.REVIEW, lane_kind="cpu", module="lora_mcp.review.worker", next_steps=NEXT_STEPS)


def review_status(manager: JobManager, job: JobRecord) -> JobStatus:
    """A review job's status (its next steps are about reviews, also when the manager lacks REVIEW_KIND)."""
    status = job_status(manager, job)
    return status.model_copy(update={"next_step": NEXT_STEPS.get(job.state, status.next_step)})


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


def _previous(manager: JobManager, fingerprint: str) -> JobRecord | None:
    for job in manager.store.list_jobs(kind=JobKind.REVIEW):  # newest first
        if job.params.get("fingerprint") == fingerprint:
            return job
    return None


def start_review(manager: JobManager, params: ReviewParams, *, resume: bool = True) -> JobStatus:
    """Queue a review job, or resume the interrupted one with the same options, or return the one still running."""
    missing = [name for name in ("pydantic_ai", "langgraph.checkpoint.sqlite") if not _installed(name)]
    if missing:
        raise OperationFailed(
            f"Caption review needs {', '.join(missing)}, which is not installed.",
            hint="Install the review extra: pip install 'lora-mcp[review]', then call review_captions again.",
        )
    fingerprint = params.fingerprint()
    previous = _previous(manager, fingerprint)
    if previous is not None and not previous.state.final:
        return review_status(manager, previous)
    resumable = (
        resume
        and previous is not None
        and previous.state in (JobState.FAILED, JobState.CANCELLED)
        and (previous.job_dir / CHECKPOINT_NAME).is_file()
    )
    thread_id = None
    resumed_from = None
    prepare = None
    if resumable and previous is not None:
        thread_id = previous.params.get("thread_id") or previous.id
        resumed_from = previous.id
        source = previous.job_dir

        def prepare(job_dir: Path) -> None:
            for suffix in ("", "-wal", "-shm"):
                if (source / f"{CHECKPOINT_NAME}{suffix}").is_file():
                    shutil.copy2(source / f"{CHECKPOINT_NAME}{suffix}", job_dir / f"{CHECKPOINT_NAME}{suffix}")

    raw = {**params.model_copy(update={"thread_id": thread_id}).model_dump(mode="json"), "fingerprint": fingerprint}
    job = manager.submit(JobKind.REVIEW, raw, resumed_from=resumed_from, prepare=prepare)
    return review_status(manager, job)
