"""The dataset facts cache: a cached inspection reports exactly what an uncached one does, decodes only new or
changed images, ignores corrupt or foreign cache files, stays bounded, and is what the tools use."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
from dataset_fixtures import TRIGGER, bilevel_bomb_png, caption, picture, save
from mcp import Client
from test_dataset_inspect import build_zoo
from training_fixtures import make_dataset

from lora_mcp.dataset import inspect as inspect_module
from lora_mcp.dataset.factcache import RACY_NS, FactsCache, facts_cache_for
from lora_mcp.dataset.images import decoder_signature
from lora_mcp.dataset.inspect import inspect_dataset
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings
from lora_mcp.training.config import parse_config
from lora_mcp.training.generate import generate_training_config

OLD_NS = time.time_ns() - 3600 * 10**9
"""An mtime well past the racy window."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class DecodeLog:
    """Records every image inspect_dataset really decodes (the real decoder runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[Path] = []
        real = inspect_module.decode_image

        def logged(path: Path) -> object:
            self.paths.append(path)
            return real(path)

        monkeypatch.setattr(inspect_module, "decode_image", logged)

    def names(self, folder: Path) -> list[str]:
        return sorted(p.relative_to(folder).as_posix() for p in self.paths)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> DecodeLog:
    return DecodeLog(monkeypatch)


def age(*paths: Path, ns: int = OLD_NS) -> None:
    """Give files an mtime past the racy window (their ctime stays now: only a program's clock can be set)."""
    for path in paths:
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


def age_tree(folder: Path) -> None:
    age(*(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()))


def check(folder: Path, cache: FactsCache, log: DecodeLog) -> list[str]:
    """Inspect with the cache, then without; the reports must be identical. Returns what the cached run decoded."""
    log.paths.clear()
    cached = inspect_dataset(folder, trigger_word=TRIGGER, resolutions=[256, 1024], facts_cache=cache)
    decoded = log.names(folder)
    plain = inspect_dataset(folder, trigger_word=TRIGGER, resolutions=[256, 1024])
    assert cached.model_dump() == plain.model_dump()
    return decoded


def stored(cache: FactsCache, folder: Path) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(cache.path_for(folder).read_text(encoding="utf-8"))["images"]
    return data


def same_size_pngs(a: Path, b: Path) -> None:
    """Two different pictures of the same byte size (uncompressed PNG: the size depends on the dimensions only)."""
    save(picture(30), a, compress_level=0)
    save(picture(31), b, compress_level=0)
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bilevel_bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_cached_report_equals_uncached_through_every_kind_of_change(
    tmp_path: Path, shared_images: Path, bomb: Path, log: DecodeLog
) -> None:
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    build_zoo(zoo, shared_images, bomb)  # every problem, decode failures of each kind, a subfolder
    same_size_pngs(zoo / "same.png", tmp_path / "other.png")
    age_tree(zoo)
    cache = FactsCache(tmp_path / "cache")
    everything = sorted(i.file for i in inspect_dataset(zoo).images)
    log.paths.clear()

    assert check(zoo, cache, log) == everything
    assert check(zoo, cache, log) == []  # nothing changed: nothing decoded
    assert set(stored(cache, zoo)) == set(everything)

    age(zoo / "good_1.png", ns=OLD_NS + 10**9)  # touched: same bytes, new mtime
    assert check(zoo, cache, log) == ["good_1.png"]

    save(picture(40), zoo / "good_2.png")  # replaced by another picture
    age(zoo / "good_2.png")
    assert check(zoo, cache, log) == ["good_2.png"]

    before = (zoo / "same.png").stat()
    (zoo / "same.png").write_bytes((tmp_path / "other.png").read_bytes())  # same size, new mtime
    age(zoo / "same.png", ns=OLD_NS + 2 * 10**9)
    assert (zoo / "same.png").stat().st_size == before.st_size
    assert check(zoo, cache, log) == ["same.png"]

    with (zoo / "good_3.png").open("r+b") as fh:  # same size, same inode, mtime put back: only ctime tells
        fh.write(b"\x00" * 64)
    age(zoo / "good_3.png")
    assert check(zoo, cache, log) == ["good_3.png"]

    (zoo / "good_4.png").unlink()
    (zoo / "sub" / "nested.png").unlink()
    assert check(zoo, cache, log) == []
    assert "good_4.png" not in stored(cache, zoo) and "sub/nested.png" not in stored(cache, zoo)

    save(picture(41), zoo / "new.png")
    age(zoo / "new.png")
    assert check(zoo, cache, log) == ["new.png"]
    assert check(zoo, cache, log) == []


def test_a_file_changed_moments_ago_is_decoded_until_it_settles(tmp_path: Path, log: DecodeLog) -> None:
    cache = FactsCache(tmp_path / "cache")
    folder = tmp_path / "ds"
    for i in range(5):
        save(picture(i), folder / f"{i}.png")
        caption(folder / f"{i}.txt")
    age(*folder.glob("*.png"))
    save(picture(9), folder / "fresh.png")  # mtime now: a second write in the same timestamp tick would go unseen
    assert check(folder, cache, log) == sorted([*(f"{i}.png" for i in range(5)), "fresh.png"])
    assert check(folder, cache, log) == ["fresh.png"]
    age(folder / "fresh.png", ns=time.time_ns() - RACY_NS - 10**9)
    assert check(folder, cache, log) == ["fresh.png"]
    assert check(folder, cache, log) == []


def test_a_retargeted_symlink_is_decoded_again(tmp_path: Path, log: DecodeLog) -> None:
    folder = tmp_path / "ds"
    same_size_pngs(folder / "a.png", folder / "b.png")
    (folder / "link.png").symlink_to("a.png")
    age_tree(folder)
    cache = FactsCache(tmp_path / "cache")
    assert check(folder, cache, log) == ["a.png", "b.png", "link.png"]
    (folder / "link2.png").symlink_to("b.png")
    os.replace(folder / "link2.png", folder / "link.png")  # same size, same mtime, another file
    assert check(folder, cache, log) == ["link.png"]


def test_undecodable_file_names_are_decoded_every_time(tmp_path: Path, log: DecodeLog) -> None:
    folder = tmp_path / "ds"
    save(picture(1), folder / "a.png")
    odd = Path(os.fsdecode(bytes(folder) + b"/\xff\xfe.png"))  # not UTF-8: JSON cannot hold the name as it is
    shutil.copyfile(folder / "a.png", odd)
    age_tree(folder)
    cache = FactsCache(tmp_path / "cache")
    assert len(check(folder, cache, log)) == 2
    assert check(folder, cache, log) == [odd.name]
    assert list(stored(cache, folder)) == ["a.png"]


GARBAGE = {
    "not json": b"\x00\x01 this is not json",
    "a pickle": pickle.dumps({"images": {}}),
    "json list": b"[]",
    "json null": b"null",
    "empty": b"",
    "unknown version": b'{"format": "lora-mcp dataset facts", "version": 99}',
}


@pytest.mark.parametrize("content", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_corrupt_cache_file_is_ignored_and_replaced(tmp_path: Path, log: DecodeLog, content: bytes) -> None:
    folder = tmp_path / "ds"
    for i in range(3):
        save(picture(i), folder / f"{i}.png")
    age_tree(folder)
    cache = FactsCache(tmp_path / "cache")
    cache.directory.mkdir()
    cache.path_for(folder).write_bytes(content)
    assert check(folder, cache, log) == ["0.png", "1.png", "2.png"]
    assert set(stored(cache, folder)) == {"0.png", "1.png", "2.png"}
    assert check(folder, cache, log) == []


def tamper(path: Path, change: str) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    entry = data["images"]["0.png"]
    if change == "folder":
        data["folder"] = "/somewhere/else"
    elif change == "decoder":
        data["decoder"] = "decode_image 0, Pillow 1.0"
    elif change == "short thumb":
        entry["result"]["thumb"] = entry["result"]["thumb"][:-4]
    elif change == "extra field":
        entry["result"]["__reduce__"] = "os.system"
    elif change == "bad sha":
        entry["result"]["sha256"] = "x" * 64
    elif change == "negative width":
        entry["result"]["width"] = -1
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("change", ["folder", "decoder", "short thumb", "extra field", "bad sha", "negative width"])
def test_a_foreign_or_tampered_cache_file_is_not_trusted(tmp_path: Path, log: DecodeLog, change: str) -> None:
    folder = tmp_path / "ds"
    for i in range(3):
        save(picture(i), folder / f"{i}.png")
    age_tree(folder)
    cache = FactsCache(tmp_path / "cache")
    check(folder, cache, log)
    tamper(cache.path_for(folder), change)
    assert check(folder, cache, log) == ["0.png", "1.png", "2.png"]


def test_another_decoder_signature_finds_nothing(tmp_path: Path, log: DecodeLog) -> None:
    folder = tmp_path / "ds"
    save(picture(1), folder / "a.png")
    age_tree(folder)
    cache = FactsCache(tmp_path / "cache")
    check(folder, cache, log)
    st = (folder / "a.png").stat()
    assert cache.open(folder, decoder_signature()).get("a.png", st) is not None
    assert cache.open(folder, decoder_signature() + " changed").get("a.png", st) is None


def test_the_least_recently_used_folders_are_evicted(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "cache", max_folders=3)
    folders = []
    for i in range(5):
        folder = tmp_path / f"ds{i}"
        save(picture(i, (32, 32)), folder / "a.png")
        age_tree(folder)
        folders.append(folder)
    stale_tmp = cache.directory / ".x.json.123.tmp"  # left by a writer killed mid-write
    for i, folder in enumerate(folders):
        if i == 1:
            cache.directory.mkdir(exist_ok=True)
            stale_tmp.write_text("half")
            age(stale_tmp)
        if i == 3:
            inspect_dataset(folders[0], facts_cache=cache)  # used again: no longer the oldest
            time.sleep(0.02)
        inspect_dataset(folder, facts_cache=cache)
        time.sleep(0.02)  # distinct mtimes even on coarse file-system clocks
    kept = sorted(p.name for p in cache.directory.iterdir())
    assert kept == sorted(cache.path_for(f).name for f in (folders[0], folders[3], folders[4]))


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path: Path, log: DecodeLog) -> None:
    folder = tmp_path / "ds"
    save(picture(1), folder / "a.png")
    age_tree(folder)
    (tmp_path / "file").write_text("not a folder")
    cache = FactsCache(tmp_path / "file" / "cache")
    assert check(folder, cache, log) == ["a.png"]
    assert check(folder, cache, log) == ["a.png"]


@pytest.mark.anyio
async def test_generate_fills_the_cache_and_the_tool_uses_it(
    settings: Settings, root: Path, shared_images: Path, log: DecodeLog
) -> None:
    dataset = make_dataset(root, shared_images)
    age_tree(dataset)
    cache = facts_cache_for(settings)
    assert cache.directory == settings.home / "cache" / "dataset_facts"
    fields = {"name": "cached", "dataset_folder": str(dataset), "trigger_word": TRIGGER, "vram_gb": 24}
    generate_training_config(parse_config(fields), settings, dry_run=True)
    assert len(log.paths) == 6 and len(stored(cache, dataset)) == 6
    log.paths.clear()
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("inspect_dataset", {"folder": "dataset", "trigger_word": TRIGGER})
    assert not result.is_error, result.content
    assert log.paths == []
    report = result.structured_content
    assert report is not None
    assert report == inspect_dataset(dataset, trigger_word=TRIGGER).model_dump(mode="json")
