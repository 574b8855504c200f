"""compare_checkpoints and the subscribable job resource `lora://jobs/{job_id}`, end to end with the fake trainer."""

from __future__ import annotations

import base64
import io
import json
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import pytest
from jobs_fixtures import use_fake_aitk, write_config
from mcp import Client
from mcp.server import MCPServer
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError
from PIL import Image

from lora_mcp.server.app import build_server
from lora_mcp.server.job_watch import PROGRESS_INTERVAL, JobWatch, Snapshot, Throttle, subscription_bus
from lora_mcp.training.artifacts import loss_history
from lora_mcp.training.checkpoints import CAPTION_HEIGHT, HEADER_HEIGHT, LABEL_WIDTH, spread

# resources/subscribe is deprecated in 2.3, and still what 2025-11-25 clients (Claude Desktop, the Inspector) use
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def start(client: Client, config: Path) -> str:
    started = await client.call_tool("start_training", {"config_path": str(config)})
    assert not started.is_error, started.content
    return str(started.structured_content["job_id"])


async def wait_until_final(client: Client, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(120):
        while True:
            result = await client.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 5})
            status = result.structured_content
            assert status is not None, result.content
            if status["state"] in FINAL:
                return status


async def read_status(client: Client, job_id: str) -> dict[str, Any]:
    result = await client.read_resource(f"lora://jobs/{job_id}")
    return dict(json.loads(result.contents[0].text))  # type: ignore[union-attr]


def grid_png(result: Any) -> Image.Image:
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(images[0].data)))


def the_watch(server: MCPServer) -> JobWatch:
    """The server's JobWatch (its listen middleware is a bound method of it)."""
    owners = [getattr(m, "__self__", None) for m in server.middleware]
    return next(o for o in owners if isinstance(o, JobWatch))


# -- compare_checkpoints ------------------------------------------------------------------------------------------


async def test_compare_checkpoints_rows_columns_and_grid(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.005)
    config = write_config(
        settings, shared_images, name="cmp", steps=120, save_every=30, sample_every=30, max_saves_to_keep=2
    )
    async with Client(build_server(settings)) as client:
        job_id = await start(client, config)
        status = await wait_until_final(client, job_id)
        assert status["state"] == "succeeded", status

        result = await client.call_tool("compare_checkpoints", {"job_id": job_id})
        assert not result.is_error, result.content
        data = result.structured_content
        assert data is not None
        rows = data["checkpoints"]
        # saves at 30, 60, 90; max_step_saves_to_keep=2 leaves 60 and 90; then the final LoRA at 120
        assert [(r["step"], r["is_final"]) for r in rows] == [(60, False), (90, False), (120, True)]
        assert all(r["in_grid"] and r["sample_step"] == r["step"] for r in rows)
        assert all(isinstance(r["loss"], float) and 0 < r["loss"] < 1 for r in rows)
        assert all(r["size_bytes"] > 0 and Path(r["file"]).is_file() for r in rows)
        assert rows[-1]["file"].endswith("cmp.safetensors")
        assert data["prompt_indices"] == [0, 1, 2] and "a photo of" in data["prompts"][0]
        assert "export_lora" in data["next_step"]
        tile = data["tile_px"]
        with grid_png(result) as png:
            png.load()
            assert png.size == (LABEL_WIDTH + 3 * tile, HEADER_HEIGHT + 3 * (tile + CAPTION_HEIGHT))
        assert json.loads(result.content[0].text)["job_id"] == job_id  # type: ignore[union-attr]

        picked = await client.call_tool(
            "compare_checkpoints", {"job_id": job_id, "prompts": [2, "A PHOTO OF"]}
        )  # by index, and by a unique part of the text in any case
        assert not picked.is_error, picked.content
        assert picked.structured_content["prompt_indices"] == [2, 0]
        with grid_png(picked) as png:
            assert png.width == LABEL_WIDTH + 2 * picked.structured_content["tile_px"]

        bad = await client.call_tool("compare_checkpoints", {"job_id": job_id, "prompts": ["a dragon"]})
        assert bad.is_error and "0: " in bad.content[0].text  # type: ignore[union-attr]  # lists the prompts
        unknown = await client.call_tool("compare_checkpoints", {"job_id": "train-nope"})
        assert unknown.is_error and "list_jobs" in unknown.content[0].text  # type: ignore[union-attr]

        # the resource is get_job's JSON (a finished job no longer changes)
        got = await client.call_tool("get_job", {"job_id": job_id})
        assert await read_status(client, job_id) == got.structured_content
        log = await client.read_resource(f"lora://jobs/{job_id}/log")
        assert "Running 1 job" in log.contents[0].text  # type: ignore[union-attr]


async def test_compare_checkpoints_on_a_running_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.05)
    config = write_config(settings, shared_images, name="live", steps=400, save_every=30, sample_every=30)
    async with Client(build_server(settings)) as client:
        job_id = await start(client, config)
        with anyio.fail_after(60):
            while len((await read_status(client, job_id))["outputs"]["checkpoints"]) < 2:
                await anyio.sleep(0.1)
        result = await client.call_tool("compare_checkpoints", {"job_id": job_id})
        assert not result.is_error, result.content
        data = result.structured_content
        assert data is not None and data["state"] == "running"
        steps = [r["step"] for r in data["checkpoints"]]
        assert steps[:2] == [30, 60] and steps == sorted(steps) and not any(r["is_final"] for r in data["checkpoints"])
        with grid_png(result) as png:
            assert png.height == HEADER_HEIGHT + len(steps) * (data["tile_px"] + CAPTION_HEIGHT)
        await client.call_tool("cancel_job", {"job_id": job_id})
        await wait_until_final(client, job_id)


async def test_compare_checkpoints_before_the_first_save(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.05)
    config = write_config(settings, shared_images, name="early", steps=300, save_every=300, sample_every=0)
    async with Client(build_server(settings)) as client:
        job_id = await start(client, config)
        result = await client.call_tool("compare_checkpoints", {"job_id": job_id})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "no saved checkpoint yet" in text and "wait_for_job" in text, text
        await client.call_tool("cancel_job", {"job_id": job_id})
        status = await wait_until_final(client, job_id)
        assert status["state"] == "cancelled"
        after = await client.call_tool("compare_checkpoints", {"job_id": job_id})
        assert after.is_error and "resume_training" in after.content[0].text  # type: ignore[union-attr]


async def test_compare_checkpoints_on_a_resumed_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.04)
    config = write_config(
        settings, shared_images, name="again", steps=150, save_every=30, sample_every=30, max_saves_to_keep=10
    )
    async with Client(build_server(settings)) as client:
        first_id = await start(client, config)
        with anyio.fail_after(60):
            while len((await read_status(client, first_id))["outputs"]["checkpoints"]) < 2:
                await anyio.sleep(0.05)
        await client.call_tool("cancel_job", {"job_id": first_id})
        first = await wait_until_final(client, first_id)
        assert first["state"] == "cancelled", first
        resumed = await client.call_tool("resume_training", {"job_id": first_id})
        assert not resumed.is_error, resumed.content
        job_id = resumed.structured_content["job_id"]
        assert (await wait_until_final(client, job_id))["state"] == "succeeded"

        result = await client.call_tool("compare_checkpoints", {"job_id": job_id})
        assert not result.is_error, result.content
        rows = result.structured_content["checkpoints"]
        assert [r["step"] for r in rows] == [30, 60, 90, 120, 150] and rows[-1]["is_final"]
        # the steps saved before the resume get their loss from the first run's log (the lineage)
        own_log = (await client.read_resource(f"lora://jobs/{job_id}/log")).contents[0].text  # type: ignore[union-attr]
        assert min(step for step, _ in loss_history(own_log)) > 30
        assert all(isinstance(r["loss"], float) for r in rows), rows


def test_spread_keeps_first_and_last() -> None:
    assert spread(5, 20) == [0, 1, 2, 3, 4]
    picked = spread(41, 20)
    assert len(picked) == 20 and picked[0] == 0 and picked[-1] == 40 and picked == sorted(set(picked))


# -- the job resource and its subscriptions ----------------------------------------------------------------------


def test_throttle_sends_major_changes_at_once_and_progress_every_two_seconds() -> None:
    throttle = Throttle()
    base = Snapshot(major=("running", "training", ()), progress=(1, 0.5, "a"))
    assert not throttle.due(base, 0.0)  # the first look is the baseline
    assert throttle.due(Snapshot(base.major, (2, 0.5, "b")), 0.1)  # progress, nothing sent before
    sent = [0.1]
    for i in range(3, 60):  # progress every 0.1 s for ~6 s
        if throttle.due(Snapshot(base.major, (i, 0.5, str(i))), i / 10):
            sent.append(i / 10)
    assert all(b - a >= PROGRESS_INTERVAL - 1e-9 for a, b in pairwise(sent)), sent
    assert len(sent) == 3
    checkpoint = Snapshot(("running", "training", ("a.safetensors",)), (60, 0.5, "60"))
    assert throttle.due(checkpoint, 6.0)  # a checkpoint goes out at once
    assert not throttle.due(checkpoint, 9.0)  # nothing changed


class Recorder:
    """Resource-updated notifications of one URI, each followed by a read of the resource."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.times: list[float] = []
        self.reads: list[dict[str, Any]] = []

    def major(self, status: dict[str, Any]) -> tuple[Any, ...]:
        out = status["outputs"]
        return (status["state"], status["phase"], tuple(out["checkpoints"]), len(out["samples"]), out["lora_path"])

    async def record(self, client: Client, uri: str) -> None:
        if uri == self.uri:
            self.times.append(time.monotonic())
            self.reads.append(json.loads((await client.read_resource(uri)).contents[0].text))  # type: ignore[union-attr]

    def check_throttle(self) -> None:
        """Notifications beyond the distinct major states seen are progress ones: at most one per 2 s."""
        majors = len({self.major(r) for r in self.reads})
        span = self.times[-1] - self.times[0] if self.times else 0
        assert len(self.times) <= majors + span / PROGRESS_INTERVAL + 2, (len(self.times), majors, span)

    def saw_checkpoints(self) -> int:
        return len({tuple(r["outputs"]["checkpoints"]) for r in self.reads})


async def test_resources_subscribe_style(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.04)
    config = write_config(settings, shared_images, name="sub", steps=150, save_every=30, sample_every=30)
    server = build_server(settings)
    pending: list[tuple[int, str]] = []

    def handler_for(who: int) -> Any:
        async def on_message(message: Any) -> None:
            root = getattr(message, "root", message)
            if getattr(root, "method", None) == "notifications/resources/updated":
                pending.append((who, str(root.params.uri)))

        return on_message

    async with (
        Client(server, mode="legacy", message_handler=handler_for(1)) as first,
        Client(server, mode="legacy", message_handler=handler_for(2)) as second,
    ):
        caps = first.server_capabilities.resources
        assert caps is not None and caps.subscribe is True
        with pytest.raises(MCPError, match="Only lora://jobs"):
            await first.subscribe_resource("lora://jobs/x/log")
        with pytest.raises(MCPError, match="list_jobs"):
            await first.subscribe_resource("lora://jobs/train-nope")

        job_id = await start(first, settings.roots[0] / config)
        uri = f"lora://jobs/{job_id}"
        await first.subscribe_resource(uri)
        await second.subscribe_resource(uri)
        one, two = Recorder(uri), Recorder(uri)
        unsubscribed_at: int | None = None
        with anyio.fail_after(120):
            while not one.reads or one.reads[-1]["state"] not in FINAL:
                while pending:
                    who, got = pending.pop(0)
                    await (one.record(first, got) if who == 1 else two.record(second, got))
                if unsubscribed_at is None and two.reads and two.reads[-1]["outputs"]["checkpoints"]:
                    await second.unsubscribe_resource(uri)
                    await anyio.sleep(0.3)  # a notification already on its way may still land
                    pending[:] = [p for p in pending if p[0] == 1]
                    unsubscribed_at = len(two.times)
                await anyio.sleep(0.02)
        await anyio.sleep(1)
        assert [p for p in pending if p[0] == 2] == [] and len(two.times) == unsubscribed_at

    states = [r["state"] for r in one.reads]
    assert states[-1] == "succeeded" and "running" in states, states
    assert one.saw_checkpoints() >= 3 and len({r["phase"] for r in one.reads}) >= 2
    one.check_throttle()
    assert unsubscribed_at is not None and len(one.reads) > unsubscribed_at  # there was news after the second left
    assert not the_watch(server).sessions  # both connections closed: nothing left to watch


async def test_subscriptions_listen_style(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.04)
    first_config = write_config(settings, shared_images, name="blk", steps=100, save_every=30, sample_every=50)
    config = write_config(settings, shared_images, name="lis", steps=200, save_every=30, sample_every=30)
    server = build_server(settings)
    published: list[tuple[float, str]] = []

    def on_event(event: ServerEvent) -> None:
        if isinstance(event, ResourceUpdated):
            published.append((time.monotonic(), event.uri))

    subscription_bus(server).subscribe(on_event)
    async with Client(server) as client:
        caps = client.server_capabilities.resources
        assert caps is not None and caps.subscribe is True
        first_id = await start(client, first_config)
        queued = await client.call_tool("start_training", {"config_path": str(config)})
        job_id = queued.structured_content["job_id"]
        assert queued.structured_content["state"] == "queued"  # one GPU lane: it waits
        first, second = Recorder(f"lora://jobs/{first_id}"), Recorder(f"lora://jobs/{job_id}")
        with anyio.fail_after(60):
            async with client.listen(resource_subscriptions=[first.uri, second.uri]) as subscription:
                assert the_watch(server).streams == {first.uri: 1, second.uri: 1}
                async for event in subscription:
                    assert isinstance(event, ResourceUpdated)
                    await first.record(client, event.uri)
                    await second.record(client, event.uri)
                    if second.reads and len(second.reads[-1]["outputs"]["checkpoints"]) >= 2:
                        break
        with anyio.fail_after(5):  # the server ends the stream once the client's cancellation arrives
            while the_watch(server).streams:
                await anyio.sleep(0.02)
        closed_at = time.monotonic()
        assert first.reads[-1]["state"] == "succeeded" and first.saw_checkpoints() >= 2
        assert second.reads[0]["state"] == "running" and second.saw_checkpoints() >= 2  # queued -> running
        first.check_throttle()
        second.check_throttle()

        status = await wait_until_final(client, job_id)
        assert status["state"] == "succeeded" and len(status["outputs"]["checkpoints"]) > 2  # news it was not told
        assert [t for t, u in published if t > closed_at + 0.5] == []
