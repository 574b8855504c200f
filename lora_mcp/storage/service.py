"""import_dataset as a domain call: plan, then download in the call (small) or queue an `import` job (large)."""

from __future__ import annotations

from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.worker import WorkerKind
from lora_mcp.storage.importer import ImportResult, Progress, is_large, plan_import, run_import

NEXT_STEPS = {
    JobState.SUCCEEDED: "Done. outputs lists the files downloaded, skipped as unchanged, conflicts and refused keys; "
    "inspect_dataset on the folder next.",
    JobState.FAILED: "Read error.hint, fix the cause, then call import_dataset again: files already imported are "
    "skipped.",
    JobState.CANCELLED: "Cancelled; the files written so far are complete. import_dataset again does the rest.",
}
IMPORT_KIND = WorkerKind(
    kind=JobKind.IMPORT, lane_kind="cpu", module="lora_mcp.storage.import_worker", next_steps=NEXT_STEPS
)
"""The job kind of a large import: a worker on a CPU lane."""


def import_dataset(manager: JobManager, source: str, folder: str, progress: Progress | None = None) -> ImportResult:
    """Import `s3://bucket/prefix` into `folder` (inside the roots); a large import is queued as a job."""
    plan = plan_import(manager.settings, source, folder)
    if not is_large(plan):
        return run_import(manager.settings, plan, progress)
    record = manager.submit(JobKind.IMPORT, {"source": source, "folder": str(plan.folder)}, lane_kind="cpu")
    return ImportResult(
        source=plan.source.uri,
        folder=str(plan.folder),
        job_id=record.id,
        refused_keys=plan.refused,
        ignored=plan.ignored,
        next_step=f"{len(plan.files)} files (up to {plan.new_bytes >> 20} MiB) are importing as job {record.id}: "
        f"wait_for_job(job_id='{record.id}') until it ends.",
    )
