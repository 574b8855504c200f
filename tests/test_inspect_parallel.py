"""inspect_dataset on several cores: the same report, progress and facts cache as one worker, also over MCP stdio.

Also: LORA_MCP_INSPECT_WORKERS, a bounded number of chunks in flight, start_early, and the quality-check switch.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from dataset_fixtures import (
    bilevel_bomb_png,
    caption,
    picture,
    png_header_only,
    rotated_jpeg,
    save,
    sixteen_bit_png,
    truncated_jpeg,
)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from PIL import Image
from pydantic import ValidationError

from lora_mcp.dataset import images, pool
from lora_mcp.dataset import inspect as inspect_module
from lora_mcp.dataset.factcache import FactsCache
from lora_mcp.dataset.facts import ImageFacts
from lora_mcp.dataset.images import decode_image, decoder_signature
from lora_mcp.dataset.inspect import inspect_dataset
from lora_mcp.errors import OperationFailed
from lora_mcp.settings import Settings, get_settings

OLD_NS = 1_600_000_000 * 10**9
"""An mtime long past, so the facts cache stores every file (it skips files modified moments ago)."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def build_folder(folder: Path, shared_images: Path, bomb: Path) -> None:
    """Over the pool threshold: crops of the shared photos in several formats, plus every kind of broken file."""
    photos = sorted(p for p in shared_images.iterdir() if p.suffix in (".png", ".jpg"))
    for i, photo in enumerate(photos):
        with Image.open(photo) as im:
            rgb = im.convert("RGB")
        for j, box in enumerate([(0, 0, 300, 300), (50, 20, 512, 400), (100, 100, 400, 380)]):
            crop = rgb.crop(box)
            save(crop, folder / f"photo_{i}_{j}.jpg", quality=88)
            save(crop.convert("L") if j == 1 else crop, folder / "sub" / f"photo_{i}_{j}.png")
            caption(folder / f"photo_{i}_{j}.txt")
    for i in range(6):
        save(picture(i), folder / f"shape_{i}.webp")
    (folder / "empty.png").write_bytes(b"")
    (folder / "garbage.jpg").write_bytes(b"not an image at all")
    truncated_jpeg(folder / "truncated.jpg", seed=7)
    png_header_only(folder / "header_only.png", 640, 480)
    rotated_jpeg(folder / "rotated.jpg", seed=8)
    sixteen_bit_png(folder / "deep.png", seed=9)
    (folder / "bomb.png").write_bytes(bomb.read_bytes())
    caption(folder / "empty.txt", "")
    for dirpath, _, names in os.walk(folder):
        for name in names:
            os.utime(os.path.join(dirpath, name), ns=(OLD_NS, OLD_NS))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bilevel_bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.fixture
def folder(tmp_path: Path, shared_images: Path, bomb: Path) -> Path:
    built = tmp_path / "ds"
    build_folder(built, shared_images, bomb)
    assert sum(1 for p in built.rglob("*") if p.suffix != ".txt" and p.is_file()) > pool.MIN_POOL_IMAGES + 16
    return built


@pytest.fixture
def pool_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """How many paths and workers each call of decode_in_pool got (the real pool still runs)."""
    calls: list[tuple[int, int]] = []
    real = pool.decode_in_pool

    def spy(paths: list[Path], workers: int) -> Iterator[Any]:
        calls.append((len(paths), workers))
        return real(paths, workers)

    monkeypatch.setattr(inspect_module, "decode_in_pool", spy)
    return calls


def stored(cache: FactsCache, folder: Path) -> dict[str, Any]:
    """The images recorded in `folder`'s cache file."""
    images: dict[str, Any] = json.loads(cache.path_for(folder).read_text())["images"]
    return images


def test_two_workers_give_the_same_report_as_one(folder: Path, pool_calls: list[tuple[int, int]]) -> None:
    serial = inspect_dataset(folder, trigger_word="ohwx", workers=1)
    assert pool_calls == []
    parallel = inspect_dataset(folder, trigger_word="ohwx", workers=2)
    assert pool_calls == [(serial.image_count, 2)]
    assert parallel.model_dump() == serial.model_dump()
    codes = {p.code.value for p in serial.problems}
    assert {"empty_file", "corrupt_image", "too_large", "non_rgb", "exif_rotated"} <= codes


def test_workers_see_the_callers_pixel_limit(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150_000)  # 300x300 passes, 462x380 and 640x512 do not
    serial = inspect_dataset(folder, workers=1)
    parallel = inspect_dataset(folder, workers=2)
    assert parallel.model_dump() == serial.model_dump()
    too_large = {f for p in serial.problems if p.code.value == "too_large" for f in p.files}
    assert "photo_0_1.jpg" in too_large and "photo_0_0.jpg" not in too_large


def test_progress_arrives_in_order_and_ends_at_the_total(folder: Path, pool_calls: list[tuple[int, int]]) -> None:
    calls: list[tuple[int, int]] = []
    report = inspect_dataset(folder, workers=2, progress=lambda done, total: calls.append((done, total)))
    assert pool_calls
    total = report.image_count
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(set(done))
    assert len(calls) <= 25  # still throttled


def test_the_facts_cache_is_filled_the_same_way(
    folder: Path, tmp_path: Path, pool_calls: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = FactsCache(tmp_path / "one"), FactsCache(tmp_path / "two")
    serial = inspect_dataset(folder, workers=1, facts_cache=one)
    parallel = inspect_dataset(folder, workers=2, facts_cache=two)
    assert pool_calls == [(serial.image_count, 2)]
    assert stored(two, folder) == stored(one, folder)
    assert len(stored(one, folder)) == serial.image_count
    assert parallel.model_dump() == serial.model_dump()

    def no_pool(paths: list[Path], workers: int) -> Iterator[Any]:
        raise AssertionError(f"decoded {len(paths)} cached images again")

    monkeypatch.setattr(inspect_module, "decode_in_pool", no_pool)
    assert inspect_dataset(folder, workers=2, facts_cache=two).model_dump() == serial.model_dump()


def test_a_few_changed_images_are_decoded_here_not_in_a_pool(
    folder: Path, tmp_path: Path, pool_calls: list[tuple[int, int]]
) -> None:
    cache = FactsCache(tmp_path / "cache")
    inspect_dataset(folder, workers=2, facts_cache=cache)
    save(picture(99), folder / "shape_0.webp")
    os.utime(folder / "shape_0.webp", ns=(OLD_NS + 10**9, OLD_NS + 10**9))
    again = inspect_dataset(folder, workers=2, facts_cache=cache)
    assert pool_calls == [(again.image_count, 2)]  # the second run decoded one image, below the pool threshold
    assert again.model_dump() == inspect_dataset(folder, workers=1).model_dump()


def paths_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".webp"))


def wait_for_no_workers(deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while multiprocessing.active_children() and time.monotonic() < end:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def test_a_worker_crash_fails_the_call_instead_of_hanging(folder: Path) -> None:
    results = pool.decode_in_pool(paths_of(folder), 2)
    next(results)
    for child in multiprocessing.active_children():
        os.kill(child.pid or 0, signal.SIGKILL)
    with pytest.raises(OperationFailed, match="decoder process died"):
        list(results)
    wait_for_no_workers()


def test_stopping_early_ends_the_workers(folder: Path) -> None:
    results = pool.decode_in_pool(paths_of(folder), 2)
    next(results)
    assert multiprocessing.active_children()
    results.close()
    wait_for_no_workers()


@pytest.mark.anyio
async def test_inspect_dataset_over_a_stdio_server_uses_the_pool(
    tmp_path: Path, shared_images: Path, bomb: Path
) -> None:
    root = tmp_path / "root"
    build_folder(root / "ds", shared_images, bomb)
    expected = inspect_dataset(root / "ds", workers=1).model_dump(mode="json")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lora_mcp", "--log-level", "DEBUG", "serve"],
        env={"LORA_MCP_HOME": str(tmp_path / "state"), "LORA_MCP_ROOTS": str(root), "PATH": os.environ["PATH"]},
    )
    with (tmp_path / "stderr").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            for _ in range(2):  # cold (in the pool, from the tool's worker thread), then from the facts cache
                result = await client.call_tool("inspect_dataset", {"folder": str(root / "ds")})
                assert not result.is_error, result.content
                assert result.structured_content == expected
    log = (tmp_path / "stderr").read_text()
    assert log.count(f"images in {pool.default_workers()} worker processes") == 1, log[-3000:]


@pytest.mark.parametrize(("setting", "pooled"), [("1", None), ("3", 3)])
def test_the_workers_setting_is_honoured(
    folder: Path,
    pool_calls: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    pooled: int | None,
) -> None:
    serial = inspect_dataset(folder, trigger_word="ohwx", workers=1)
    monkeypatch.setenv("LORA_MCP_INSPECT_WORKERS", setting)
    get_settings.cache_clear()
    assert pool.configured_workers() == int(setting)
    report = inspect_dataset(folder, trigger_word="ohwx")  # workers=None: the setting decides
    assert pool_calls == ([] if pooled is None else [(serial.image_count, pooled)])
    assert report.model_dump() == serial.model_dump()  # same problems, same images in the same order
    assert [i.file for i in report.images] == [i.file for i in serial.images]


def test_unset_means_one_worker_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().inspect_workers is None
    assert pool.configured_workers() == pool.default_workers()
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("LORA_MCP_INSPECT_WORKERS", bad)
        with pytest.raises(ValidationError, match="inspect_workers"):
            Settings()


def test_chunks_in_flight_stay_bounded(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What is held at once is a fixed window of chunks, whatever the folder's size: memory stays flat."""
    submitted: list[int] = []

    class Counting(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(pool, "ProcessPoolExecutor", Counting)
    paths = paths_of(folder)
    window = 2 * pool.WINDOW_PER_WORKER
    assert len(paths) > (window + 1) * pool.CHUNK
    results = pool.decode_in_pool(paths, 2)
    first = next(results)
    assert len(submitted) == window  # the first result is read before any further chunk is sent
    rest = list(results)
    assert len(submitted) == -(-len(paths) // pool.CHUNK) and sum(submitted) == len(paths)
    assert [first, *rest] == [decode_image(path) for path in paths]


START_EARLY_PROBE = """
import multiprocessing.forkserver, sys
from lora_mcp.dataset import pool
pool.start_early()
started = multiprocessing.forkserver._forkserver._forkserver_pid is not None  # no public accessor
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"PIL", "numpy"})
print(started, heavy)
"""


@pytest.mark.parametrize(("setting", "starts"), [(None, True), ("2", True), ("1", False)])
def test_start_early_starts_the_fork_server_without_importing_pillow_here(
    setting: str | None, starts: bool, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LORA_MCP_")}
    env["LORA_MCP_HOME"] = str(tmp_path)
    if setting is not None:
        env["LORA_MCP_INSPECT_WORKERS"] = setting
    proc = subprocess.run(
        [sys.executable, "-c", START_EARLY_PROBE], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    started = "forkserver" in multiprocessing.get_all_start_methods() and starts
    assert proc.stdout.split() == [str(started), "[]"]


def test_the_quality_switch_reaches_the_workers_and_the_cache_key(
    folder: Path,
    pool_calls: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
    shared_images: Path,
    tmp_path: Path,
) -> None:
    """images.MEASURE_QUALITY off (benchmarks only): no statistics, no quality warning, another decoder signature."""
    night = tmp_path / "night"
    for photo in sorted(shared_images.glob("*.png"))[:4]:
        with Image.open(photo) as im:
            save(im.convert("RGB"), night / f"{photo.stem}.png")
            save(im.convert("RGB").point(lambda v: v * 0.2), night / f"{photo.stem}_dark.png")
        caption(night / f"{photo.stem}.txt")
        caption(night / f"{photo.stem}_dark.txt")
    assert "too_dark" in {p.code.value for p in inspect_dataset(night, workers=1).problems}
    photos = [path for path in paths_of(folder) if path.name.startswith("photo_")]
    assert all(isinstance(r, ImageFacts) and r.stats is not None for r in pool.decode_in_pool(photos, 2))
    measured = decoder_signature()
    monkeypatch.setattr(images, "MEASURE_QUALITY", False)
    assert decoder_signature() != measured
    assert all(isinstance(r, ImageFacts) and r.stats is None for r in pool.decode_in_pool(photos, 2))
    serial = inspect_dataset(folder, workers=1)
    parallel = inspect_dataset(folder, workers=2)
    assert pool_calls == [(serial.image_count, 2)]
    assert parallel.model_dump() == serial.model_dump()
    quality = {"too_dark", "too_light", "low_information", "blurry"}
    assert not quality & {p.code.value for p in serial.problems}
    assert not quality & {p.code.value for p in inspect_dataset(night, workers=2).problems}  # the planted dark ones
