"""The job tools' edges through an in-memory MCP client: the wait cap, resume and cancel refusals, unknown ids."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from jobs_fixtures import use_fake_aitk, write_config
from mcp import Client

from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.jobs.store import JobStore
from lora_mcp.server import tools_jobs
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def slow(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> AsyncIterator[tuple[Client, Path, Settings]]:
    """A client of a server whose fake trainer takes 0.2 s a step; every job is cancelled and ended afterwards."""
    settings = use_fake_aitk(monkeypatch, step_delay=0.2)
    config = write_config(settings, shared_images, steps=400)
    async with Client(build_server(settings)) as client:
        yield client, config, settings
        listed = await call(client, "list_jobs", {})
        for job in listed["jobs"]:
            await client.call_tool("cancel_job", {"job_id": job["job_id"]})
        with anyio.fail_after(30):
            for job in listed["jobs"]:
                while not JobState((await call(client, "wait_for_job", {"job_id": job["job_id"]}))["state"]).final:
                    pass


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error_text(client: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail; the error text the agent reads."""
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return str(result.content[0].text)  # type: ignore[union-attr]


async def test_wait_for_job_is_capped(slow: tuple[Client, Path, Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    client, config, _ = slow
    monkeypatch.setattr(tools_jobs, "MAX_WAIT_SECONDS", 1.0)
    job_id = (await call(client, "start_training", {"config_path": str(config)}))["job_id"]
    started = time.monotonic()
    status = await call(client, "wait_for_job", {"job_id": job_id, "timeout_seconds": 100})
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5, elapsed
    assert status["state"] == "running" and "wait_for_job" in status["next_step"]


async def test_resume_refuses_a_running_job(slow: tuple[Client, Path, Settings]) -> None:
    client, config, _ = slow
    job_id = (await call(client, "start_training", {"config_path": str(config)}))["job_id"]
    text = await error_text(client, "resume_training", {"job_id": job_id})
    assert f"Job {job_id} is still" in text and "cancel_job" in text, text
    assert len((await call(client, "list_jobs", {}))["jobs"]) == 1, "nothing new was queued"


async def test_resume_refuses_a_job_of_another_kind(slow: tuple[Client, Path, Settings]) -> None:
    client, _, settings = slow
    store = JobStore(settings.db_path)
    job_dir = settings.jobs_dir / "caption-1"
    job_dir.mkdir(parents=True)
    store.insert(id="caption-1", kind=JobKind.CAPTION.value, lane_kind="cpu", job_dir=job_dir, state="failed")
    store.close()
    text = await error_text(client, "resume_training", {"job_id": "caption-1"})
    assert "caption job" in text and "only train jobs resume" in text, text


async def test_cancel_drops_a_queued_job_at_once(slow: tuple[Client, Path, Settings]) -> None:
    client, config, _ = slow
    first = await call(client, "start_training", {"config_path": str(config)})
    second = await call(client, "start_training", {"config_path": str(config)})
    assert (first["state"], second["state"], second["queue_position"]) == ("running", "queued", 1)
    started = time.monotonic()
    cancelled = await call(client, "cancel_job", {"job_id": second["job_id"]})
    assert time.monotonic() - started < 2
    assert cancelled["state"] == "cancelled" and cancelled["queue_position"] is None
    assert cancelled["cancel_requested"] and cancelled["elapsed_seconds"] is None
    still = await call(client, "get_job", {"job_id": first["job_id"]})
    assert still["state"] == "running", "cancelling the queued job leaves the running one alone"


@pytest.mark.parametrize("tool", ["get_job", "wait_for_job", "cancel_job", "resume_training", "job_logs"])
async def test_unknown_job_id_names_list_jobs(settings: Settings, tool: str) -> None:
    async with Client(build_server(settings)) as client:
        text = await error_text(client, tool, {"job_id": "train-nope"})
    assert "'train-nope'" in text and "list_jobs" in text, text
