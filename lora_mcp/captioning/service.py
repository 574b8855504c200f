"""Queue caption jobs: check the request, resolve the prompt and backend, submit to the right lane."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lora_mcp.captioning.files import OverwritePolicy, plan_captions
from lora_mcp.captioning.params import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_OLLAMA_MODEL,
    DEFAULT_TEMPERATURE,
    Backend,
    CaptionJobParams,
)
from lora_mcp.captioning.prompts import (
    NAME_OPTION,
    build_prompt,
    catalog,
    resolve_caption_type,
    resolve_extra_options,
    resolve_length,
)
from lora_mcp.dataset.captions import normalize_caption_ext
from lora_mcp.errors import InvalidInput
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.jobs.worker import WorkerKind
from lora_mcp.settings import Settings

NEXT_STEPS = {
    JobState.SUCCEEDED: "Done. outputs.details lists captions_written and failed images (with reasons); fix or remove "
    "those, then inspect_dataset, or conform_filenames to rename image+caption pairs.",
    JobState.FAILED: "Read error.hint, fix the cause, then call caption_images again: captions already written are "
    "skipped.",
    JobState.CANCELLED: "Cancelled; the captions written so far are kept. caption_images again does the rest.",
}
CAPTION_KIND = WorkerKind(
    kind=JobKind.CAPTION, lane_kind="gpu", module="lora_mcp.captioning.worker", next_steps=NEXT_STEPS
)
"""The job kind; joycaption jobs take a GPU lane, the HTTP and template backends a CPU lane."""


@dataclass(frozen=True)
class CaptionRequest:
    """A caption run as an agent or a person asks for it (the folder is already confined/resolved)."""

    folder: Path
    trigger_word: str | None = None
    caption_type: str = "descriptive"
    length: str = "medium-length"
    extra_options: list[str] = field(default_factory=list)
    backend: Backend | None = None
    model: str | None = None
    overwrite: OverwritePolicy = OverwritePolicy.SKIP
    batch_size: int | None = None
    caption_ext: str = "txt"
    temperature: float = DEFAULT_TEMPERATURE
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    quantization: Literal["none", "nf4"] = "none"


def job_params(request: CaptionRequest, settings: Settings) -> CaptionJobParams:
    """Validate a request into job params; raises InvalidInput naming the bad argument."""
    backend: Backend = request.backend or settings.caption_backend
    trigger = request.trigger_word.strip() if request.trigger_word and request.trigger_word.strip() else None
    options = resolve_extra_options(request.extra_options)
    caption_type = resolve_caption_type(request.caption_type)
    length = resolve_length(request.length)
    if backend == "openai" and not settings.openai_base_url:
        raise InvalidInput(
            "backend='openai' needs the server's base URL, and LORA_MCP_OPENAI_BASE_URL is not set.",
            hint="Set LORA_MCP_OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1) or use backend='ollama'.",
            field="backend",
        )
    if backend == "openai" and not request.model:
        raise InvalidInput(
            "backend='openai' needs model=<the model name the server serves>.",
            hint="Pass model, e.g. 'Qwen/Qwen2.5-VL-7B-Instruct' for vLLM.",
            field="model",
        )
    models = {"joycaption": settings.joycaption_model, "ollama": DEFAULT_OLLAMA_MODEL, "template": "none"}
    urls = {"ollama": settings.ollama_url, "openai": settings.openai_base_url}
    return CaptionJobParams(
        folder=str(request.folder),
        backend=backend,
        model=request.model or models.get(backend, ""),
        prompt=build_prompt(caption_type, length, options, name=trigger if NAME_OPTION in options else None),
        system_prompt=catalog().system_prompt,
        trigger_word=trigger,
        caption_type=caption_type,
        length=length,
        extra_options=options,
        overwrite=request.overwrite,
        caption_ext=normalize_caption_ext(request.caption_ext),
        batch_size=request.batch_size,
        temperature=request.temperature,
        max_new_tokens=request.max_new_tokens,
        quantization=request.quantization,
        base_url=urls.get(backend),
    )


def start_captioning(manager: JobManager, request: CaptionRequest) -> JobStatus:
    """Queue a caption job; joycaption goes to a GPU lane, the others to a CPU lane."""
    params = job_params(request, manager.settings)
    plan = plan_captions(request.folder, params.caption_ext, params.overwrite)
    if not plan.todo:
        what = f"all {len(plan.skipped)} images already have captions" if plan.skipped else "it holds no images"
        raise InvalidInput(
            f"Nothing to caption in {request.folder}: {what}.",
            hint="Pass overwrite='backup' to caption them again (old captions are kept), or check the folder.",
            field="folder",
        )
    lane = "gpu" if params.backend == "joycaption" else "cpu"
    record = manager.submit(JobKind.CAPTION, params.model_dump(mode="json"), lane_kind=lane)
    return job_status(manager, record)
