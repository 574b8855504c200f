"""start_training's preflight: every refusal names what to fix, and a refused config queues nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, write_config
from mcp import Client
from test_system import H100_NOHEADER_NOUNITS, TWO_GPUS, install_fake_nvidia_smi

from lora_mcp.errors import InvalidInput, LoraMcpError, OperationFailed, PathNotAllowed
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobState
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings
from lora_mcp.training import trainjob
from lora_mcp.training.plan import estimated_vram_gb
from lora_mcp.training.service import start_training
from lora_mcp.training.trainjob import TrainKind


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> tuple[Settings, Path]:
    """Settings that point at the fake AI-Toolkit, and a valid generated config."""
    settings = use_fake_aitk(monkeypatch)
    return settings, write_config(settings, shared_images, steps=100)


def refused(settings: Settings, config: Path | str, error: type[LoraMcpError], *needles: str) -> LoraMcpError:
    """start_training must raise `error` whose text holds every needle, and leave the store empty."""
    manager = new_manager(settings)
    with pytest.raises(error) as info:
        start_training(manager, str(config))
    text = str(info.value)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    assert manager.store.list_jobs() == [], "a refused config must queue nothing"
    assert not settings.jobs_dir.exists() or not any(settings.jobs_dir.iterdir()), "no job directory either"
    return info.value


def edited(config: Path, change: Callable[[dict[str, Any]], None], name: str = "edited.yaml") -> Path:
    """A copy of `config` next to it with `change` applied to its parsed YAML."""
    data = yaml.safe_load(config.read_text())
    change(data)
    out = config.with_name(name)
    out.write_text(yaml.safe_dump(data))
    return out


def process(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data["config"]["process"][0])


# ---- the trainer --------------------------------------------------------------------------------------------


def test_ai_toolkit_dir_unset(fake: tuple[Settings, Path]) -> None:
    settings, config = fake
    refused(settings.model_copy(update={"ai_toolkit_dir": None}), config, OperationFailed, "LORA_MCP_AI_TOOLKIT_DIR")


def test_ai_toolkit_dir_without_run_py(fake: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, config = fake
    empty = tmp_path / "not-ai-toolkit"
    empty.mkdir()
    refused(
        settings.model_copy(update={"ai_toolkit_dir": empty}),
        config,
        OperationFailed,
        "run.py",
        str(empty),
        "LORA_MCP_AI_TOOLKIT_DIR",
    )


def test_trainer_python_missing(fake: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, config = fake
    missing = tmp_path / "venv" / "bin" / "python"
    refused(
        settings.model_copy(update={"ai_toolkit_python": missing}),
        config,
        OperationFailed,
        str(missing),
        "LORA_MCP_AI_TOOLKIT_PYTHON",
    )


# ---- the config ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["config: {name: x\n  process: [", "a: b: c\n", "\tconfig:\n\t\tname: x\n"],
    ids=["unclosed", "nested-colon", "tabs"],
)
def test_config_is_not_yaml(fake: tuple[Settings, Path], text: str) -> None:
    settings, config = fake
    broken = config.with_name("broken.yaml")
    broken.write_text(text)
    refused(settings, broken, InvalidInput, "Cannot read the config", "generate_training_config")


def test_config_is_not_utf8(fake: tuple[Settings, Path]) -> None:
    settings, config = fake
    binary = config.with_name("binary.yaml")
    binary.write_bytes(b"\xff\xfe\x00config")
    refused(settings, binary, InvalidInput, "Cannot read the config")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["config"].pop("name"), "config.name = None"),
        (lambda d: d["config"].pop("process"), "exactly one entry in config.process"),
        (lambda d: d["config"].update(process=[]), "exactly one entry in config.process"),
        (lambda d: d["config"]["process"][0].pop("training_folder"), "training_folder"),
        (lambda d: d["config"]["process"][0]["datasets"][0].pop("folder_path"), "datasets with a folder_path"),
        (lambda d: d["config"]["process"][0].pop("datasets"), "datasets with a folder_path"),
        (lambda d: d.update(config="just a string"), "needs `job: extension` and a `config` section"),
    ],
    ids=[
        "no-name",
        "no-process",
        "empty-process",
        "no-training-folder",
        "no-folder-path",
        "no-datasets",
        "config-not-a-mapping",
    ],
)
def test_config_lacks_a_key(fake: tuple[Settings, Path], change: Callable[[dict[str, Any]], None], needle: str) -> None:
    settings, config = fake
    refused(settings, edited(config, change), InvalidInput, needle, "generate_training_config")


def test_config_outside_the_roots(fake: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, config = fake
    outside = tmp_path / "outside.yaml"
    outside.write_bytes(config.read_bytes())
    error = refused(settings, outside, PathNotAllowed, str(outside))
    assert error.field == "config_path"


@pytest.mark.parametrize("traversal", [False, True], ids=["absolute", "dot-dot"])
def test_training_folder_outside_the_roots(fake: tuple[Settings, Path], tmp_path: Path, traversal: bool) -> None:
    settings, config = fake
    root = settings.roots[0]
    target = f"{root}/../elsewhere" if traversal else str(tmp_path / "elsewhere")

    def change(data: dict[str, Any]) -> None:
        data["config"]["process"][0]["training_folder"] = target

    refused(settings, edited(config, change), PathNotAllowed, "training_folder")
    assert not (tmp_path / "elsewhere").exists(), "nothing may be created outside the roots"


def test_dataset_folder_missing(fake: tuple[Settings, Path]) -> None:
    settings, config = fake
    missing = settings.roots[0] / "no-such-dataset"

    def change(data: dict[str, Any]) -> None:
        data["config"]["process"][0]["datasets"][0]["folder_path"] = str(missing)

    refused(settings, edited(config, change), InvalidInput, str(missing), "does not exist")


def test_dataset_with_a_corrupt_image(fake: tuple[Settings, Path]) -> None:
    settings, config = fake
    dataset = Path(process(yaml.safe_load(config.read_text()))["datasets"][0]["folder_path"])
    (dataset / "broken.png").write_bytes(b"this is text, not a PNG")
    (dataset / "broken.txt").write_text("a photo of ohwx, broken")
    refused(settings, config, InvalidInput, "corrupt_image", "broken.png", "inspect_dataset")


def test_too_little_free_disk(fake: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, config = fake
    monkeypatch.setattr(trainjob, "MIN_FREE_DISK_GB", 1e12)
    refused(settings, config, OperationFailed, "GB free", "Free at least")


# ---- GPU memory (a fake nvidia-smi that prints real bytes, first on PATH) -------------------------------------


@pytest.fixture
def gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes], None]:
    def install(csv: bytes) -> None:
        install_fake_nvidia_smi(tmp_path / "bin", csv)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    return install


def failed_at_launch(manager: JobManager, config: Path, *needles: str) -> None:
    """The job is queued (never refused for GPU memory), then fails at launch with the oom hint."""
    status = start_training(manager, str(config))
    job = wait_final(manager, status.job_id)
    assert job.state == JobState.FAILED and job.error is not None and job.error.code == "oom", job.error
    text = f"{job.error.message} {job.error.hint}"
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    assert not (job.job_dir / "exit_code.json").exists(), "the trainer never started"


def test_gpu_memory_too_small_fails_at_launch_not_at_submit(
    fake: tuple[Settings, Path], gpus: Callable[[bytes], None]
) -> None:
    settings, config = fake
    estimate = estimated_vram_gb(config.read_text())
    assert estimate is not None and estimate > 7, "the generated header carries the estimate"
    gpus(b"0, NVIDIA GeForce RTX 4090, 24564, 18211\n")  # 6.2 GiB free
    failed_at_launch(new_manager(settings), config, f"about {estimate:.0f} GB", "6.2 GB", "vram_gb", "resume_training")


def check_started_and_cancel(manager: JobManager, config: Path) -> None:
    status = start_training(manager, str(config))
    assert status.state in (JobState.QUEUED, JobState.RUNNING)
    manager.cancel(status.job_id)
    job = wait_final(manager, status.job_id)
    assert job.error is None or job.error.code != "oom", job.error


def test_gpu_memory_checks_the_training_gpu(fake: tuple[Settings, Path], gpus: Callable[[bytes], None]) -> None:
    settings, config = fake
    gpus(TWO_GPUS)  # GPU 0 has 6.2 GiB free, GPU 1 has 24 GiB free
    failed_at_launch(new_manager(settings), config, "GPU 0")
    check_started_and_cancel(new_manager(settings.model_copy(update={"gpus": ["1"]})), config)


def test_gpu_memory_enough(fake: tuple[Settings, Path], gpus: Callable[[bytes], None]) -> None:
    settings, config = fake
    gpus(H100_NOHEADER_NOUNITS)
    check_started_and_cancel(new_manager(settings), config)


def test_gpu_memory_is_read_after_the_hand_off(fake: tuple[Settings, Path], gpus: Callable[[bytes], None]) -> None:
    """The pre-launch hooks (ComfyUI /free, Ollama keep_alive 0) run before the free-memory check."""
    settings, config = fake
    gpus(b"0, NVIDIA GeForce RTX 4090, 24564, 18211\n")  # 6.2 GiB free until the hand-off frees it
    order: list[str] = []

    def hand_off(_job: object) -> list[str]:
        order.append("hand-off")
        gpus(b"0, NVIDIA GeForce RTX 4090, 24564, 1024\n")  # the other program let go of its memory
        return ["freed the GPU"]

    manager = JobManager(
        settings, [TrainKind()], poll_interval=0.05, cancel_grace_seconds=5, before_gpu_launch=[hand_off]
    )
    check_started_and_cancel(manager, config)
    assert order == ["hand-off"]


# ---- through MCP --------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_preflight_failure_is_a_tool_error(fake: tuple[Settings, Path], anyio_backend: str) -> None:
    settings, config = fake
    missing = settings.roots[0] / "gone"

    def change(data: dict[str, Any]) -> None:
        data["config"]["process"][0]["datasets"][0]["folder_path"] = str(missing)

    broken = edited(config, change)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("start_training", {"config_path": str(broken)})
        listed = await client.call_tool("list_jobs", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert str(missing) in text and "does not exist" in text, text
    assert listed.structured_content == {"jobs": []}
