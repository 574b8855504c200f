"""export_lora against real temp folders and a real finished job of the fake AI-Toolkit: the copy, the sidecar,
idempotency, collisions, atomicity, checkpoints, errors; through the domain call, the MCP tool and the CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, write_config
from mcp import Client
from training_fixtures import TRIGGER

from lora_mcp.cli import main as cli_main
from lora_mcp.errors import InvalidInput, NotFound, OperationFailed
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobState
from lora_mcp.jobs.store import JobRecord
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings
from lora_mcp.training import export as export_module
from lora_mcp.training.export import export_lora
from lora_mcp.training.service import start_training


def setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, loras: bool = True) -> tuple[Settings, Path]:
    """Settings for the fake AI-Toolkit with ComfyUI's LoRA folder in a temp dir outside the roots."""
    folder = tmp_path / "comfyui" / "models" / "loras"
    if loras:
        folder.mkdir(parents=True)
        monkeypatch.setenv("LORA_MCP_COMFYUI_LORAS_DIR", str(folder))
    return use_fake_aitk(monkeypatch), folder


def trained(manager: JobManager, settings: Settings, shared_images: Path, **fail: str) -> JobRecord:
    """A finished job: 100 steps, checkpoints at 40 and 80, the final LoRA (unless FAKE_AITK_FAIL is set)."""
    config = write_config(settings, shared_images, steps=100)
    job = wait_final(manager, start_training(manager, str(config)).job_id)
    if not fail:
        assert job.state == JobState.SUCCEEDED, manager.tail(job.id, 30)
    return job


@pytest.fixture
def finished(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_images: Path
) -> tuple[JobManager, JobRecord, Path]:
    """A succeeded train job of the fake AI-Toolkit, its manager, and ComfyUI's (empty) LoRA folder."""
    settings, loras = setup(monkeypatch, tmp_path)
    manager = new_manager(settings)
    return manager, trained(manager, settings, shared_images), loras


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_copies_the_final_lora_with_a_sidecar_and_is_idempotent(
    finished: tuple[JobManager, JobRecord, Path],
) -> None:
    manager, job, loras = finished
    result = export_lora(manager, job.id)
    source = Path(job.outputs["lora_path"])
    target = loras / "lora_a.safetensors"
    assert result.path == str(target) and result.file_name == "lora_a.safetensors"
    assert target.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644, "ComfyUI may run as another user"
    assert listing(loras) == ["lora_a.json", "lora_a.safetensors"], "no temp file is left behind"
    assert not result.already_present and result.step == 100 and result.trigger_word == TRIGGER
    sidecar = json.loads((loras / "lora_a.json").read_text())
    assert sidecar["trigger_word"] == TRIGGER and sidecar["activation text"] == TRIGGER
    assert sidecar["job_id"] == job.id and sidecar["step"] == 100 and sidecar["total_steps"] == 100
    assert sidecar["base_model"] == "Tongyi-MAI/Z-Image-Turbo" and sidecar["arch"] == "zimage"
    assert sidecar["created"].endswith("+00:00") and sidecar["sha256"] == result.sha256
    assert TRIGGER in result.next_step

    before = (target.stat().st_ino, target.stat().st_mtime_ns, (loras / "lora_a.json").read_bytes())
    again = export_lora(manager, job.id)
    assert again.already_present and again.sha256 == result.sha256
    assert (target.stat().st_ino, target.stat().st_mtime_ns, (loras / "lora_a.json").read_bytes()) == before


def test_a_different_file_of_the_same_name_is_never_overwritten(finished: tuple[JobManager, JobRecord, Path]) -> None:
    manager, job, loras = finished
    existing = loras / "lora_a.safetensors"
    existing.write_bytes(b"somebody else's LoRA")
    with pytest.raises(OperationFailed, match="already exists and is a different file") as refused:
        export_lora(manager, job.id)
    assert "name='lora_a_v2'" in str(refused.value)
    assert existing.read_bytes() == b"somebody else's LoRA"
    assert listing(loras) == ["lora_a.safetensors"]
    renamed = export_lora(manager, job.id, name="lora_a_v2")
    assert Path(renamed.path).name == "lora_a_v2.safetensors"
    assert json.loads((loras / "lora_a_v2.json").read_text())["file"] == "lora_a_v2.safetensors"


@pytest.mark.parametrize("where", ["copy", "replace"])
def test_a_failure_mid_copy_leaves_the_destination_untouched(
    monkeypatch: pytest.MonkeyPatch, finished: tuple[JobManager, JobRecord, Path], where: str
) -> None:
    manager, job, loras = finished
    temp_files: list[str] = []

    def half_copy(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(src.read(1000))
        temp_files.extend(listing(loras))
        raise OSError(28, "No space left on device")

    def failing_replace(src: Any, dst: Any) -> None:
        temp_files.extend(listing(loras))
        raise OSError(5, "Input/output error")

    module, attribute, fake = (
        (export_module.shutil, "copyfileobj", half_copy)
        if where == "copy"
        else (export_module.os, "replace", failing_replace)
    )
    real = getattr(module, attribute)
    monkeypatch.setattr(module, attribute, fake)
    with pytest.raises(OperationFailed, match="No partial file was left there"):
        export_lora(manager, job.id)
    assert len(temp_files) == 1 and temp_files[0].startswith(".") and temp_files[0].endswith(".tmp"), (
        "the copy went to a hidden temp file"
    )
    assert listing(loras) == []
    monkeypatch.setattr(module, attribute, real)
    assert not export_lora(manager, job.id).already_present, "a retry exports normally"


def test_checkpoints_export_by_step_or_path(tmp_path: Path, finished: tuple[JobManager, JobRecord, Path]) -> None:
    manager, job, loras = finished
    by_step = export_lora(manager, job.id, checkpoint=40)
    assert Path(by_step.path).name == "lora_a_step40.safetensors" and by_step.step == 40
    checkpoint_40 = next(c["path"] for c in job.outputs["checkpoints"] if c["step"] == 40)
    assert Path(by_step.path).read_bytes() == Path(checkpoint_40).read_bytes()
    assert json.loads((loras / "lora_a_step40.json").read_text())["step"] == 40
    by_text = export_lora(manager, job.id, checkpoint="80")
    assert Path(by_text.path).name == "lora_a_step80.safetensors"
    by_path = export_lora(manager, job.id, checkpoint=checkpoint_40)
    assert by_path.path == by_step.path and by_path.already_present
    with pytest.raises(InvalidInput, match="no checkpoint 55") as missing:
        export_lora(manager, job.id, checkpoint=55)
    assert "saved steps (40, 80)" in str(missing.value)
    with pytest.raises(InvalidInput, match="no checkpoint"):
        export_lora(manager, job.id, checkpoint=str(tmp_path / ".." / "etc" / "passwd"))
    checkpoint_80 = Path(next(c["path"] for c in job.outputs["checkpoints"] if c["step"] == 80))
    checkpoint_80.write_bytes(checkpoint_80.read_bytes()[:-100])  # a save cut short
    with pytest.raises(OperationFailed, match="is not a complete safetensors file"):
        export_lora(manager, job.id, checkpoint=80, name="truncated")
    assert not (loras / "truncated_step80.safetensors").exists()


def test_clear_errors_for_settings_jobs_and_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_images: Path
) -> None:
    settings, loras = setup(monkeypatch, tmp_path, loras=False)
    manager = new_manager(settings)
    job = trained(manager, settings, shared_images)
    with pytest.raises(OperationFailed, match="LORA_MCP_COMFYUI_LORAS_DIR is not set"):
        export_lora(manager, job.id)
    monkeypatch.setenv("LORA_MCP_COMFYUI_LORAS_DIR", str(loras))
    settings = use_fake_aitk(monkeypatch)
    manager = new_manager(settings)
    with pytest.raises(OperationFailed, match="does not exist or is not a folder"):
        export_lora(manager, job.id)
    loras.mkdir(parents=True)
    with pytest.raises(NotFound):
        export_lora(manager, "train-does-not-exist")
    for bad in ("../evil", "-rf", ".hidden", "a/b", "x.safetensors", "", "a" * 200):
        with pytest.raises(InvalidInput, match="not a usable LoRA file name"):
            export_lora(manager, job.id, name=bad)
    assert listing(loras) == []
    assert listing(tmp_path / "comfyui" / "models") == ["loras"]

    monkeypatch.setenv("FAKE_AITK_FAIL", "config")
    failed = trained(manager, settings, shared_images, fail="config")
    assert failed.state == JobState.FAILED
    with pytest.raises(InvalidInput, match="has no final LoRA to export") as no_lora:
        export_lora(manager, failed.id)
    assert "resume_training to finish it" in str(no_lora.value) and "saved steps: 40, 80" in str(no_lora.value)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_export_lora_tool_in_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_images: Path) -> None:
    settings, loras = setup(monkeypatch, tmp_path)
    job = trained(new_manager(settings), settings, shared_images)
    async with Client(build_server(settings)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["export_lora"].input_schema
        assert set(schema["properties"]) == {"job_id", "destination", "checkpoint", "name", "previews"}
        assert schema["required"] == ["job_id"]
        result = await client.call_tool("export_lora", {"job_id": job.id})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert result.structured_content["path"] == str(loras / "lora_a.safetensors")
        assert result.structured_content["trigger_word"] == TRIGGER
        step = await client.call_tool("export_lora", {"job_id": job.id, "checkpoint": 40})
        assert not step.is_error and step.structured_content is not None
        assert step.structured_content["file_name"] == "lora_a_step40.safetensors"
        refused = await client.call_tool("export_lora", {"job_id": job.id, "checkpoint": 7})
        assert refused.is_error and "saved steps (40, 80)" in refused.content[0].text  # type: ignore[union-attr]
        bad = await client.call_tool("export_lora", {"job_id": job.id, "destination": "a1111"})
        assert bad.is_error


def test_cli_export(
    monkeypatch: pytest.MonkeyPatch, finished: tuple[JobManager, JobRecord, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, job, loras = finished
    assert cli_main(["export", job.id, "--checkpoint", "80"]) == 0
    out = capsys.readouterr().out
    assert f"exported: {loras / 'lora_a_step80.safetensors'}" in out and f"trigger word: {TRIGGER}" in out
    assert cli_main(["export", job.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["file_name"] == "lora_a.safetensors"
    os.chmod(loras, 0o555)
    try:
        if os.access(loras, os.W_OK):  # root ignores permissions: make the copy fail another way
            monkeypatch.setattr(export_module.os, "fsync", lambda _fd: (_ for _ in ()).throw(OSError(5, "I/O")))
        assert cli_main(["export", job.id, "--name", "other"]) == 2
    finally:
        os.chmod(loras, 0o755)
    assert "error: Copying lora_a.safetensors into" in capsys.readouterr().err
