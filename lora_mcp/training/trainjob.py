"""The `train` job kind: preflight, AI-Toolkit's `run.py` as the child, its log parser, and the outcome."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lora_mcp.errors import InvalidInput, LoraMcpError, OperationFailed, PathNotAllowed
from lora_mcp.fsutil import write_bytes_atomic
from lora_mcp.jobs.kinds import LaunchRefused, LaunchSpec, LogParser, Outcome
from lora_mcp.jobs.models import JobError, JobKind, JobState
from lora_mcp.jobs.store import JobRecord
from lora_mcp.paths import confine
from lora_mcp.secrets import trainer_env
from lora_mcp.settings import Settings
from lora_mcp.training.artifacts import collect_outputs
from lora_mcp.training.logparse import AitkLogParser
from lora_mcp.training.plan import ConfigPlan, plan_config, read_config_bytes
from lora_mcp.training.result import training_result

CONFIG_COPY = "config.yaml"
MIN_FREE_DISK_GB = 2.0
NEXT_STEPS = {
    JobState.SUCCEEDED: "Done. outputs.lora_path is the LoRA; get_job(include_images=True) shows samples; "
    "export_lora copies it into ComfyUI's LoRA folder.",
    JobState.FAILED: "Read error.hint, fix the cause, then resume_training (training continues from its last "
    "checkpoint).",
    JobState.CANCELLED: "Cancelled. resume_training continues from the last saved checkpoint.",
}


def trainer_paths(settings: Settings) -> tuple[Path, Path]:
    """AI-Toolkit's folder and the python that runs it, or an error saying what to set (no process started)."""
    toolkit = settings.ai_toolkit_dir
    if toolkit is None or not (toolkit / "run.py").is_file():
        raise OperationFailed(
            f"AI-Toolkit's run.py was not found (LORA_MCP_AI_TOOLKIT_DIR={toolkit}).",
            hint="Clone ostris/ai-toolkit, install its requirements, and set LORA_MCP_AI_TOOLKIT_DIR to the "
            "folder holding run.py; system_check shows what the server sees.",
        )
    return toolkit, settings.trainer_python()


def check_trainer(settings: Settings) -> tuple[Path, Path]:
    """`trainer_paths`, and the trainer python must actually start (run once per preflight, not per launch)."""
    toolkit, python = trainer_paths(settings)
    try:
        subprocess.run([str(python), "-c", "import sys"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise OperationFailed(
            f"The trainer python {python} does not run: {exc}",
            hint="Set LORA_MCP_AI_TOOLKIT_PYTHON to AI-Toolkit's venv python.",
        ) from exc
    return toolkit, python


def preflight(plan: ConfigPlan, settings: Settings) -> None:
    """Everything about the machine and the data that can be checked before a train job is queued.

    Free GPU memory is not checked here: the job may wait in its lane, and the GPU hand-off (ComfyUI, Ollama)
    runs only at launch. `TrainKind.launch_spec` checks it then.
    """
    from lora_mcp.dataset.factcache import facts_cache_for
    from lora_mcp.dataset.inspect import inspect_dataset

    check_trainer(settings)
    for folder, ext in zip(plan.dataset_folders, plan.caption_exts, strict=True):
        if not folder.is_dir():
            raise InvalidInput(
                f"The dataset folder {folder} does not exist.",
                field="datasets.folder_path",
                hint="Fix folder_path in the config or regenerate it.",
            )
        refuse_links_out(folder, settings)
        report = inspect_dataset(
            folder,
            trigger_word=plan.trigger_word,
            resolutions=plan.resolutions,
            caption_ext=ext,
            facts_cache=facts_cache_for(settings),
        )
        errors = [p for p in report.problems if p.severity == "error"]
        if errors:
            listing = "; ".join(f"{p.code}: {p.message}" for p in errors[:5])
            raise InvalidInput(
                f"The dataset {folder} has errors: {listing}",
                field="datasets.folder_path",
                hint="Fix them (inspect_dataset lists each with a fix), then start again.",
            )
    plan.training_folder.mkdir(parents=True, exist_ok=True)
    check_cluster_storage(plan, settings)
    free_gb = shutil.disk_usage(plan.training_folder).free / 1e9
    if free_gb < MIN_FREE_DISK_GB:
        raise OperationFailed(
            f"Only {free_gb:.1f} GB free in {plan.training_folder}.",
            hint=f"Free at least {MIN_FREE_DISK_GB} GB (checkpoints and samples) and retry.",
        )


def check_cluster_storage(plan: ConfigPlan, settings: Settings) -> None:
    """With the Ray executor: the cluster must see AI-Toolkit, the datasets, the output and job folders (a probe)."""
    if settings.executor != "ray":
        return
    from lora_mcp.jobs.executors.ray import RayExecutor, check_shared_paths

    toolkit, python = trainer_paths(settings)
    read = [toolkit / "run.py", python, *plan.dataset_folders]
    check_shared_paths(RayExecutor.from_settings(settings), read=read, write=[plan.training_folder, settings.jobs_dir])


def refuse_links_out(folder: Path, settings: Settings) -> None:
    """AI-Toolkit reads every file of a dataset folder, symlinks included: none may lead outside the roots."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                try:
                    confine(path, settings.roots, what="dataset file")
                except LoraMcpError as exc:
                    raise PathNotAllowed(
                        f"The dataset {folder} holds {path.relative_to(folder)}, a symlink that the trainer would "
                        f"follow outside the allowed roots ({os.path.realpath(path)}).",
                        hint="Replace the link with a copy of the file, or remove it.",
                        field="datasets.folder_path",
                    ) from exc


def check_free_vram(plan: ConfigPlan, lane: str | None) -> None:
    """Refuse to launch when the lane's GPU has less free memory than the config's estimate (after the hand-off)."""
    from lora_mcp.system import query_gpus

    if plan.estimated_vram_gb is None or not lane or not lane.startswith("gpu:"):
        return
    gpus, _ = query_gpus()
    index = lane.split(":", 1)[1]
    gpu = next((g for g in gpus if str(g.index) == index), None)
    if gpu is None:
        return  # no nvidia-smi answer: the trainer itself will say what is wrong
    free_gb = gpu.memory_free_mb / 1024
    if free_gb < plan.estimated_vram_gb:
        raise LaunchRefused(
            JobError(
                code="oom",
                message=f"GPU {index} has {free_gb:.1f} GB free at launch, but the config needs about "
                f"{plan.estimated_vram_gb:.0f} GB.",
                hint="Close what holds GPU memory (ComfyUI, Ollama; LORA_MCP_FREE_COMFYUI_BEFORE_GPU_JOBS and "
                "LORA_MCP_FREE_OLLAMA_BEFORE_GPU_JOBS do it before each job), or regenerate the config with a "
                "smaller vram_gb; then resume_training.",
            )
        )


def train_params(plan: ConfigPlan, source: str) -> dict[str, Any]:
    """The job's params row: enough to relaunch and to find the outputs without reading the YAML again."""
    return {
        "source_config": source,
        "config_sha256": plan.sha256,
        "name": plan.name,
        "training_folder": str(plan.training_folder),
        "steps": plan.steps,
    }


def freeze_config(plan: ConfigPlan) -> Callable[[Path], None]:
    """A `prepare` callback that writes the validated bytes into the job directory: the trainer runs that file."""

    def prepare(job_dir: Path) -> None:
        write_bytes_atomic(job_dir / CONFIG_COPY, plan.raw)

    return prepare


def frozen_process(job: JobRecord) -> dict[str, Any]:
    """The process section of a job's frozen config, for reading only ({} when it cannot be read)."""
    try:
        data = yaml.safe_load((job.job_dir / CONFIG_COPY).read_text(encoding="utf-8"))
        process = data["config"]["process"][0]
    except (OSError, ValueError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return {}
    return process if isinstance(process, dict) else {}


def frozen_plan(job: JobRecord, settings: Settings) -> ConfigPlan:
    """The plan of a job's frozen config, checked again: the bytes must be those validated at submit."""
    path = job.job_dir / CONFIG_COPY
    raw = read_config_bytes(path)
    expected = job.params.get("config_sha256")
    if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
        raise InvalidInput(
            f"The frozen config of job {job.id} changed after it was validated.",
            hint="Start a new job with start_training.",
            field="job_id",
        )
    plan = plan_config(raw, settings, source=str(path))
    if plan.name != job.params.get("name") or str(plan.training_folder) != job.params.get("training_folder"):
        raise InvalidInput(
            f"The frozen config of job {job.id} does not match the job's record.",
            hint="Start a new job with start_training.",
            field="job_id",
        )
    return plan


class TrainKind:
    """AI-Toolkit training as a job kind."""

    kind = JobKind.TRAIN
    lane_kind = "gpu"
    next_steps = NEXT_STEPS

    def status_extras(self, job: JobRecord, outputs: dict[str, Any]) -> dict[str, Any]:
        """A finished run's `training_result` (success, paths, timing)."""
        return {"training_result": training_result(job, outputs)} if job.state.final else {}

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        toolkit, python = trainer_paths(settings)
        # Checked again at launch: paths may have changed while the job waited (a symlink, a folder in
        # AI-Toolkit's own tree), and the GPU hand-off has just run.
        plan = frozen_plan(job, settings)
        check_free_vram(plan, job.lane)
        return LaunchSpec(
            command=[str(python), "run.py", str(job.job_dir / CONFIG_COPY)],
            cwd=toolkit,
            env=trainer_env(settings.trainer_env_passthrough),
            inherit_env=False,
        )

    def make_parser(self, job: JobRecord) -> LogParser:
        return AitkLogParser(job_name=job.params["name"], total_steps=job.params.get("steps"))

    def outputs(self, job: JobRecord) -> dict[str, Any]:
        output_dir = Path(job.params["training_folder"]) / job.params["name"]
        return collect_outputs(output_dir, job.params["name"]).model_dump()

    def outcome(self, job: JobRecord, returncode: int | None, parser: LogParser, cancel_requested: bool) -> Outcome:
        outputs = self.outputs(job)
        if not isinstance(parser, AitkLogParser):
            raise TypeError(f"train jobs need an AitkLogParser, got {type(parser).__name__}")
        # A resumed run of a finished job finds the old final file: only one written by this run counts.
        lora = outputs["lora_path"]
        fresh = lora is not None and Path(lora).stat().st_mtime >= (job.started_at or 0) - 1
        if returncode == 0 and fresh and not cancel_requested:
            return Outcome(JobState.SUCCEEDED, outputs=outputs)
        if cancel_requested:
            # A run that finished before the SIGINT landed still counts as a success.
            state = JobState.SUCCEEDED if returncode == 0 and fresh and not parser.stopped else JobState.CANCELLED
            return Outcome(state, outputs=outputs)
        error = parser.classify_failure(returncode, final_lora_exists=fresh, cancel_requested=False)
        if error is None:
            error = JobError(
                code="lost",
                message="The trainer ended but left no exit code and no final LoRA.",
                hint="Read job_logs for the last lines, then resume_training to continue.",
            )
        return Outcome(JobState.FAILED, error=error, outputs=outputs)
