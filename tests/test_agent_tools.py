"""The tools an agent without file tools needs: view_dataset, set_caption, get_caption_review, decide_captions,
through an in-memory MCP client, on real folders and review files."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dataset_fixtures import caption, picture, save
from mcp import Client
from PIL import Image
from review_fixtures import TRIGGER, make_captioned_folder
from test_review_apply import CAPTIONS, make_review

from lora_mcp.captioning.files import BACKUP_DIR
from lora_mcp.review.reviewfile import load_review
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio

MAX_IMAGE_BYTES = 1_000_000


async def call(settings: Settings, tool: str, args: dict[str, Any], mode: str = "legacy") -> Any:
    async with Client(build_server(settings), mode=mode) as client:
        return await client.call_tool(tool, args)


def sheet_of(result: Any) -> Image.Image:
    """The one contact sheet of a result, decoded; its base64 text must stay within ~1 MB."""
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1
    assert images[0].mime_type == "image/jpeg"
    assert len(images[0].data) <= MAX_IMAGE_BYTES
    sheet = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    sheet.load()
    return sheet


def error_text(result: Any) -> str:
    assert result.is_error
    return str(result.content[0].text)


# view_dataset


@pytest.fixture
def dataset(root: Path, shared_images: Path) -> Path:
    """The shared images, captions on all but two, and a planted problem: a 16-bit greyscale PNG (non_rgb)."""
    folder = root / "ds"
    folder.mkdir()
    for image in sorted(shared_images.iterdir()):
        shutil.copy(image, folder / image.name)
    for image in sorted(folder.iterdir())[2:]:
        caption(image.with_suffix(".txt"), f"{TRIGGER}, {image.stem} photo")
    Image.new("I;16", (640, 512), 3000).save(folder / "zz_gray16.png")
    caption(folder / "zz_gray16.txt", f"{TRIGGER}, grey")
    return folder


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_view_dataset_shows_a_page_of_images_with_facts(settings: Settings, dataset: Path, mode: str) -> None:
    result = await call(settings, "view_dataset", {"folder": str(dataset), "page_size": 4}, mode)
    assert not result.is_error, result.content
    out = result.structured_content
    names = sorted(p.name for p in dataset.iterdir() if p.suffix in (".png", ".jpg"))
    assert (out["total_images"], out["total_pages"], out["page"]) == (9, 3, 1)
    assert [i["file"] for i in out["items"]] == names[:4]
    assert [i["index"] for i in out["items"]] == [1, 2, 3, 4]
    for item in out["items"]:
        with Image.open(dataset / item["file"]) as im:
            assert (item["width"], item["height"]) == im.size
        txt = dataset / item["file"]
        expected = txt.with_suffix(".txt").read_text() if txt.with_suffix(".txt").exists() else None
        assert item["caption"] == expected
    assert "caption_missing" in out["items"][0]["problems"]
    assert "caption_missing" not in out["items"][2]["problems"]
    assert json.loads(result.content[0].text) == out
    sheet = sheet_of(result)
    assert sheet.width >= 2 * 128 and sheet.height >= 2 * 128


async def test_view_dataset_last_page_and_planted_problem(settings: Settings, dataset: Path) -> None:
    result = await call(settings, "view_dataset", {"folder": str(dataset), "page": 3, "page_size": 4})
    assert not result.is_error, result.content
    items = result.structured_content["items"]
    assert [(i["index"], i["file"]) for i in items] == [(9, "zz_gray16.png")]
    assert items[0]["problems"] == ["non_rgb", "low_information"], "a flat 16-bit fill: both are true"
    assert items[0]["caption"] == f"{TRIGGER}, grey"
    sheet_of(result)


async def test_view_dataset_refuses_missing_page_and_outside_folder(
    settings: Settings, dataset: Path, tmp_path: Path
) -> None:
    text = error_text(await call(settings, "view_dataset", {"folder": str(dataset), "page": 2, "page_size": 16}))
    assert "1 page" in text and "page" in text
    assert error_text(await call(settings, "view_dataset", {"folder": str(tmp_path)}))
    assert (await call(settings, "view_dataset", {"folder": str(dataset), "page_size": 37})).is_error


async def test_view_dataset_stays_under_a_megabyte_for_a_full_page_of_noise(settings: Settings, root: Path) -> None:
    folder = root / "noise"
    rng = np.random.default_rng(0)
    for i in range(36):  # colour noise is JPEG's worst case: the sheet must shrink to fit
        pixels = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
        save(Image.fromarray(pixels), folder / f"n_{i:02d}.png", compress_level=1)
    result = await call(settings, "view_dataset", {"folder": str(folder), "page_size": 36})
    assert not result.is_error, result.content
    assert len(result.structured_content["items"]) == 36
    sheet_of(result)


async def test_view_dataset_draws_a_placeholder_for_a_corrupt_image(settings: Settings, root: Path) -> None:
    folder = make_captioned_folder(root, {"a.png": f"{TRIGGER}, a", "b.png": f"{TRIGGER}, b"})
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = await call(settings, "view_dataset", {"folder": str(folder)})
    assert not result.is_error, result.content
    corrupt = result.structured_content["items"][2]
    assert (corrupt["file"], corrupt["width"]) == ("c.png", None)
    assert "corrupt_image" in corrupt["problems"]
    sheet_of(result)


# set_caption


async def test_set_caption_backs_up_and_replaces(settings: Settings, root: Path) -> None:
    folder = make_captioned_folder(root, {"a.png": "old caption", "b.png": None})
    result = await call(settings, "set_caption", {"folder": str(folder), "image": "a.png", "caption": " new one "})
    assert not result.is_error, result.content
    out = result.structured_content
    assert out["caption_file"] == str(folder / "a.txt")
    assert (out["old_caption"], out["changed"]) == ("old caption", True)
    assert (folder / "a.txt").read_text() == "new one"
    backup = Path(out["backup_file"])
    assert backup.read_text() == "old caption" and backup.is_relative_to(folder / BACKUP_DIR)

    again = await call(settings, "set_caption", {"folder": str(folder), "image": "a.png", "caption": "third"})
    second = Path(again.structured_content["backup_file"])
    assert second != backup and second.read_text() == "new one" and backup.read_text() == "old caption"

    fresh = await call(settings, "set_caption", {"folder": str(folder), "image": "b.png", "caption": "first"})
    assert fresh.structured_content["old_caption"] is None and fresh.structured_content["backup_file"] is None
    assert (folder / "b.txt").read_text() == "first"


@pytest.mark.parametrize(
    ("image", "expected"),
    [("missing.png", "No image"), ("../x.png", "not a path inside"), ("/etc/passwd", "not a path inside")],
)
async def test_set_caption_refuses_missing_and_escaping_images(
    settings: Settings, root: Path, image: str, expected: str
) -> None:
    folder = make_captioned_folder(root, {"a.png": "keep"})
    save(picture(1, (32, 32)), root / "x.png")
    result = await call(settings, "set_caption", {"folder": str(folder), "image": image, "caption": "evil"})
    assert expected in error_text(result)
    assert not (root / "x.txt").exists()
    assert (folder / "a.txt").read_text() == "keep"


async def test_set_caption_refuses_a_symlink_out_of_the_folder(settings: Settings, root: Path) -> None:
    folder = make_captioned_folder(root, {"a.png": "keep"})
    save(picture(1, (32, 32)), root / "x.png")
    (folder / "link.png").symlink_to(root / "x.png")
    result = await call(settings, "set_caption", {"folder": str(folder), "image": "link.png", "caption": "evil"})
    assert "not a path inside" in error_text(result)


# get_caption_review / decide_captions


async def test_get_caption_review_pages_and_filters(settings: Settings, root: Path) -> None:
    _, review = make_review(root)
    result = await call(settings, "get_caption_review", {"review_file": str(review), "page_size": 3})
    assert not result.is_error, result.content
    out = result.structured_content
    assert (out["total_items"], out["total_pages"]) == (4, 2)
    assert [i["image"] for i in out["items"]] == ["a.png", "b.png", "c.png"]
    first = out["items"][0]
    assert first["caption"] == CAPTIONS["a.png"] and first["suggested_caption"] == f"{TRIGGER}, fixed a.png"
    assert (first["issues"], first["decision"]) == (["stub issue"], "pending")
    assert out["counts"] == {"pending": 4, "approve": 0, "reject": 0, "edit": 0}
    sheet_of(result)

    decided = {"image": "c.png", "decision": "reject"}
    await call(settings, "decide_captions", {"review_file": str(review), "decisions": [decided]})
    rejected = await call(settings, "get_caption_review", {"review_file": str(review), "status": "reject"})
    assert [(i["index"], i["image"]) for i in rejected.structured_content["items"]] == [(3, "c.png")]
    undecided = await call(settings, "get_caption_review", {"review_file": str(review), "status": "undecided"})
    assert [i["image"] for i in undecided.structured_content["items"]] == ["a.png", "b.png", "d.png"]
    assert (await call(settings, "get_caption_review", {"review_file": str(review), "status": "maybe"})).is_error


async def test_decide_then_apply_writes_approved_and_edited_captions(settings: Settings, root: Path) -> None:
    folder, review = make_review(root)
    decisions = [
        {"image": "a.png", "decision": "approve"},
        {"image": "c.png", "decision": "edit", "caption": f"{TRIGGER} running on a track"},
        {"image": "d.png", "decision": "reject"},
    ]
    result = await call(settings, "decide_captions", {"review_file": str(review), "decisions": decisions})
    assert not result.is_error, result.content
    assert result.structured_content["counts"] == {"pending": 1, "approve": 1, "reject": 1, "edit": 1}
    assert result.structured_content["updated"] == 3
    assert review.read_text().startswith("# Caption review written by lora-mcp")
    assert not [p.name for p in review.parent.iterdir() if p.name.endswith(".tmp")]
    doc = load_review(review)
    by_image = {e.image: e for e in doc.images}
    assert by_image["c.png"].edited_caption == f"{TRIGGER} running on a track"

    applied = await call(settings, "apply_caption_review", {"review_file": str(review), "approve": "decided"})
    assert not applied.is_error, applied.content
    assert sorted(a["image"] for a in applied.structured_content["applied"]) == ["a.png", "c.png"]
    assert (folder / "a.txt").read_text() == f"{TRIGGER}, fixed a.png"
    assert (folder / "c.txt").read_text() == f"{TRIGGER} running on a track"
    assert (folder / "b.txt").read_text() == CAPTIONS["b.png"]
    assert not (folder / "d.txt").exists()


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ([{"image": "a.png", "decision": "approve"}, {"image": "zz.png", "decision": "approve"}], "zz.png"),
        ([{"image": "a.png", "decision": "edit"}], "needs a caption"),
        ([{"image": "a.png", "decision": "edit", "caption": "   "}], "needs a caption"),
        ([{"image": "a.png", "decision": "edit", "caption": "a person standing"}], "missing_trigger"),
        ([{"image": "a.png", "decision": "edit", "caption": f"This image shows {TRIGGER}"}], "meta_phrase"),
        ([{"image": "b.png", "decision": "approve"}], "no suggested_caption"),
        ([{"image": "a.png", "decision": "reject", "caption": "x"}], "Use decision 'edit'"),
        ([{"image": "a.png", "decision": "reject"}, {"image": "a.png", "decision": "approve"}], "More than one"),
        ([{"image": "a.png", "decision": "maybe"}], "decision"),
    ],
)
async def test_decide_captions_refuses_and_leaves_the_file_byte_identical(
    settings: Settings, root: Path, decisions: list[dict[str, str]], expected: str
) -> None:
    _, review = make_review(root)
    before = review.read_bytes()
    result = await call(settings, "decide_captions", {"review_file": str(review), "decisions": decisions})
    assert expected in error_text(result)
    assert review.read_bytes() == before


async def test_decide_captions_refuses_a_review_outside_the_roots(settings: Settings, tmp_path: Path) -> None:
    _, review = make_review(tmp_path / "outside")
    decisions = [{"image": "a.png", "decision": "approve"}]
    result = await call(settings, "decide_captions", {"review_file": str(review), "decisions": decisions})
    assert "outside" in error_text(result)
