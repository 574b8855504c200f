"""conform_filenames: dry run vs apply vs undo, collisions, cycles, hostile patterns and maps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_mcp.dataset.conform import conform_filenames, slugify, undo_conform
from lora_mcp.errors import InvalidInput, OperationFailed


def _pair(folder: Path, stem: str, caption: str | None, ext: str = ".png") -> None:
    (folder / f"{stem}{ext}").write_bytes(f"image {stem}".encode())
    if caption is not None:
        (folder / f"{stem}.txt").write_text(caption, encoding="utf-8")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "set"
    folder.mkdir()
    _pair(folder, "IMG_0002", "ohwx, A woman in a red coat walking in the rain.", ext=".JPG")
    _pair(folder, "IMG_0001", "ohwx, A close-up portrait with soft light.")
    _pair(folder, "scan", None, ext=".webp")
    return folder


def test_slugify() -> None:
    assert slugify("A woman in a red coat walking in the rain.") == "woman_red_coat_walking_rain"
    assert slugify("Ça, c'est «l'été»!") == "c_est_l_t"


def test_dry_run_changes_nothing(folder: Path) -> None:
    before = _snapshot(folder)
    result = conform_filenames(folder, trigger_word="ohwx")
    assert result.dry_run and result.map_file is None and "dry_run=false" in result.next_step
    assert [(r.source, r.target) for r in result.renames] == [
        ("IMG_0001.png", "ohwx_001_close_up_portrait_soft_light.png"),
        ("IMG_0001.txt", "ohwx_001_close_up_portrait_soft_light.txt"),
        ("IMG_0002.JPG", "ohwx_002_woman_red_coat_walking_rain.jpg"),
        ("IMG_0002.txt", "ohwx_002_woman_red_coat_walking_rain.txt"),
        ("scan.webp", "ohwx_003.webp"),
    ]
    assert _snapshot(folder) == before


def test_apply_then_undo_restores_everything(folder: Path) -> None:
    before = _snapshot(folder)
    result = conform_filenames(folder, trigger_word="ohwx", dry_run=False)
    assert result.map_file and Path(result.map_file).parent == folder
    after = _snapshot(folder)
    assert "ohwx_002_woman_red_coat_walking_rain.jpg" in after and "IMG_0002.JPG" not in after
    assert after["ohwx_002_woman_red_coat_walking_rain.txt"] == before["IMG_0002.txt"]  # pairs stay paired
    saved = json.loads(Path(result.map_file).read_text(encoding="utf-8"))["renames"]
    assert saved[0] == {"from": "IMG_0001.png", "to": "ohwx_001_close_up_portrait_soft_light.png"}

    # Conforming again is a no-op: the names already fit.
    assert conform_filenames(folder, trigger_word="ohwx").renames == []

    undone = undo_conform(folder, Path(result.map_file))
    assert len(undone.renames) == len(result.renames)
    restored = _snapshot(folder)
    maps = [k for k in restored if k.startswith("_rename_map_")]
    assert len(maps) == 1 and maps[0].endswith(".undone.json")
    assert {k: v for k, v in restored.items() if k not in maps} == before
    with pytest.raises(InvalidInput):
        undo_conform(folder, folder / maps[0])  # cannot be applied twice


def test_cycles_and_collisions_never_clobber(tmp_path: Path) -> None:
    folder = tmp_path / "cyc"
    folder.mkdir()
    _pair(folder, "a", "first")  # -> t_001, which is image two's current name
    _pair(folder, "t_001", "second")  # -> t_002
    (folder / "t_002.txt").write_text("an orphan caption that stays", encoding="utf-8")
    before = _snapshot(folder)
    result = conform_filenames(folder, trigger_word="t", pattern="{trigger}_{index:03d}", dry_run=False)
    after = _snapshot(folder)
    assert after["t_001.png"] == before["a.png"] and after["t_001.txt"] == before["a.txt"]
    assert after["t_002_2.png"] == before["t_001.png"]  # t_002.txt belongs to nobody moving: not taken over
    assert after["t_002.txt"] == b"an orphan caption that stays"
    assert result.map_file
    undo_conform(folder, Path(result.map_file))
    assert {k: v for k, v in _snapshot(folder).items() if not k.startswith("_rename_map_")} == before


@pytest.mark.parametrize("pattern", ["{trigger}", "../{index}", "{index}/x", "{bogus}_{index}", "-{index}", "{index"])
def test_bad_patterns_are_refused(folder: Path, pattern: str) -> None:
    with pytest.raises(InvalidInput) as info:
        conform_filenames(folder, pattern=pattern)
    assert info.value.field == "pattern"


def test_hostile_or_stale_maps_are_refused(folder: Path) -> None:
    evil = folder / "_rename_map_evil.json"
    evil.write_text(json.dumps({"renames": [{"from": "../outside.png", "to": "IMG_0001.png"}]}), encoding="utf-8")
    with pytest.raises(InvalidInput, match="unsafe path"):
        undo_conform(folder, evil)
    with pytest.raises(InvalidInput):
        undo_conform(folder, folder / "IMG_0001.txt")
    result = conform_filenames(folder, trigger_word="ohwx", dry_run=False)
    (folder / result.renames[0].target).unlink()
    with pytest.raises(OperationFailed, match="no longer exists"):
        undo_conform(folder, Path(result.map_file or ""))
