"""The next caption run removes the temp files a killed caption write left beside the captions, and nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from mcp import Client
from review_fixtures import make_captioned_folder

from lora_mcp.captioning.files import OverwritePolicy, plan_captions
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def plant(path: Path, seconds_old: float = 600) -> Path:
    path.write_bytes(b"half a capt")
    then = time.time() - seconds_old
    os.utime(path, (then, then))
    return path


def test_plan_captions_sweeps_leftovers_of_its_captions_only(root: Path) -> None:
    folder = make_captioned_folder(root, {"a.png": None, "sub.png": "ohwx"})
    (folder / "deep").mkdir()
    make_captioned_folder(folder, {"b.png": None}, name="deep")
    leftovers = [plant(folder / ".a.txt.0123abcd.tmp"), plant(folder / "deep" / ".b.txt.zz_zz_zz.tmp")]
    kept = [
        plant(folder / ".a.caption.0123abcd.tmp"),  # another caption_ext: not a target of this run
        plant(folder / ".a.png.0123abcd.tmp"),  # an image is never a caption target
        plant(folder / ".a.txt.0123abcd.tmp.x"),
        plant(folder / ".sub.txt.fresh_ab.tmp", seconds_old=0),  # too young: a writer may be about to lock it
    ]
    plan = plan_captions(folder, "txt", OverwritePolicy.SKIP)
    assert plan.todo == ["a.png", "deep/b.png"] and plan.skipped == ["sub.png"]
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in kept)


@pytest.mark.anyio
async def test_caption_images_call_sweeps_the_folder(settings: Settings, root: Path) -> None:
    folder = make_captioned_folder(root, {"a.png": "ohwx standing"})
    leftover = plant(folder / ".a.txt.q1w2e3r4.tmp")
    async with Client(build_server(settings), mode="legacy") as client:
        result = await client.call_tool("caption_images", {"folder": str(folder), "backend": "template"})
    assert result.is_error and "Nothing to caption" in result.content[0].text  # type: ignore[union-attr]
    assert not leftover.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a.txt"]
