"""Why an AI-Toolkit run failed: a table of log patterns, signals and exit codes turned into a JobError with a hint.

`AitkLogParser.classify_failure` is the public entry; it hands the parser's facts (error region, banner, whether
training started) to `classify` here. Rules run in order against the error region, newest matching line first.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lora_mcp.jobs.models import JobError

if TYPE_CHECKING:
    from lora_mcp.training.logparse import AitkLogParser


@dataclass(frozen=True)
class _Rule:
    code: str
    pattern: re.Pattern[str]
    summary: str
    hint: str


_HF_REPO = re.compile(
    r"Access to model ([\w.-]+/[\w.-]+)|huggingface\.co/(?:api/models/)?(?!docs/|models\b)([\w.-]+/[\w.-]+)"
)
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_PIP_NAMES = {
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
}
_AITK_PIP = "AI-Toolkit's own virtual environment (not lora-mcp's)"
_CONFIG_HINT = "Fix the setting the message names and submit the job again; the same config fails the same way."

_RULES = (
    _Rule(
        "disk_full",
        re.compile(r"No space left on device|\[Errno 28\]|ENOSPC"),
        "The disk ran full",
        "Free space on the disk that holds the training folder or the Hugging Face cache (old checkpoints, samples, "
        "~/.cache/huggingface), then start the same job again: it resumes from its last checkpoint.",
    ),
    _Rule(
        "oom",
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|OOM during training step 3 times|out of memory"
            r"|DefaultCPUAllocator: (?:can't allocate|not enough) memory|CUBLAS_STATUS_ALLOC_FAILED"
        ),
        "Out of memory",
        "Use less memory: set model.quantize and model.low_vram to true, lower the dataset resolution, keep "
        "batch_size at 1 with gradient_checkpointing on, or a smaller network rank; close other programs using "
        "the GPU. Then start the job again.",
    ),
    _Rule(
        "gated_model",
        re.compile(
            r"GatedRepoError|Cannot access gated repo|access a gated repo|not in the authorized list"
            r"|Access to model \S+ is restricted"
        ),
        "The model is gated on Hugging Face and this server may not download it",
        "Accept the model's licence at https://huggingface.co/{repo} with your Hugging Face account, create a read "
        "token, set HF_TOKEN to it in the lora-mcp server's environment and restart the server, then start again.",
    ),
    _Rule(
        "model_not_found",
        re.compile(
            r"RepositoryNotFoundError|Repository Not Found|RevisionNotFoundError|EntryNotFoundError|404 Client Error"
            r"|does not appear to have a file named|is not a local folder and is not a valid model identifier"
            r"|is not the path to a directory containing|HFValidationError|Repo id must be in the form"
            r"|not a valid local path or hub path|Failed to download assistant LoRA"
        ),
        "The model was not found",
        "Check model.name_or_path, extras_name_or_path and assistant_lora_path: each must be a Hugging Face repo id "
        "(e.g. Tongyi-MAI/Z-Image-Turbo; an adapter as owner/repo/file.safetensors) or an existing local path. "
        "Offline (HF_HUB_OFFLINE=1 or no network) the files must already be in the Hugging Face cache; a private "
        "repo needs HF_TOKEN in the server's environment.",
    ),
    _Rule(
        "missing_dependency",
        re.compile(
            r"ModuleNotFoundError|No module named|ImportError|cannot import name|Diffusers is out of date"
            r"|requires the \S+ library but it was not found"
        ),
        "A Python package AI-Toolkit needs is missing or too old",
        "Install it into " + _AITK_PIP + ": `<ai-toolkit>/venv/bin/pip install {package}`, then start again.",
    ),
    _Rule(
        "gated_model",
        re.compile(r"\b40[13] Client Error|403 Forbidden|Invalid username or password|Invalid credentials"),
        "Hugging Face refused access",
        "Set HF_TOKEN in the lora-mcp server's environment to a read token of an account that accepted the model's "
        "licence at https://huggingface.co/{repo}, restart the server, then start again.",
    ),
    _Rule(
        "config_error",
        re.compile(
            r"yaml\.\w+\.\w+Error|while (?:parsing|scanning) a|Could not find config file|must be a json or yaml file"
            r"|config file (?:is invalid|error|must have)|Environment variable \S+ not set|validate_configs"
            r"|Error running on_error: cannot access local variable 'job'"
        ),
        "AI-Toolkit rejected the job's configuration",
        _CONFIG_HINT,
    ),
)
_LOST = JobError(
    code="lost",
    message="The trainer's exit status is unknown: the server lost track of the process.",
    hint="Check the job's log and output folder; starting the same job again resumes from its last checkpoint.",
)


def classify(
    parser: AitkLogParser, exit_code: int | None, *, final_lora_exists: bool, cancel_requested: bool
) -> JobError | None:
    """Why the run failed, or None when it did not fail: a success, or a requested cancel that took effect."""
    if (exit_code == 0 and final_lora_exists) or cancel_requested:
        return None  # a cancel ends however the stop lands; the caller records it as cancelled
    signal_error = _signal_error(exit_code)
    if signal_error is not None:
        return signal_error
    if exit_code == 0 and parser.stopped:
        return JobError(
            code="killed",
            message="The trainer was interrupted (SIGINT) and stopped without saving: 'Job stopped'.",
            hint="Something outside lora-mcp sent SIGINT (Ctrl-C?). Start the same job again to resume from its "
            "last checkpoint; use the cancel tool to stop a job.",
        )
    region, anchored = parser.error_region()
    for rule in _RULES:
        if rule.code == "missing_dependency" and not anchored:
            continue  # import failures come with a traceback; every real log warns "No module named 'kernels'"
        line = _last_match(rule.pattern, region)
        if line is not None:
            return _rule_error(parser, rule, line, region)
    if exit_code == 0:
        return JobError(
            code="trainer_error",
            message=f"The trainer exited with status 0 without saving the final {parser.job_name}.safetensors.",
            hint="Read the job's log tail for the cause; starting the same job again resumes from its last checkpoint.",
        )
    if parser.error_banner is not None and not parser.job_started:
        return JobError(
            code="config_error",
            message=f"AI-Toolkit rejected the job before it started: {_quote(parser.error_banner)}",
            hint=_CONFIG_HINT,
        )
    if exit_code is None and parser.error_banner is None:
        return _LOST
    line = parser.error_banner or _last_exception(region) or (region[-1] if region else "(the log is empty)")
    return JobError(
        code="trainer_error",
        message=f"AI-Toolkit failed (exit status {exit_code}): {_quote(line)}",
        hint="Read the quoted error and the job's log tail; if the cause was transient, starting the same job again "
        "resumes from its last checkpoint.",
    )


def _signal_error(exit_code: int | None) -> JobError | None:
    """The error for a trainer that a signal ended (rc -N from subprocess, or 128+N from a shell)."""
    if exit_code is None or not (exit_code < 0 or 128 < exit_code <= 128 + 64):
        return None
    number = -exit_code if exit_code < 0 else exit_code - 128
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    message = f"The trainer was killed by {name} (exit status {exit_code})."
    if number == signal.SIGKILL:
        hint = (
            "SIGKILL usually comes from the Linux OOM killer when system RAM (not GPU memory) runs out: check "
            "`dmesg | grep -i oom`, set model.low_vram, lower the resolution, close other programs or add swap. "
            "Starting the same job again resumes from its last checkpoint."
        )
    elif number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        hint = (
            "Something outside lora-mcp stopped the process (a service manager, a container stop, a person). Start "
            "the same job again to resume from its last checkpoint; use the cancel tool to stop a job."
        )
    else:
        return JobError(
            code="trainer_error",
            message=f"The trainer crashed with {name} (exit status {exit_code}).",
            hint="A native crash (driver, CUDA, a compiled extension): read the job's log tail, check the GPU driver "
            "and AI-Toolkit's installed versions, then start again to resume from the last checkpoint.",
        )
    return JobError(code="killed", message=message, hint=hint)


def _rule_error(parser: AitkLogParser, rule: _Rule, line: str, region: list[str]) -> JobError:
    summary = rule.summary
    hint = rule.hint
    if rule.code == "oom" and "DefaultCPUAllocator" in line:
        summary = "Out of system memory (RAM)"
        hint = (
            "System RAM ran out, not GPU memory: close other programs or add swap, set model.quantize to true and "
            "lower the resolution; model.low_vram and layer_offloading park weights in RAM, so turn them off if the "
            "GPU has room. Then start the job again."
        )
    elif rule.code == "oom":
        if not parser.training_seen:
            summary += " while loading the model or preparing the data"
        else:
            summary += f" during training, at step {parser.progress.step}"
    elif rule.code in ("gated_model", "model_not_found"):
        repo = next((m.group(1) or m.group(2) for text in region if (m := _HF_REPO.search(text))), None)
        hint = hint.format(repo=repo.rstrip(".") if repo else "<owner>/<model>")
    elif rule.code == "missing_dependency":
        hint = hint.format(package=_pip_package(region))
        if any("Diffusers is out of date" in text for text in region):
            hint = (
                "AI-Toolkit's diffusers lacks Z-Image support. In " + _AITK_PIP + " run `pip uninstall -y diffusers` "
                "and then `pip install -r requirements.txt` from AI-Toolkit's folder, then start again."
            )
    if line.startswith("  ") or rule.code == "config_error":  # a frame or a marker: quote the error itself
        line = _last_exception(region) or parser.error_banner or line
    return JobError(code=rule.code, message=f"{summary}: {_quote(line)}", hint=hint)


def _pip_package(region: list[str]) -> str:
    for text in region:
        if match := _NO_MODULE.search(text):
            top = match.group(1).split(".")[0]
            return _PIP_NAMES.get(top, top)
    return "<the package the message names>"


_EXCEPTION_LINE = re.compile(r"^[\w.]*(?:Error|Exception|Interrupt|Exit)(?::|$)")  # "OSError: ...", not "Error running"


def _last_exception(region: list[str]) -> str | None:
    return next((text for text in reversed(region) if _EXCEPTION_LINE.match(text)), None)


def _last_match(pattern: re.Pattern[str], region: list[str]) -> str | None:
    """The newest line that matches; a traceback frame or source line stands in only when nothing else matches."""
    frame = None
    for text in reversed(region):
        if pattern.search(text):
            if not text.startswith("  "):
                return text
            frame = frame or text
    return frame


def _quote(line: str, limit: int = 300) -> str:
    line = line.strip()
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")
