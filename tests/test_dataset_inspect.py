"""inspect_dataset end to end: real images, crafted hostile files, read-only guarantee, and the MCP tool."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dataset_fixtures import (
    TRIGGER,
    bilevel_bomb_png,
    caption,
    picture,
    png_header_only,
    rotated_jpeg,
    save,
    sixteen_bit_png,
    snapshot,
    truncated_jpeg,
)
from mcp import Client
from PIL import Image

from lora_mcp.dataset.inspect import inspect_dataset
from lora_mcp.dataset.models import DatasetReport
from lora_mcp.errors import InvalidInput
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session (half a second)."""
    return bilevel_bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def build_zoo(folder: Path, shared_images: Path, bomb: Path) -> None:
    """One folder holding every problem inspect_dataset knows, each in a file of its own."""
    for i in range(5):
        caption(folder / f"good_{i}.txt")
        save(picture(i), folder / f"good_{i}.png")
    shutil.copyfile(folder / "good_0.png", folder / "good_0_copy.png")
    caption(folder / "good_0_copy.txt")
    shutil.copyfile(shared_images / "astronaut.png", folder / "astronaut.png")
    save(Image.open(folder / "astronaut.png").convert("RGB").resize((400, 400)), folder / "astronaut_small.jpg")
    for name in ("astronaut", "astronaut_small"):
        caption(folder / f"{name}.txt", f"{TRIGGER.upper()}, an astronaut in a white suit")
    truncated_jpeg(folder / "truncated.jpg", 10)
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("this is not a picture\n")
    rotated_jpeg(folder / "rotated.jpg", 11)
    save(picture(12).convert("CMYK"), folder / "cmyk.jpg", quality=90)
    sixteen_bit_png(folder / "deep.png", 13)
    save(picture(14).convert("RGBA"), folder / "alpha.png")
    save(picture(15, (64, 64)), folder / "tiny.png")
    shutil.copyfile(bomb, folder / "bomb.png")
    save(picture(16), folder / "pose.jpg")
    save(picture(17), folder / "pose.png")
    save(picture(18), folder / "blank.png")
    save(picture(19), folder / "latin.png")
    save(picture(20), folder / "notrigger.png")
    save(picture(21), folder / "nocap.png")
    save(picture(22), folder / "sub" / "nested.png")
    for name in ("truncated", "zero", "text", "rotated", "cmyk", "deep", "alpha", "tiny", "bomb", "pose", "sub/nested"):
        caption(folder / f"{name}.txt")
    caption(folder / "blank.txt", "  \n\t")
    caption(folder / "latin.txt", f"{TRIGGER} au café, crème brûlée".encode("latin-1"))
    caption(folder / "notrigger.txt", f"a photo of {TRIGGER}man, who is not the subject")
    caption(folder / "ghost.txt", "a caption without its image")
    save(picture(23), folder / "anim.gif")
    (folder / "notes.md").write_text("shoot notes")
    (folder / ".aitk_size.json").write_text("{}")
    save(picture(24), folder / ".hidden.png")
    save(picture(25), folder / "_controls" / "good_0.png")
    (folder / "_latent_cache").mkdir()
    (folder / "_latent_cache" / "good_0_abc.safetensors").write_bytes(b"\x00" * 32)
    (folder / "_t_e_cache").mkdir()
    (folder / ".thumbs").mkdir()
    save(picture(26), folder / ".thumbs" / "x.png")


EXPECTED = {
    ("corrupt_image", "error"): ["text.png", "truncated.jpg"],
    ("empty_file", "error"): ["zero.png"],
    ("unsupported_format", "error"): ["anim.gif"],
    ("too_large", "error"): ["bomb.png"],
    ("too_small", "warning"): ["astronaut_small.jpg", "tiny.png"],
    ("exif_rotated", "warning"): ["rotated.jpg"],
    ("non_rgb", "warning"): ["alpha.png", "cmyk.jpg"],
    ("non_rgb", "error"): ["deep.png"],
    ("caption_missing", "warning"): ["nocap.png"],
    ("caption_empty", "warning"): ["blank.txt"],
    ("caption_not_utf8", "error"): ["latin.txt"],
    ("orphan_caption", "warning"): ["ghost.txt"],
    ("name_collision", "error"): ["pose.jpg", "pose.png"],
    ("duplicate_image", "warning"): ["astronaut.png", "astronaut_small.jpg", "good_0.png", "good_0_copy.png"],
    ("trigger_missing", "warning"): ["notrigger.txt"],
}


@pytest.fixture
def zoo(tmp_path: Path, shared_images: Path, bomb_png: Path) -> Iterator[Path]:
    folder = tmp_path / "zoo"
    folder.mkdir()
    build_zoo(folder, shared_images, bomb_png)
    yield folder


def by_code(report: DatasetReport) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for p in report.problems:
        found.setdefault((p.code.value, p.severity.value), []).extend(p.files)
    return {key: sorted(files) for key, files in found.items()}


def test_zoo_reports_exactly_the_expected_problems(zoo: Path) -> None:
    report = inspect_dataset(zoo, trigger_word=TRIGGER)
    assert by_code(report) == EXPECTED
    assert not report.ready_for_training
    assert report.image_count == 24
    assert report.usable_image_count == 20  # minus truncated, zero, text and bomb
    for problem in report.problems:
        assert problem.message and problem.fix.endswith(".")
        assert all(f in problem.message for f in problem.files)


def test_zoo_facts_and_groups(zoo: Path) -> None:
    report = inspect_dataset(zoo, trigger_word=TRIGGER)
    images = {i.file: i for i in report.images}
    assert "sub/nested.png" in images  # AI-Toolkit walks subfolders
    assert not any(f.startswith(("_controls", ".", "_latent_cache")) or "/." in f for f in images)
    assert report.ignored_files == ["notes.md"]  # AI-Toolkit caches and hidden files are skipped silently
    rotated = images["rotated.jpg"]
    assert (rotated.width, rotated.height, rotated.exif_orientation) == (600, 800, 6)
    assert (images["deep.png"].mode, images["cmyk.jpg"].mode, images["alpha.png"].mode) == ("I;16", "CMYK", "RGBA")
    assert images["good_1.png"].format == "PNG" and images["good_1.png"].caption_file == "good_1.txt"
    assert images["good_1.png"].caption_chars == len(f"a photo of {TRIGGER} standing outdoors")
    assert images["astronaut.png"].has_trigger is True  # case-insensitive
    assert images["notrigger.png"].has_trigger is False  # "ohwxman" is not the whole word
    assert images["latin.png"].caption_status == "not_utf8"
    assert images["nocap.png"].caption_file is None and images["nocap.png"].caption_status == "missing"
    assert not images["truncated.jpg"].decoded and images["truncated.jpg"].width is None
    dupes = sorted(p.files for p in report.problems if p.code == "duplicate_image")
    assert dupes == [["astronaut.png", "astronaut_small.jpg"], ["good_0.png", "good_0_copy.png"]]
    messages = {tuple(p.files): p.message for p in report.problems if p.code == "duplicate_image"}
    assert "byte-identical" in messages[("good_0.png", "good_0_copy.png")]
    assert "near-identical" in messages[("astronaut.png", "astronaut_small.jpg")]
    # name_collision points at the shared caption
    assert "pose.txt" in next(p.message for p in report.problems if p.code == "name_collision")


def test_zoo_folder_is_byte_identical_afterwards(zoo: Path) -> None:
    before = snapshot(zoo)
    limit = Image.MAX_IMAGE_PIXELS
    inspect_dataset(zoo, trigger_word=TRIGGER, resolutions=[256, 1024])
    assert snapshot(zoo) == before
    assert limit == Image.MAX_IMAGE_PIXELS  # the bomb limit is never raised globally


def test_buckets_for_target_resolutions(zoo: Path) -> None:
    report = inspect_dataset(zoo, resolutions=[1024, 512, 512])
    assert [b.resolution for b in report.buckets] == [512, 1024]
    at_512 = report.buckets[0]
    assert sum(b.count for b in at_512.buckets) == report.usable_image_count
    assert all(b.width % 16 == 0 and b.height % 16 == 0 for p in report.buckets for b in p.buckets)
    sizes = {(b.width, b.height): b.count for b in at_512.buckets}
    assert sizes[(560, 464)] >= 5  # 640x512 pictures: 327,680 px capped at 512² (as AI-Toolkit computes it)
    assert "tiny.png" not in at_512.upscaled_files  # 64x64 fits a 64x64 bucket exactly


def test_shared_images_without_any_caption_are_not_ready(tmp_path: Path, shared_images: Path) -> None:
    folder = tmp_path / "shared"
    shutil.copytree(shared_images, folder)
    report = inspect_dataset(folder)
    assert not report.ready_for_training
    assert report.image_count == report.usable_image_count == len(list(shared_images.iterdir()))
    assert report.captioned_count == 0
    assert by_code(report)[("caption_missing", "error")] == sorted(i.file for i in report.images)
    assert {p.code for p in report.problems} == {"caption_missing", "non_rgb", "too_small"}
    assert "caption_images" in report.problems[0].fix
    assert {i.file: i.mode for i in report.images}["camera.png"] == "L"


def test_shared_images_with_one_caption_are_ready_with_warnings(tmp_path: Path, shared_images: Path) -> None:
    folder = tmp_path / "shared"
    shutil.copytree(shared_images, folder)
    caption(folder / "rocket.txt", "a rocket on the pad")
    report = inspect_dataset(folder)
    assert report.ready_for_training
    assert report.captioned_count == 1
    missing = by_code(report)[("caption_missing", "warning")]
    assert missing == sorted(i.file for i in report.images if i.file != "rocket.jpg")
    assert {p.code for p in report.problems} == {"caption_missing", "non_rgb", "too_small"}


def test_captions_only_on_unusable_images_do_not_count(tmp_path: Path) -> None:
    for i in range(5):
        save(picture(i), tmp_path / f"ok_{i}.png")
    (tmp_path / "broken.png").write_text("not a picture")
    caption(tmp_path / "broken.txt")
    report = inspect_dataset(tmp_path)
    assert by_code(report)[("caption_missing", "error")] == [f"ok_{i}.png" for i in range(5)]
    empty_too = tmp_path / "empty_captions"
    for i in range(5):
        save(picture(i), empty_too / f"ok_{i}.png")
    caption(empty_too / "ok_0.txt", " ")  # a caption file exists, though empty: a warning, as before
    report = inspect_dataset(empty_too)
    assert ("caption_missing", "warning") in by_code(report) and ("caption_empty", "warning") in by_code(report)
    assert report.ready_for_training


def test_png_claiming_a_size_over_the_limit_is_too_large_not_decoded(tmp_path: Path) -> None:
    for i in range(5):
        save(picture(i), tmp_path / f"ok_{i}.png")
    png_header_only(tmp_path / "huge.png", 10_000, 10_000)  # 100 M px: over the limit, under twice it
    report = inspect_dataset(tmp_path)
    assert by_code(report) == {("caption_missing", "error"): sorted(i.file for i in report.images),
                               ("too_large", "error"): ["huge.png"]}  # fmt: skip
    assert "10000x10000" in report.problems[0].message


@pytest.mark.parametrize(("count", "severity"), [(0, "error"), (3, "warning"), (5, None)])
def test_too_few_images(tmp_path: Path, count: int, severity: str | None) -> None:
    for i in range(count):
        save(picture(i), tmp_path / f"{i}.png")
        caption(tmp_path / f"{i}.txt")
    report = inspect_dataset(tmp_path)
    few = [p for p in report.problems if p.code == "too_few_images"]
    assert [p.severity for p in few] == ([severity] if severity else [])
    if few:
        assert "9-12" in few[0].message
    assert report.ready_for_training is (severity != "error")


def test_progress_is_throttled_and_ends_at_total(tmp_path: Path) -> None:
    for i in range(60):
        save(picture(i, (32, 32)), tmp_path / f"{i}.png")
    calls: list[tuple[int, int]] = []
    inspect_dataset(tmp_path, resolutions=[64], progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 60) and calls[-1] == (60, 60)
    assert len(calls) <= 25  # 60 images: a step of 3 images (5%), not one call per image
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_caption_ext_and_bad_arguments(tmp_path: Path) -> None:
    save(picture(1), tmp_path / "a.png")
    caption(tmp_path / "a.caption", "hello")
    report = inspect_dataset(tmp_path, caption_ext=".caption")
    assert report.captioned_count == 1 and report.caption_ext == "caption"
    with pytest.raises(InvalidInput, match="resolutions"):
        inspect_dataset(tmp_path, resolutions=[0])
    with pytest.raises(InvalidInput, match="resolutions"):
        inspect_dataset(tmp_path, resolutions=[])
    with pytest.raises(InvalidInput, match="caption extension"):
        inspect_dataset(tmp_path, caption_ext="../x")


def test_symlink_leaving_the_folder_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    outside = save(picture(1), tmp_path / "secret.png")
    save(picture(2), folder / "a.png")
    (folder / "link.png").symlink_to(outside)
    report = inspect_dataset(folder)
    assert [i.file for i in report.images] == ["a.png"]
    assert report.ignored_files == ["link.png"]


@pytest.mark.anyio
async def test_mcp_tool_returns_report_with_progress(settings: Settings, root: Path, shared_images: Path) -> None:
    folder = root / "set"
    shutil.copytree(shared_images, folder)
    caption(folder / "rocket.txt", "a rocket on the pad")
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "inspect_dataset", {"folder": "set", "trigger_word": "sks"}, progress_callback=on_progress
        )
        outside = await client.call_tool("inspect_dataset", {"folder": str(shared_images)})
    assert not result.is_error, result.content
    report = result.structured_content
    assert report is not None
    assert report["image_count"] == 8 and report["captioned_count"] == 1
    assert report["ready_for_training"] is True
    assert {p["code"] for p in report["problems"]} >= {"caption_missing", "trigger_missing"}
    assert seen and seen[-1] == (8, 8)
    assert outside.is_error
    text = outside.content[0].text  # type: ignore[union-attr]
    assert str(shared_images) in text and "roots" in text


def test_hostile_entries_neither_hang_nor_crash(tmp_path: Path) -> None:
    save(picture(1), tmp_path / "-rf.png")
    save(picture(2), tmp_path / "café ünïcode.jpg")
    save(picture(3), tmp_path / "dir_caption.png")
    (tmp_path / "dir_caption.txt").mkdir()  # a folder where the caption should be
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block forever
    report = inspect_dataset(tmp_path)
    assert [i.file for i in report.images] == ["-rf.png", "café ünïcode.jpg", "dir_caption.png"]
    assert report.ignored_files == ["pipe.png"]
    assert by_code(report)[("caption_not_utf8", "error")] == ["dir_caption.txt"]
