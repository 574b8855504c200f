"""The whole loop as an agent without file tools runs it: MCP calls only, on the shared public-domain images.

inspect -> caption -> view -> review (stub LLM) -> read the review -> decide (approve, reject, edit) -> apply ->
set_caption -> config -> train (fake AI-Toolkit, several saves) -> compare_checkpoints -> export the middle one.
The test itself only lays the images down (the user's folder) and, at the end, checks the files the calls promised.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from jobs_fixtures import use_fake_aitk
from mcp import Client
from PIL import Image
from review_fixtures import StubLLM
from training_fixtures import IMAGES

from lora_mcp.server.app import build_server
from lora_mcp.settings import get_settings

pytestmark = pytest.mark.anyio
TRIGGER = "zxq"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def images_of(result: Any) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(part.data)))
        for part in result.content
        if getattr(part, "type", "") == "image"
    ]


async def test_agent_runs_the_whole_loop_through_mcp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_images: Path
) -> None:
    loras = tmp_path / "comfyui-loras"
    loras.mkdir()
    with StubLLM() as stub:
        monkeypatch.setenv("LORA_MCP_OPENAI_BASE_URL", stub.base_url)
        monkeypatch.setenv("LORA_MCP_REVIEW_MODEL", "stub")
        monkeypatch.setenv("LORA_MCP_COMFYUI_LORAS_DIR", str(loras))
        settings = use_fake_aitk(monkeypatch)
        assert get_settings().openai_base_url == stub.base_url
        folder = settings.roots[0] / "person"
        folder.mkdir()
        for image in IMAGES:  # the user's own pictures, no captions yet
            shutil.copy(shared_images / image, folder / image)

        async with Client(build_server(settings)) as client:

            async def call(tool: str, **args: Any) -> Any:
                result = await client.call_tool(tool, args)
                assert not result.is_error, f"{tool}: {result.content}"
                return result

            async def finish(job_id: str) -> dict[str, Any]:
                with anyio.fail_after(120):
                    while True:
                        status = (await call("wait_for_job", job_id=job_id, timeout_seconds=5)).structured_content
                        if status["state"] in ("succeeded", "failed", "cancelled"):
                            assert status["state"] == "succeeded", status
                            return dict(status)

            report = (await call("inspect_dataset", folder=str(folder), trigger_word=TRIGGER)).structured_content
            assert not report["ready_for_training"], "no caption at all: not ready"

            job = await call("caption_images", folder=str(folder), trigger_word=TRIGGER, backend="template")
            await finish(job.structured_content["job_id"])

            page = await call("view_dataset", folder=str(folder), page=1, page_size=16)
            items = page.structured_content["items"]
            assert sorted(i["file"] for i in items) == sorted(IMAGES)
            assert all(i["caption"] and TRIGGER in i["caption"] for i in items)
            sheets = images_of(page)
            assert len(sheets) == 1 and sheets[0].width > 100, "the agent sees the pictures"

            review_job = await call("review_captions", folder=str(folder), trigger_word=TRIGGER)
            review = await finish(review_job.structured_content["job_id"])
            review_file = review["outputs"]["details"]["review_file"]
            listed = (await call("get_caption_review", review_file=review_file)).structured_content
            names = [item["image"] for item in listed["items"]]
            assert sorted(names) == sorted(IMAGES)

            edited = f"{TRIGGER}, a person standing in a field, edited by the agent"
            decisions = [
                {"image": names[0], "decision": "approve"},
                {"image": names[1], "decision": "reject"},
                {"image": names[2], "decision": "edit", "caption": edited},
            ]
            await call("decide_captions", review_file=review_file, decisions=decisions)
            pending = (await call("get_caption_review", review_file=review_file, status="pending")).structured_content
            assert len(pending["items"]) == len(IMAGES) - 3
            before_rejected = (folder / names[1]).with_suffix(".txt").read_text()
            await call("apply_caption_review", review_file=review_file, approve="decided")

            own = f"{TRIGGER}, written directly with set_caption"
            await call("set_caption", folder=str(folder), image=names[3], caption=own)

            generated = await call(
                "generate_training_config",
                name="agent_lora",
                dataset_folder=str(folder),
                trigger_word=TRIGGER,
                steps=120,
                save_every=30,
                sample_every=30,
                vram_gb=24,
            )
            started = await call("start_training", config_path=generated.structured_content["config_path"])
            job_id = started.structured_content["job_id"]
            await finish(job_id)

            compared = await call("compare_checkpoints", job_id=job_id)
            rows = compared.structured_content["checkpoints"]
            steps = [r["step"] for r in rows]
            assert steps == sorted(steps) and rows[-1]["is_final"] and len(rows) >= 3
            assert len(images_of(compared)) == 1
            middle = next(r for r in rows if not r["is_final"])
            exported = await call("export_lora", job_id=job_id, checkpoint=middle["step"])

    stub_caption = f"{TRIGGER}, stub caption of {names[0]}"
    assert (folder / names[0]).with_suffix(".txt").read_text().strip() == stub_caption
    assert (folder / names[1]).with_suffix(".txt").read_text() == before_rejected
    assert (folder / names[2]).with_suffix(".txt").read_text().strip() == edited
    assert (folder / names[3]).with_suffix(".txt").read_text().strip() == own
    lora_path = Path(exported.structured_content["path"])
    assert lora_path.parent == loras and lora_path.is_file(), exported.structured_content
    assert exported.structured_content["step"] == middle["step"]
