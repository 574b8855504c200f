"""Training end to end through MCP clients: in memory, and a stdio server that is SIGKILLed mid-run."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from jobs_fixtures import use_fake_aitk, write_config
from mcp import Client, StdioServerParameters
from training_fixtures import TRIGGER, make_dataset

from lora_mcp.jobs.store import JobStore
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def follow(client: Client, job_id: str, seen: list[tuple[float, float | None, str | None]]) -> dict[str, Any]:
    """Call wait_for_job until the job is final, recording every progress notification."""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        # MCP: progress must rise with every notification of one request.
        if call_values and progress <= call_values[-1]:
            not_rising.append((call_values[-1], progress))
        call_values.append(progress)
        seen.append((progress, total, message))

    not_rising: list[tuple[float, float]] = []
    with anyio.fail_after(120):
        while True:
            call_values: list[float] = []
            result = await client.call_tool(
                "wait_for_job", {"job_id": job_id, "timeout_seconds": 5}, progress_callback=on_progress
            )
            assert not result.is_error, result.content
            status = result.structured_content
            assert status is not None
            if status["state"] in ("succeeded", "failed", "cancelled"):
                assert not not_rising, f"progress went backwards within one wait_for_job call: {not_rising}"
                return status


async def test_generate_start_wait_succeed_with_images(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.02)
    dataset = make_dataset(settings.roots[0], shared_images)
    server = build_server(settings)
    async with Client(server) as client:
        generated = await client.call_tool(
            "generate_training_config",
            {
                "name": "mcp_lora",
                "dataset_folder": str(dataset),
                "trigger_word": TRIGGER,
                "steps": 120,
                "save_every": 50,
                "sample_every": 60,
                "vram_gb": 24,
            },
        )
        assert not generated.is_error, generated.content
        config_path = generated.structured_content["config_path"]  # type: ignore[index]
        started = await client.call_tool("start_training", {"config_path": config_path})
        assert not started.is_error, started.content
        job_id = started.structured_content["job_id"]  # type: ignore[index]

        seen: list[tuple[float, float | None, str | None]] = []
        status = await follow(client, job_id, seen)
        assert status["state"] == "succeeded", status
        values = [p for p, _, _ in seen]
        steps = {int(p) for p in values}
        assert max(steps) == 120 and len(steps) > 3, values
        assert any(total == 120 for _, total, _ in seen)
        assert status["outputs"]["lora_path"].endswith("mcp_lora.safetensors")
        assert status["outputs"]["lora_metadata"]["training_info"]["step"] == 120
        result = status["training_result"]
        assert result["success"] is True and result["error"] is None and result["steps"] == 120
        assert result["lora_path"] == status["outputs"]["lora_path"] and result["training_time_seconds"] > 0
        assert result["config_path"].endswith("config.yaml") and result["started_at"] < result["finished_at"]
        assert len(status["outputs"]["checkpoints"]) == 2 and status["outputs"]["samples"]

        with_images = await client.call_tool("get_job", {"job_id": job_id, "include_images": True})
        images = [c for c in with_images.content if c.type == "image"]
        assert len(images) == 2, "a contact sheet and a loss curve"
        assert all(base64.b64decode(i.data)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)  # type: ignore[union-attr]
        assert json.loads(with_images.content[0].text)["job_id"] == job_id  # type: ignore[union-attr]

        logs = await client.call_tool("job_logs", {"job_id": job_id, "tail": 20})
        assert any("Saved checkpoint to" in line or "mcp_lora" in line for line in logs.structured_content["lines"])  # type: ignore[index]
        listed = await client.call_tool("list_jobs", {"kind": "train", "state": "succeeded"})
        assert [j["job_id"] for j in listed.structured_content["jobs"]] == [job_id]  # type: ignore[index]
        log_text = await client.read_resource(f"lora://jobs/{job_id}/log")
        assert "Running 1 job" in log_text.contents[0].text  # type: ignore[union-attr]
        config_text = await client.read_resource(f"lora://jobs/{job_id}/config")
        assert "diffusion_trainer" in config_text.contents[0].text  # type: ignore[union-attr]

        unknown = await client.call_tool("get_job", {"job_id": "train-nope"})
        assert unknown.is_error and "list_jobs" in unknown.content[0].text  # type: ignore[union-attr]


async def test_failed_preflight_is_an_actionable_error(settings: Settings, shared_images: Path) -> None:
    config = settings.roots[0] / "x.yaml"
    config.write_text("config: {name: x, process: [{training_folder: /tmp}]}\n")
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("start_training", {"config_path": str(config)})
    assert result.is_error
    assert "LORA_MCP_AI_TOOLKIT_DIR" in result.content[0].text  # type: ignore[union-attr]


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


async def test_job_survives_sigkill_of_the_stdio_server(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.05)
    config = write_config(settings, shared_images, name="survivor", steps=150)
    env = {k: v for k, v in os.environ.items()}
    params = StdioServerParameters(command=sys.executable, args=["-m", "lora_mcp", "serve"], env=env)

    killed = False
    try:
        async with Client(params) as client:
            started = await client.call_tool("start_training", {"config_path": str(config)})
            job_id = started.structured_content["job_id"]  # type: ignore[index]
            with anyio.fail_after(60):
                while True:
                    status = await client.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 1})
                    if status.structured_content["step"] >= 20:  # type: ignore[index]
                        break
            record = JobStore(settings.db_path).get(job_id)
            assert record is not None and record.supervisor_pid
            os.kill(parent_pid(record.supervisor_pid), signal.SIGKILL)  # the server, mid-run, no goodbye
            killed = True
            await client.call_tool("system_check", {})
    except Exception:  # the client loses its server; that is the point
        assert killed, "the client failed before the server was killed"
    assert killed

    async with Client(params) as client:
        seen: list[tuple[float, float | None, str | None]] = []
        status = await follow(client, job_id, seen)
    assert status["state"] == "succeeded", status
    assert status["step"] == 150
    assert status["outputs"]["lora_path"].endswith("survivor.safetensors")
