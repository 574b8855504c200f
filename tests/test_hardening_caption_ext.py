"""One rule for every caption extension an agent or a review file supplies: plain text only, so no tool can be made
to write `<image>.yaml`, `<image>.py` or `<image>.png` beside the images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mcp import Client
from test_hardening_errors import error_text, tree
from test_review_apply import make_review
from training_fixtures import TRIGGER, make_dataset

from lora_mcp.dataset.captions import normalize_caption_ext
from lora_mcp.errors import InvalidInput
from lora_mcp.review.apply import apply_review
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

HOSTILE = [
    "yaml",
    ".yml",
    "YAML",
    "json",
    "toml",
    "py",
    "sh",
    "safetensors",
    "ckpt",
    "tmp",
    "../x",
    "x/y",
    "a\\b",
    "png",
    ".JPG",
    "webp",
    "gif",
    "",
    "  ",
    ".",
    "..txt",
    "t.xt",
    "txt\x00",
    "txt\n",
    "-txt",
    "t xt",
    "verylongext",
    "t\u00e9xt",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(("raw", "ext"), [("txt", "txt"), (".txt", "txt"), (" caption ", "caption"), ("TXT", "TXT")])
def test_plain_extensions_are_accepted(raw: str, ext: str) -> None:
    assert normalize_caption_ext(raw) == ext


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_extensions_are_refused_with_a_next_step(raw: str) -> None:
    if raw == "txt\n":  # surrounding whitespace is trimmed, as for every text argument
        assert normalize_caption_ext(raw) == "txt"
        return
    with pytest.raises(InvalidInput) as info:
        normalize_caption_ext(raw)
    assert info.value.field == "caption_ext" and "Next: Pass 'txt'" in str(info.value)


@pytest.mark.parametrize("raw", ["yaml", "py", "safetensors", "../x", "png", "", "tmp", "json"])
def test_review_file_caption_ext_is_refused_naming_its_line_and_nothing_changes(root: Path, raw: str) -> None:
    folder, review = make_review(root)
    lines = review.read_text().splitlines()
    line = next(i for i, text in enumerate(lines) if text.startswith("caption_ext:"))
    lines[line] = f"caption_ext: {yaml.safe_dump(raw).splitlines()[0]}"
    review.write_text("\n".join(lines) + "\n")
    before = tree(folder)
    with pytest.raises(InvalidInput) as info:
        apply_review(review, "all", roots=[root])
    message = str(info.value)
    assert f"line {line + 1}: caption_ext:" in message and "caption extension" in message, message
    assert "Fix that line of the review file" in message
    assert tree(folder) == before


@pytest.mark.anyio
async def test_apply_caption_review_refuses_a_hostile_caption_ext(settings: Settings, root: Path) -> None:
    folder, review = make_review(root)
    data = yaml.safe_load(review.read_text())
    data["caption_ext"] = "yaml"
    review.write_text(yaml.safe_dump(data, sort_keys=False))
    before = tree(folder)
    async with Client(build_server(settings), mode="legacy") as client:
        text = error_text(await client.call_tool("apply_caption_review", {"review_file": str(review)}))
    assert "caption_ext" in text and "'yaml'" in text and "line " in text
    assert tree(folder) == before and not list(folder.glob("*.yaml"))


@pytest.mark.anyio
async def test_every_tool_taking_caption_ext_applies_the_rule(
    settings: Settings, root: Path, shared_images: Path
) -> None:
    dataset = make_dataset(root, shared_images)
    before = tree(root)
    calls = [
        ("caption_images", {"folder": str(dataset), "backend": "template", "overwrite": "backup"}),
        ("review_captions", {"folder": str(dataset), "trigger_word": TRIGGER}),
        ("generate_training_config", {"name": "n", "dataset_folder": str(dataset), "trigger_word": TRIGGER}),
    ]
    async with Client(build_server(settings), mode="legacy") as client:
        for tool, args in calls:
            for raw in ("yaml", "py", "png", "json"):
                text = error_text(await client.call_tool(tool, {**args, "caption_ext": raw, "vram_gb": 16}))
                assert "caption extension" in text and repr(raw.lstrip(".")) in text, f"{tool} {raw}: {text}"
            for raw in ("../x", ""):  # generate_training_config's schema pattern answers these first
                result = await client.call_tool(tool, {**args, "caption_ext": raw, "vram_gb": 16})
                assert result.is_error, f"{tool} accepted {raw!r}"
        jobs = await client.call_tool("list_jobs", {})
    assert tree(root) == before, "no tool wrote anything"
    assert not jobs.is_error and (jobs.structured_content or {}).get("jobs") == [], "no job was queued"
