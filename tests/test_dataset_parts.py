"""The parts of inspect_dataset on their own: buckets, trigger matching, duplicates, throttled progress, decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import picture, save
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from lora_mcp.dataset.buckets import bucket_for, preview_buckets
from lora_mcp.dataset.captions import CaptionStatus, contains_trigger, read_caption
from lora_mcp.dataset.duplicates import find_duplicates
from lora_mcp.dataset.images import DecodeFailure, ImageFacts, decode_image, thumbnail
from lora_mcp.dataset.progress import ThrottledProgress

# (width, height, resolution, divisibility) -> bucket, computed with AI-Toolkit's own get_bucket_for_image_size.
AITK_BUCKETS = [
    ((640, 512, 512, 16), (560, 464)),
    ((64, 64, 512, 16), (64, 64)),
    ((640, 512, 1024, 16), (640, 512)),
    ((600, 800, 512, 16), (448, 576)),
    ((741, 500, 512, 16), (624, 416)),
    ((741, 500, 768, 16), (752, 496)),
    ((1000, 1000, 1024, 16), (992, 1008)),
    ((4000, 3000, 1024, 16), (1168, 896)),
    ((20, 20, 512, 16), (16, 32)),
    ((1, 5000, 512, 16), (16, 4992)),  # extreme aspect: over the cap, as in AI-Toolkit
]


@pytest.mark.parametrize(("args", "bucket"), AITK_BUCKETS)
def test_bucket_matches_ai_toolkit(args: tuple[int, int, int, int], bucket: tuple[int, int]) -> None:
    assert bucket_for(*args) == bucket


@given(st.integers(16, 8000), st.integers(16, 8000), st.sampled_from([256, 512, 768, 1024, 1536]))
def test_bucket_properties(width: int, height: int, resolution: int) -> None:
    w, h = bucket_for(width, height, resolution)
    assert w % 16 == 0 and h % 16 == 0 and w > 0 and h > 0
    scale = min(1.0, resolution / (width * height) ** 0.5)
    if min(width, height) * scale >= 16:  # both sides span at least one step: the bucket respects the cap
        assert w * h <= resolution * resolution
        target = min(width * height, resolution * resolution)
        floor_area = (width * scale // 16 * 16) * (height * scale // 16 * 16)
        assert abs(w * h - target) <= target - floor_area + 1e-6  # no worse than rounding both sides down


def test_preview_counts_and_upscales() -> None:
    [preview] = preview_buckets([("a", 1000, 1000), ("b", 1024, 1024), ("c", 20, 20)], [1024])
    assert {(b.width, b.height): b.count for b in preview.buckets} == {(992, 1008): 1, (1024, 1024): 1, (16, 32): 1}
    assert preview.upscaled_files == ["a", "c"]
    assert preview.max_upscale == pytest.approx(1.6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ohwx, a man", True),
        ("A photo of OHWX.", True),
        ("photo of ohwxman", False),
        ("photo of xohwx", False),
        ("a [trigger] in a hat", True),
        ("[name] smiling", True),
        ("nothing here", False),
    ],
)
def test_trigger_is_a_case_insensitive_whole_word(text: str, expected: bool) -> None:
    assert contains_trigger(text, "ohwx") is expected


def test_trigger_with_regex_characters() -> None:
    assert contains_trigger("a photo of c++ guy", "c++")
    assert not contains_trigger("a photo of cxx guy", "c++")


def test_read_caption_statuses(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("héllo ohwx", encoding="utf-8")
    (tmp_path / "blank.txt").write_text(" \r\n")
    (tmp_path / "latin.txt").write_bytes("héllo".encode("latin-1"))
    assert read_caption(tmp_path / "ok.txt", "ohwx") == read_caption(tmp_path / "ok.txt", "OHWX")
    ok = read_caption(tmp_path / "ok.txt", "ohwx")
    assert (ok.status, ok.chars, ok.has_trigger) == (CaptionStatus.OK, 10, True)
    assert read_caption(tmp_path / "blank.txt").status is CaptionStatus.EMPTY
    assert read_caption(tmp_path / "latin.txt").status is CaptionStatus.NOT_UTF8
    assert read_caption(tmp_path / "none.txt").status is CaptionStatus.MISSING


def facts(im: Image.Image, sha: str) -> ImageFacts:
    return ImageFacts(im.width, im.height, "PNG", im.mode, None, sha, thumbnail(im))


def test_flat_or_same_shade_pictures_of_different_colours_are_not_duplicates() -> None:
    red = facts(Image.new("RGB", (300, 200), (200, 0, 0)), "1")
    blue = facts(Image.new("RGB", (300, 200), (0, 0, 250)), "2")
    grey_twin = facts(Image.new("RGB", (300, 200), (0, 102, 0)), "3")  # about the grey level of red
    assert find_duplicates([("red", red), ("blue", blue), ("green", grey_twin)]) == []
    assert len(find_duplicates([("red", red), ("red2", facts(Image.new("RGB", (300, 200), (201, 0, 0)), "4"))])) == 1


def test_same_picture_in_another_shape_is_not_a_duplicate() -> None:
    wide, tall = picture(3, (600, 300)), picture(3, (600, 300)).resize((600, 400))
    assert find_duplicates([("wide", facts(wide, "1")), ("tall", facts(tall, "2"))]) == []


def test_distinct_pictures_are_not_duplicates() -> None:
    assert find_duplicates([(str(i), facts(picture(i), str(i))) for i in range(150)]) == []


def test_groups_do_not_chain() -> None:
    # each step is near-identical to the previous one, but the last is far from the first
    steps = [facts(Image.new("RGB", (64, 64), (60 + 10 * i, 100, 100)), str(i)) for i in range(8)]
    groups = find_duplicates([(f"{i}", f) for i, f in enumerate(steps)])
    assert [len(g.files) for g in groups] == [2, 2, 2, 2]  # union-find would make one group of 8


def test_resized_and_reencoded_copy_is_a_near_duplicate(tmp_path: Path) -> None:
    a = save(picture(7, (900, 700)), tmp_path / "a.png")
    b = save(Image.open(a).resize((450, 350)), tmp_path / "b.jpg", quality=70)
    decoded = [(p.name, decode_image(p)) for p in (a, b)]
    items = [(name, f) for name, f in decoded if isinstance(f, ImageFacts)]
    [group] = find_duplicates(items)
    assert group.files == ("a.png", "b.jpg") and not group.identical_bytes
    assert find_duplicates([items[0], ("copy.png", items[0][1])])[0].identical_bytes


def test_throttle_with_a_fast_loop() -> None:
    calls: list[tuple[int, int]] = []
    meter = ThrottledProgress(lambda d, t: calls.append((d, t)), 1000, clock=lambda: 0.0)
    meter.start()
    for done in range(1, 1001):
        meter.update(done)
    meter.update(1000)
    assert calls[0] == (0, 1000) and calls[-1] == (1000, 1000)
    assert len(calls) == 21  # start + one per 5%


def test_throttle_with_a_slow_loop_reports_by_time() -> None:
    now = [0.0]
    calls: list[int] = []
    meter = ThrottledProgress(lambda d, t: calls.append(d), 1000, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 0.1
        meter.update(done)
    assert calls == [3, 6, 9]  # every 0.25 s or more, not every item


def test_decoding_never_raises_on_garbage(tmp_path: Path) -> None:
    cases = {
        "zero.png": b"",
        "text.png": b"hello",
        "half.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        "riff.webp": b"RIFF\x10\x00\x00\x00WEBPVP8 garbage",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        result = decode_image(tmp_path / name)
        assert isinstance(result, DecodeFailure), name
        assert result.kind == ("empty" if not data else "corrupt")
