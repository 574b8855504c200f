"""Start and resume training jobs: the domain calls behind start_training and resume_training."""

from __future__ import annotations

from lora_mcp.errors import InvalidInput
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.paths import confine_existing_file
from lora_mcp.training.trainjob import CONFIG_COPY, copy_config, preflight, train_params


def start_training(manager: JobManager, config_path: str, idempotency_key: str | None = None) -> JobStatus:
    """Preflight an AI-Toolkit config and queue it as a train job (the same key returns the same job)."""
    if idempotency_key is not None and (existing := manager.store.by_idempotency_key(idempotency_key)):
        return job_status(manager, existing)
    path = confine_existing_file(config_path, manager.settings.roots, what="config_path")
    plan = preflight(path, manager.settings)
    job = manager.submit(
        JobKind.TRAIN, train_params(path, plan), idempotency_key=idempotency_key, prepare=copy_config(path)
    )
    return job_status(manager, job)


def resume_training(manager: JobManager, job_id: str) -> JobStatus:
    """Run a stopped train job's frozen config again; AI-Toolkit continues from its newest checkpoint."""
    old = manager.get(job_id)
    if old.kind != JobKind.TRAIN:
        raise InvalidInput(f"Job {job_id} is a {old.kind.value} job; only train jobs resume.", field="job_id")
    if not old.state.final:
        raise InvalidInput(
            f"Job {job_id} is still {old.state.value}.",
            field="job_id",
            hint="Call wait_for_job, or cancel_job first if you want to restart it.",
        )
    frozen = old.job_dir / CONFIG_COPY
    preflight(frozen, manager.settings)
    job = manager.submit(JobKind.TRAIN, dict(old.params), resumed_from=old.id, prepare=copy_config(frozen))
    return job_status(manager, job)
