"""Export a trained LoRA into ComfyUI's LoRA folder (an atomic copy plus a sidecar JSON with the trigger word) or to
an S3-compatible bucket (`lora_mcp.storage.upload`: verified upload, sidecar, presigned URL). Either way the export is
recorded in the job's event log as `lora.exported` (what webhooks send).

The copy goes to a hidden temp file in the destination folder, is fsynced, then renamed to the final name with
`os.replace`, so ComfyUI (which lists the folder by extension) never sees a half-written `.safetensors`. An existing
file of the same name (checked just before the copy) is never overwritten: identical bytes make the export a no-op,
different bytes are refused.
The sidecar `<stem>.json` sits beside the LoRA; besides lora-mcp's fields it carries `activation text`, the key
Automatic1111/Forge and some ComfyUI LoRA browsers read for trigger words.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from lora_mcp import __version__
from lora_mcp.errors import InvalidInput, OperationFailed
from lora_mcp.fsutil import atomic_write, write_text_atomic
from lora_mcp.jobs import events
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import Settings
from lora_mcp.training.artifacts import TrainOutputs, collect_outputs, read_safetensors_metadata
from lora_mcp.training.trainjob import frozen_process

Destination = Literal["comfyui", "s3"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")
CHUNK = 1 << 20
FILE_MODE = 0o644  # ComfyUI often runs as another user (another container): the export must be world-readable


class ExportResult(BaseModel):
    """Where an exported LoRA landed and what its sidecar records."""

    job_id: str
    destination: Destination = "comfyui"
    path: str = Field(description="The LoRA file in ComfyUI's LoRA folder, or its s3:// URI.")
    sidecar_path: str = Field(description="The JSON beside it: trigger word, job id, step, base model, created.")
    file_name: str = Field(description="The name to pick in ComfyUI's LoraLoader nodes.")
    step: int | None
    trigger_word: str | None
    base_model: str | None
    size_bytes: int
    sha256: str
    already_present: bool = Field(description="True when the same file was already there (nothing was copied).")
    url: str | None = Field(None, description="s3: a presigned GET URL for the LoRA (anyone holding it can download).")
    url_expires_at: str | None = Field(None, description="s3: when the presigned URL stops working (UTC, ISO 8601).")
    extras: dict[str, str] = Field(
        default_factory=dict, description="s3 with previews: the contact sheet's and loss curve's s3:// URIs."
    )
    next_step: str


def export_lora(
    manager: JobManager,
    job_id: str,
    destination: Destination = "comfyui",
    checkpoint: int | str | None = None,
    name: str | None = None,
    previews: bool = False,
) -> ExportResult:
    """Copy a train job's final LoRA (or one checkpoint) into ComfyUI's LoRA folder or upload it to S3."""
    job = manager.get(job_id)
    if destination == "comfyui":
        destination_dir(manager.settings, destination)  # a missing folder is named before anything is read
    elif destination != "s3":
        raise InvalidInput(f"Unknown destination {destination!r}.", hint="Use destination='comfyui' or 's3'.")
    if job.kind != JobKind.TRAIN:
        raise InvalidInput(f"Job {job_id} is a {job.kind.value} job; only train jobs have a LoRA.", field="job_id")
    outputs = collect_outputs(Path(job.params["training_folder"]) / job.params["name"], job.params["name"])
    source, step = pick_source(job, outputs, checkpoint)
    stem = file_stem(job.params["name"] if name is None else name, step if checkpoint is not None else None)
    step = saved_step(source, step)
    digest = sha256_of(source)
    config = read_job_config(job)
    if destination == "s3":
        result = _to_s3(manager.settings, job, outputs, source, stem, step, digest, config, previews)
    else:
        result = _to_comfyui(manager.settings, job, source, stem, step, digest, config)
    if not result.already_present:
        data = result.model_dump(mode="json", include={"destination", "path", "sidecar_path", "file_name", "step"})
        data.update(sha256=digest, size_bytes=result.size_bytes, trigger_word=result.trigger_word, kind="train")
        manager.store.add_event(job.id, events.LORA_EXPORTED, data)
    return result


def _to_comfyui(
    settings: Settings, job: JobRecord, source: Path, stem: str, step: int | None, digest: str, config: dict[str, Any]
) -> ExportResult:
    """The atomic copy into ComfyUI's LoRA folder."""
    target_dir = destination_dir(settings, "comfyui")
    target = target_dir / f"{stem}.safetensors"
    already = target.exists()
    if already and sha256_of(target) != digest:
        raise OperationFailed(
            f"{target} already exists and is a different file; it was left unchanged.",
            hint=f"Export under another name (name='{stem}_v2'), or delete or rename the existing file first.",
        )
    sidecar = target.with_suffix(".json")
    try:
        if not already:
            atomic_copy(source, target)
        if not sidecar.exists():
            write_text_atomic(
                sidecar, json.dumps(sidecar_record(job, config, target.name, step, digest), indent=2) + "\n"
            )
    except OSError as exc:
        raise OperationFailed(
            f"Copying {source.name} into {target_dir} failed: {exc}. No partial file was left there.",
            hint="Check free space and that the server's user may write to that folder, then export again.",
        ) from exc
    trigger = config.get("trigger_word")
    return ExportResult(
        job_id=job.id,
        path=str(target),
        sidecar_path=str(sidecar),
        file_name=target.name,
        step=step,
        trigger_word=trigger,
        base_model=config.get("base_model"),
        size_bytes=target.stat().st_size,
        sha256=digest,
        already_present=already,
        next_step=f"In ComfyUI press R (refresh), pick {target.name} in a LoraLoaderModelOnly node"
        + (f" and put the trigger word '{trigger}' in the prompt." if trigger else "."),
    )


def _to_s3(
    settings: Settings,
    job: JobRecord,
    outputs: TrainOutputs,
    source: Path,
    stem: str,
    step: int | None,
    digest: str,
    config: dict[str, Any],
    previews: bool,
) -> ExportResult:
    """The verified upload to the configured bucket, with a presigned URL."""
    from lora_mcp.storage.upload import upload_lora

    file_name = f"{stem}.safetensors"
    sidecar = sidecar_record(job, config, file_name, step, digest)
    extras = preview_images(job, outputs) if previews else {}
    upload = upload_lora(settings, source, stem, digest, sidecar, extras)
    trigger = config.get("trigger_word")
    return ExportResult(
        job_id=job.id,
        destination="s3",
        path=upload.uri,
        sidecar_path=upload.sidecar_uri,
        file_name=file_name,
        step=step,
        trigger_word=trigger,
        base_model=config.get("base_model"),
        size_bytes=upload.size,
        sha256=digest,
        already_present=upload.already_present,
        url=upload.url,
        url_expires_at=datetime.fromtimestamp(upload.url_expires_at, UTC).isoformat(timespec="seconds"),
        extras=upload.extra_uris,
        next_step=f"Download it with the presigned url (valid {settings.s3_presign_expiry_seconds} s) or from "
        f"{upload.uri}; export_lora again for a fresh url"
        + (f"; the trigger word is '{trigger}'." if trigger else "."),
    )


def preview_images(job: JobRecord, outputs: TrainOutputs) -> dict[str, bytes]:
    """The newest samples' contact sheet and the loss curve as PNG bytes, by file suffix (absent ones left out)."""
    from lora_mcp.jobs.supervisor import LOG_NAME
    from lora_mcp.training.artifacts import contact_sheet, loss_curve_png, loss_history, newest_samples

    try:
        log_text = (job.job_dir / LOG_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        log_text = ""
    pictures = {
        "contact-sheet.png": contact_sheet(newest_samples(outputs.samples)),
        "loss.png": loss_curve_png(loss_history(log_text)),
    }
    return {name: data for name, data in pictures.items() if data is not None}


def destination_dir(settings: Settings, destination: Destination) -> Path:
    """ComfyUI's LoRA folder from the settings, or an error saying what to set."""
    if destination != "comfyui":
        raise InvalidInput(f"Unknown destination {destination!r}.", hint="Use destination='comfyui' or 's3'.")
    folder = settings.comfyui_loras_dir
    if folder is None:
        raise OperationFailed(
            "LORA_MCP_COMFYUI_LORAS_DIR is not set, so there is no ComfyUI LoRA folder to export to.",
            hint="Set LORA_MCP_COMFYUI_LORAS_DIR to ComfyUI's models/loras folder (in Docker: mount it, see "
            "docs/deployment.md) and restart the server; get_job's outputs.lora_path is the file meanwhile.",
        )
    if not folder.is_dir():
        raise OperationFailed(
            f"ComfyUI's LoRA folder {folder} (LORA_MCP_COMFYUI_LORAS_DIR) does not exist or is not a folder.",
            hint="Create it or fix LORA_MCP_COMFYUI_LORAS_DIR (in Docker: check the models/loras volume), then retry.",
        )
    return folder


def pick_source(job: JobRecord, outputs: TrainOutputs, checkpoint: int | str | None) -> tuple[Path, int | None]:
    """The file to export and its step: the final LoRA, or the checkpoint named by step or path."""
    steps = [c.step for c in outputs.checkpoints if c.step is not None]
    available = ", ".join(str(s) for s in steps) or "none"
    if checkpoint is None:
        # Only a succeeded job's final file is its own: a failed re-run finds the one an earlier run left.
        if outputs.lora_path is None or job.state != JobState.SUCCEEDED:
            raise InvalidInput(
                f"Job {job.id} has no final LoRA to export (state {job.state.value}).",
                field="job_id",
                hint=f"{'resume_training to finish it' if job.state.final else 'wait_for_job until it succeeds'}, "
                f"or export a saved checkpoint with checkpoint=<step> (saved steps: {available}).",
            )
        return Path(outputs.lora_path), None
    for entry in outputs.checkpoints:
        if _matches(checkpoint, entry.step, Path(entry.path)):
            return Path(entry.path), entry.step
    raise InvalidInput(
        f"Job {job.id} has no checkpoint {checkpoint!r}.",
        field="checkpoint",
        hint=f"Pass one of the saved steps ({available}) or a path from get_job's outputs.checkpoints; "
        "omit checkpoint for the final LoRA.",
    )


def saved_step(source: Path, step: int | None) -> int | None:
    """The step of a checkpoint, or the final LoRA's `training_info.step`; fails on an incomplete file."""
    try:
        metadata = read_safetensors_metadata(source)
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise OperationFailed(
            f"{source} is not a complete safetensors file: {exc}",
            hint="If the job is still saving it, wait_for_job and export again; else export another checkpoint.",
        ) from exc
    info = metadata.get("training_info")
    if step is None and isinstance(info, dict) and isinstance(info.get("step"), int):
        return int(info["step"])
    return step


def _matches(wanted: int | str, step: int | None, path: Path) -> bool:
    if isinstance(wanted, int) or wanted.strip().isdigit():
        return step == int(wanted)
    return os.path.realpath(wanted) == os.path.realpath(path)


def file_stem(name: str, step: int | None) -> str:
    """`<name>` or `<name>_step<N>`; the name must be a plain file name (no folders, no leading `-` or `.`)."""
    if not SAFE_NAME.match(name) or name.endswith(".safetensors"):
        raise InvalidInput(
            f"{name!r} is not a usable LoRA file name.",
            field="name",
            hint="Use letters, digits, '.', '_' and '-' only, starting with a letter or digit, without the "
            ".safetensors suffix (e.g. name='my_style_v2').",
        )
    return f"{name}_step{step}" if step is not None else name


def read_job_config(job: JobRecord) -> dict[str, Any]:
    """Trigger word and base model from the job's frozen AI-Toolkit config ({} when it cannot be read)."""
    process = frozen_process(job)
    if not process:
        return {}
    model = process.get("model") or {}
    return {
        "trigger_word": process.get("trigger_word"),
        "base_model": model.get("name_or_path"),
        "arch": model.get("arch"),
    }


def sidecar_record(
    job: JobRecord, config: dict[str, Any], file_name: str, step: int | None, digest: str
) -> dict[str, Any]:
    """What the sidecar JSON holds."""
    trigger = config.get("trigger_word")
    return {
        "file": file_name,
        "trigger_word": trigger,
        "activation text": trigger or "",
        "job_id": job.id,
        "name": job.params.get("name"),
        "step": step,
        "total_steps": job.params.get("steps"),
        "base_model": config.get("base_model"),
        "arch": config.get("arch"),
        "sha256": digest,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "exported_by": f"lora-mcp {__version__}",
    }


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def atomic_copy(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a fsynced temp file in the target's folder; no partial file is left."""
    with open(source, "rb") as src:
        atomic_write(target, lambda dst: shutil.copyfileobj(src, dst, CHUNK), mode=FILE_MODE)
