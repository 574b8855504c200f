"""Start and resume training jobs: the domain calls behind start_training and resume_training."""

from __future__ import annotations

from lora_mcp.errors import InvalidInput, PreconditionFailed
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.paths import confine_existing_file
from lora_mcp.training.plan import load_plan
from lora_mcp.training.trainjob import freeze_config, frozen_plan, preflight, train_params, trainer_paths


def start_training(manager: JobManager, config_path: str, idempotency_key: str | None = None) -> JobStatus:
    """Plan and preflight an AI-Toolkit config, then queue exactly the validated bytes as a train job.

    The same idempotency key returns the same job.
    """
    if idempotency_key is not None and (existing := manager.store.by_idempotency_key(idempotency_key)):
        return job_status(manager, existing)
    path = confine_existing_file(config_path, manager.settings.roots, what="config_path")
    trainer_paths(manager.settings)  # a missing AI-Toolkit is the first thing to fix, whatever the config says
    plan = load_plan(path, manager.settings)  # the file is read once; everything below uses these bytes
    preflight(plan, manager.settings)
    job = manager.submit(
        JobKind.TRAIN,
        train_params(plan, str(path)),
        idempotency_key=idempotency_key,
        prepare=freeze_config(plan),
    )
    return job_status(manager, job)


def resume_training(manager: JobManager, job_id: str) -> JobStatus:
    """Run a failed or cancelled train job's frozen config again; AI-Toolkit continues from its newest checkpoint."""
    old = manager.get(job_id)
    if old.kind != JobKind.TRAIN:
        raise InvalidInput(f"Job {job_id} is a {old.kind.value} job; only train jobs resume.", field="job_id")
    if not old.state.final:
        raise PreconditionFailed(
            f"Job {job_id} is still {old.state.value}.",
            retryable=True,
            field="job_id",
            hint="Call wait_for_job, or cancel_job first if you want to restart it.",
        )
    if old.state == JobState.SUCCEEDED:
        raise PreconditionFailed(
            f"Job {job_id} already succeeded: its LoRA is {old.outputs.get('lora_path') or 'in its outputs'}; "
            "resuming would only save the same final file again.",
            retryable=False,
            field="job_id",
            hint="To train longer, call generate_training_config with more steps (same name and training folder: "
            "AI-Toolkit continues from the saved step) and start_training.",
        )
    plan = frozen_plan(old, manager.settings)
    preflight(plan, manager.settings)
    job = manager.submit(
        JobKind.TRAIN,
        train_params(plan, str(old.params.get("source_config", ""))),
        resumed_from=old.id,
        prepare=freeze_config(plan),
    )
    return job_status(manager, job)
