"""Queue caption jobs: check the request, resolve the prompt and backend, submit to the right lane."""

from __future__ import annotations

from lora_mcp.captioning.files import plan_captions
from lora_mcp.captioning.params import DEFAULT_OLLAMA_MODEL, Backend, CaptionJobParams, CaptionRequest
from lora_mcp.captioning.prompts import NAME_OPTION, build_prompt, catalog
from lora_mcp.errors import InvalidInput
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.status import JobStatus, job_status
from lora_mcp.jobs.worker import WorkerKind
from lora_mcp.settings import Settings

__all__ = ["CAPTION_KIND", "CaptionRequest", "job_params", "start_captioning"]  # CaptionRequest: its old home

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


def job_params(request: CaptionRequest, settings: Settings) -> CaptionJobParams:
    """Resolve a (normalised) request against the settings into job params; InvalidInput names a bad argument."""
    backend: Backend = request.backend or settings.caption_backend
    trigger, length = request.trigger_word, str(request.length)
    options: list[str] = list(request.extra_options)
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
        prompt=build_prompt(request.caption_type, length, options, name=trigger if NAME_OPTION in options else None),
        system_prompt=catalog().system_prompt,
        trigger_word=trigger,
        caption_type=request.caption_type,
        length=length,
        extra_options=options,
        overwrite=request.overwrite,
        caption_ext=request.caption_ext,
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
