"""caption_images, conform_filenames and undo_conform through an MCP client, and the `caption`/`conform` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from caption_fixtures import make_dataset
from mcp import Client

from lora_mcp.cli import main
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_caption_images_job_with_progress(settings: Settings, shared_images: Path) -> None:
    folder = make_dataset(settings.roots[0], shared_images)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(build_server(settings)) as client:
        bad = await client.call_tool("caption_images", {"folder": str(folder), "caption_type": "limerick"})
        assert bad.is_error and "caption_type" in str(bad.content) and "sd-prompt" in str(bad.content)
        outside = await client.call_tool("caption_images", {"folder": str(shared_images)})
        assert outside.is_error and "outside the allowed roots" in str(outside.content)

        started = await client.call_tool(
            "caption_images",
            {"folder": "dataset", "trigger_word": "ohwx", "caption_type": "sd-prompt", "backend": "template"},
        )
        assert not started.is_error, started.content
        status: dict[str, Any] = started.structured_content or {}
        assert status["kind"] == "caption"
        with anyio.fail_after(60):
            while status["state"] not in ("succeeded", "failed", "cancelled"):
                result = await client.call_tool(
                    "wait_for_job", {"job_id": status["job_id"], "timeout_seconds": 5}, progress_callback=on_progress
                )
                status = result.structured_content or {}
    assert status["state"] == "succeeded", status
    assert "captions_written" in status["next_step"]
    details = status["outputs"]["details"]
    assert len(details["captions_written"]) == 8
    assert [f["image"] for f in details["failed"]] == ["d_broken.png"] and "decode" in details["failed"][0]["reason"]
    assert any(m and m.startswith("captioned ") for _, _, m in seen)
    assert (folder / "horse.txt").read_text(encoding="utf-8") == "a photo of ohwx"


async def test_conform_tools_dry_run_apply_undo(settings: Settings, tmp_path: Path) -> None:
    folder = settings.roots[0] / "set"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"png")
    (folder / "x.txt").write_text("ohwx, A blue bicycle.", encoding="utf-8")
    async with Client(build_server(settings)) as client:
        dry = await client.call_tool("conform_filenames", {"folder": "set", "trigger_word": "ohwx"})
        assert not dry.is_error and (folder / "x.png").exists()
        assert (dry.structured_content or {})["renames"][0]["to"] == "ohwx_001_blue_bicycle.png"
        applied = await client.call_tool(
            "conform_filenames", {"folder": "set", "trigger_word": "ohwx", "dry_run": False}
        )
        map_file = Path((applied.structured_content or {})["map_file"])
        assert (folder / "ohwx_001_blue_bicycle.txt").exists()
        escape = await client.call_tool("undo_conform", {"folder": "set", "map_file": str(tmp_path / "m.json")})
        assert escape.is_error
        undone = await client.call_tool("undo_conform", {"folder": "set", "map_file": map_file.name})
        assert not undone.is_error, undone.content
    assert (folder / "x.png").exists() and (folder / "x.txt").exists()


def test_cli_caption_and_conform(settings: Settings, shared_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(settings.roots[0], shared_images, corrupt=None)
    assert main(["caption", str(folder), "--backend", "template", "--trigger-word", "ohwx", "--json"]) == 0
    out = capsys.readouterr()
    status = json.loads(out.out)
    assert status["state"] == "succeeded" and len(status["outputs"]["details"]["captions_written"]) == 8
    assert "8/8" in out.err  # the progress bar
    assert main(["conform", str(folder), "--trigger-word", "ohwx"]) == 0
    assert "(dry run)" in capsys.readouterr().out and (folder / "horse.png").exists()
    assert main(["conform", str(folder), "--trigger-word", "ohwx", "--apply"]) == 0
    assert not (folder / "horse.png").exists() and (folder / "ohwx_005_photo.png").exists()
    map_name = next(folder.glob("_rename_map_*.json")).name
    assert main(["conform", str(folder), "--undo", map_name]) == 0
    assert (folder / "horse.png").exists() and (folder / "horse.txt").exists()
