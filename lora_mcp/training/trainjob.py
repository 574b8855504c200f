"""The `train` job kind: preflight, AI-Toolkit's `run.py` as the child, its log parser, and the outcome."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lora_mcp.errors import InvalidInput, OperationFailed
from lora_mcp.jobs.kinds import LaunchSpec, LogParser, Outcome
from lora_mcp.jobs.models import JobError, JobKind, JobState
from lora_mcp.jobs.store import JobRecord
from lora_mcp.paths import confine, confine_existing_file
from lora_mcp.settings import Settings
from lora_mcp.training.artifacts import collect_outputs
from lora_mcp.training.logparse import AitkLogParser

CONFIG_COPY = "config.yaml"
MIN_FREE_DISK_GB = 2.0


@dataclass(frozen=True)
class TrainPlan:
    """What the server needs to know about an AI-Toolkit config to run and watch it."""

    name: str
    training_folder: Path
    steps: int | None
    dataset_folders: list[Path]
    trigger_word: str | None
    resolutions: list[int] | None

    @property
    def output_dir(self) -> Path:
        return self.training_folder / self.name


def read_plan(config_path: Path, settings: Settings) -> TrainPlan:
    """Read the parts of an AI-Toolkit YAML this server relies on; every path must lie inside the roots."""
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(
            f"Cannot read the config {config_path}: {exc}",
            hint="Call generate_training_config to write a valid one.",
            field="config_path",
        ) from exc

    def need(*keys: str | int) -> Any:
        value = data
        for depth, key in enumerate(keys, 1):
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                value = None
            if value is None or value == []:
                where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys[:depth]).lstrip(".")
                raise InvalidInput(
                    f"The config {config_path} has no {where}: it is not an AI-Toolkit job this server can run.",
                    hint="It needs config.name, config.process[0].training_folder and "
                    "config.process[0].datasets[].folder_path; call generate_training_config to write one.",
                    field="config_path",
                )
        return value

    process = ("config", "process", 0)
    name = str(need("config", "name"))
    training_folder = confine(need(*process, "training_folder"), settings.roots, what="training_folder")
    datasets = need(*process, "datasets")
    folders = [
        confine(need(*process, "datasets", i, "folder_path"), settings.roots, what="datasets.folder_path")
        for i in range(len(datasets) if isinstance(datasets, list) else 1)
    ]
    train = need(*process).get("train") or {}  # process[0] is a mapping: training_folder was found in it
    try:
        steps = int(train.get("steps") or 0) or None
        resolutions = datasets[0].get("resolution") or None
        resolutions = [int(r) for r in resolutions] if isinstance(resolutions, list) else None
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidInput(
            f"The config {config_path} has a malformed train.steps or datasets[0].resolution: {exc}",
            hint="train.steps is a whole number and resolution a list of them; call generate_training_config.",
            field="config_path",
        ) from exc
    return TrainPlan(
        name=name,
        training_folder=training_folder,
        steps=steps,
        dataset_folders=folders,
        trigger_word=need(*process).get("trigger_word"),
        resolutions=resolutions,
    )


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


def preflight(config_path: Path, settings: Settings) -> TrainPlan:
    """Everything that can be checked before a train job is queued. Raises with what to fix."""
    from lora_mcp.dataset.inspect import inspect_dataset
    from lora_mcp.system import query_gpus

    check_trainer(settings)
    plan = read_plan(config_path, settings)
    for folder in plan.dataset_folders:
        if not folder.is_dir():
            raise InvalidInput(
                f"The dataset folder {folder} does not exist.",
                field="datasets.folder_path",
                hint="Fix folder_path in the config or regenerate it.",
            )
        report = inspect_dataset(folder, trigger_word=plan.trigger_word, resolutions=plan.resolutions)
        errors = [p for p in report.problems if p.severity == "error"]
        if errors:
            listing = "; ".join(f"{p.code}: {p.message}" for p in errors[:5])
            raise InvalidInput(
                f"The dataset {folder} has errors: {listing}",
                field="datasets.folder_path",
                hint="Fix them (inspect_dataset lists each with a fix), then start again.",
            )
    plan.training_folder.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(plan.training_folder).free / 1e9
    if free_gb < MIN_FREE_DISK_GB:
        raise OperationFailed(
            f"Only {free_gb:.1f} GB free in {plan.training_folder}.",
            hint=f"Free at least {MIN_FREE_DISK_GB} GB (checkpoints and samples) and retry.",
        )
    gpus, _ = query_gpus()
    estimate = estimated_vram_gb(config_path)
    if gpus and estimate is not None:
        wanted = [g for g in gpus if str(g.index) in settings.gpus] or gpus
        best = max(g.memory_free_mb for g in wanted) / 1024
        if best < estimate:
            raise OperationFailed(
                f"The config needs about {estimate:.0f} GB of GPU memory but the most free on a training GPU is "
                f"{best:.1f} GB.",
                hint="Close what holds GPU memory (ComfyUI, Ollama), or regenerate the config with a smaller vram_gb.",
            )
    return plan


def estimated_vram_gb(config_path: Path) -> float | None:
    """The estimate generate_training_config wrote into the config's header, if any."""
    try:
        head = config_path.read_text(encoding="utf-8")[:2000]
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith("#") and "estimated_vram_gb:" in line:
            try:
                return float(line.split("estimated_vram_gb:", 1)[1].split()[0])
            except (ValueError, IndexError):
                return None
    return None


def train_params(config_path: Path, plan: TrainPlan) -> dict[str, Any]:
    """The job's params row: enough to relaunch and to find the outputs without reading the YAML again."""
    return {
        "source_config": str(config_path),
        "name": plan.name,
        "training_folder": str(plan.training_folder),
        "steps": plan.steps,
    }


def copy_config(config_path: Path) -> Callable[[Path], None]:
    """A `prepare` callback that freezes the config into the job directory."""

    def prepare(job_dir: Path) -> None:
        shutil.copy2(config_path, job_dir / CONFIG_COPY)

    return prepare


class TrainKind:
    """AI-Toolkit training as a job kind."""

    kind = JobKind.TRAIN
    lane_kind = "gpu"

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        toolkit, python = trainer_paths(settings)
        config = confine_existing_file(job.job_dir / CONFIG_COPY, [job.job_dir], what="config copy")
        return LaunchSpec(command=[str(python), "run.py", str(config)], cwd=toolkit)

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
