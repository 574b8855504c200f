"""apply_review: approve all/some/decided, edits, conflicts, idempotency, backups, broken and hostile review files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mcp import Client
from review_fixtures import TRIGGER, make_captioned_folder

from lora_mcp.captioning.files import BACKUP_DIR
from lora_mcp.dataset.scan import scan_folder
from lora_mcp.errors import InvalidInput, PathNotAllowed
from lora_mcp.review.apply import apply_review
from lora_mcp.review.collect import collect_captions
from lora_mcp.review.reviewfile import REVIEWS_DIR, ImageReview, ReviewDocument, load_review, write_review
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

CAPTIONS = {
    "a.png": "This image shows ohwx standing",
    "b.png": "ohwx sitting on a bench",
    "c.png": "possibly ohwx running",
    "d.png": None,
}


def make_review(root: Path, captions: dict[str, str | None] = CAPTIONS) -> tuple[Path, Path]:
    """A folder and a review of it: a, c and d need a fix (with suggestions), b is ok."""
    folder = make_captioned_folder(root, captions)
    images = []
    for item in collect_captions(folder):
        fix = item.image != "b.png"
        images.append(
            ImageReview(
                image=item.image,
                caption=item.caption,
                caption_sha256=item.sha256,
                verdict="fix" if fix else "ok",
                reviewed_by="llm",
                issues=["stub issue"] if fix else [],
                suggested_caption=f"{TRIGGER}, fixed {item.image}" if fix else None,
            )
        )
    doc = ReviewDocument(
        version=1,
        folder=str(folder),
        created_at="2026-11-26T10:00:00Z",
        model="stub",
        llm="used",
        style="terse",
        lora_type="character",
        trigger_word=TRIGGER,
        images=images,
    )
    return folder, write_review(doc, folder)


def edit_decisions(review: Path, **decisions: str | tuple[str, str]) -> None:
    """Set decisions the way a person would: load the YAML, change it, save it."""
    data = yaml.safe_load(review.read_text())
    for entry in data["images"]:
        value = decisions.get(entry["image"].replace(".png", ""))
        if isinstance(value, tuple):
            entry["decision"], entry["edited_caption"] = value
        elif value:
            entry["decision"] = value
    review.write_text(yaml.safe_dump(data, sort_keys=False))


def caption(folder: Path, name: str) -> str | None:
    path = folder / f"{name}.txt"
    return path.read_text() if path.exists() else None


def test_review_file_lives_in_reviews_dir_and_never_overwrites(root: Path) -> None:
    folder, review = make_review(root)
    assert review.parent == folder / REVIEWS_DIR
    again = write_review(load_review(review), folder)
    assert again != review and again.exists() and review.exists()
    assert load_review(review).images[0].decision == "pending"


def test_approve_all_writes_fixes_keeps_backups_and_second_apply_changes_nothing(root: Path) -> None:
    folder, review = make_review(root)
    edit_decisions(review, c="reject")
    before_b = (folder / "b.txt").read_bytes()
    result = apply_review(review, "all")
    assert sorted(a.image for a in result.applied) == ["a.png", "d.png"]
    assert caption(folder, "a") == f"{TRIGGER}, fixed a.png"
    assert caption(folder, "d") == f"{TRIGGER}, fixed d.png"  # there was no caption file: written, nothing backed up
    assert caption(folder, "c") == "possibly ohwx running"
    assert (folder / "b.txt").read_bytes() == before_b
    assert [s.reason for s in result.skipped] == ["decision is reject"]
    assert result.unchanged == 1 and not result.conflicts
    backup = Path(result.backup_folder or "")
    assert backup.parent == folder / BACKUP_DIR
    inventory = scan_folder(folder, "txt")  # neither the review nor the backups look like dataset files
    assert inventory.captions == ["a.txt", "b.txt", "c.txt", "d.txt"] and not inventory.ignored
    assert (backup / "a.txt").read_text() == "This image shows ohwx standing"
    assert not (backup / "d.txt").exists()

    second = apply_review(review, "all")
    assert not second.applied and not second.conflicts and second.backup_folder is None
    assert sorted(s.reason.split(":")[0] for s in second.skipped) == [
        "already applied",
        "already applied",
        "decision is reject",
    ]


def test_approve_some_by_name_and_edits(root: Path) -> None:
    folder, review = make_review(root)
    edit_decisions(review, c=("edit", f"{TRIGGER} running on a beach"))
    result = apply_review(review, ["c.png"])
    assert [(a.image, a.source) for a in result.applied] == [("c.png", "edit")]
    assert caption(folder, "c") == f"{TRIGGER} running on a beach"
    assert caption(folder, "a") == "This image shows ohwx standing"
    with pytest.raises(InvalidInput, match=r"Not in the review: nope\.png"):
        apply_review(review, ["nope.png"])


def test_decided_applies_only_explicit_decisions(root: Path) -> None:
    folder, review = make_review(root)
    edit_decisions(review, a="approve")
    result = apply_review(review, "decided")
    assert [a.image for a in result.applied] == ["a.png"]
    assert caption(folder, "c") == "possibly ohwx running"


def test_caption_changed_since_review_is_a_conflict_not_overwritten(root: Path) -> None:
    folder, review = make_review(root)
    (folder / "a.txt").write_text("ohwx edited by hand meanwhile")
    result = apply_review(review, "all")
    assert [c.image for c in result.conflicts] == ["a.png"]
    assert caption(folder, "a") == "ohwx edited by hand meanwhile"
    assert {a.image for a in result.applied} == {"c.png", "d.png"}
    assert "review_captions again" in result.next_step


def test_broken_yaml_names_the_line(root: Path) -> None:
    _, review = make_review(root)
    lines = review.read_text().splitlines()
    bad = next(i for i, line in enumerate(lines) if line.strip().startswith("decision:"))
    lines[bad] = "  decision: [approve"
    review.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match=r"not valid YAML at line \d+") as err:
        apply_review(review, "all")
    line = int(str(err.value).split("line ")[1].split(",")[0])
    assert abs(line - (bad + 1)) <= 1


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("decision", "maybe", "images.1.decision"),
        ("caption_sha256", "[1, 2]", "images.1.caption_sha256"),
        ("decison", "approve", "images.1.decison"),
    ],
)
def test_wrong_field_names_its_line(root: Path, key: str, value: str, expected: str) -> None:
    _, review = make_review(root)
    lines = review.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("- image:")]
    entry = range(starts[1], starts[2])
    same = [i for i in entry if lines[i].strip().startswith(f"{key}:")]
    target = same[0] if same else next(i for i in entry if lines[i].strip().startswith("decision:"))
    lines[target] = f"  {key}: {value}"
    review.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as err:
        apply_review(review, "all")
    assert f"line {target + 1}: {expected}" in str(err.value)


def test_edit_without_text_is_refused_with_its_line(root: Path) -> None:
    _, review = make_review(root)
    edit_decisions(review, a="edit")
    with pytest.raises(InvalidInput, match="edited_caption is empty"):
        apply_review(review, "all")


def test_hostile_review_files(root: Path, tmp_path: Path) -> None:
    _, review = make_review(root)
    data = yaml.safe_load(review.read_text())
    data["images"][0]["image"] = "../../escape.png"
    review.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidInput, match="outside its folder"):
        apply_review(review, "all", roots=[root])
    assert not (root.parent / "escape.txt").exists()
    data["images"][0]["image"] = "a.png"
    data["folder"] = str(tmp_path / "elsewhere")
    review.write_text(yaml.safe_dump(data))
    with pytest.raises(PathNotAllowed):
        apply_review(review, "all", roots=[root])
    review.write_text("- just\n- a list\n")
    with pytest.raises(InvalidInput, match="does not hold a review"):
        apply_review(review, "all")


def test_fix_without_suggestion_is_reported_not_guessed(root: Path) -> None:
    folder, review = make_review(root)
    data = yaml.safe_load(review.read_text())
    data["images"][0]["suggested_caption"] = None
    review.write_text(yaml.safe_dump(data, sort_keys=False))
    result = apply_review(review, "all")
    assert ("a.png", "no suggested_caption") in [(s.image, s.reason.split(":")[0]) for s in result.skipped]
    assert caption(folder, "a") == "This image shows ohwx standing"


# --- a crash mid-apply -------------------------------------------------------------------------------------------

CHILD_APPLY = """
import sys, time
from pathlib import Path
import lora_mcp.review.apply as apply
from lora_mcp.fsutil import atomic_write

def blocking_write(target, text):
    def fill(handle):
        handle.write(text.encode()[:5])
        handle.flush()
        print("writing", target.name, flush=True)
        time.sleep(600)
    atomic_write(target, fill)

apply.write_text_atomic = blocking_write
apply.apply_review(Path(sys.argv[1]), "all")
"""


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.anyio
async def test_apply_after_a_kill_9_mid_apply_removes_the_leftover_temp(
    settings: Settings, root: Path, tmp_path: Path
) -> None:
    folder, review = make_review(root)
    child = subprocess.Popen([sys.executable, "-c", CHILD_APPLY, str(review)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().split() == ["writing", "a.txt"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    [leftover] = temp_files(folder)
    assert leftover.startswith(".a.txt.") and (folder / leftover).read_bytes() == b"ohwx,"
    assert caption(folder, "a") == "This image shows ohwx standing", "the kill left the old caption whole"
    then = time.time() - 600  # the next run comes minutes later
    os.utime(folder / leftover, (then, then))
    # Lookalikes that are not provably ours stay: a symlink, a file not matching the exact pattern, one too young.
    secret = tmp_path / "secret"
    secret.write_text("keep me")
    (folder / ".c.txt.zzzzzzzz.tmp").symlink_to(secret)
    (folder / ".c.txt.yyyy.tmp").write_text("x")
    (folder / ".d.txt.fresh000.tmp").write_text("a writer may have just created this")
    os.utime(folder / ".c.txt.yyyy.tmp", (then, then))

    async with Client(build_server(settings), mode="legacy") as client:
        result = await client.call_tool("apply_caption_review", {"review_file": str(review)})
    assert not result.is_error, result.content
    out = result.structured_content or {}
    assert out["removed_temp_files"] == [leftover]
    assert sorted(a["image"] for a in out["applied"]) == ["a.png", "c.png", "d.png"]
    assert caption(folder, "a") == f"{TRIGGER}, fixed a.png"
    assert temp_files(folder) == [".c.txt.yyyy.tmp", ".c.txt.zzzzzzzz.tmp", ".d.txt.fresh000.tmp"]
    assert secret.read_text() == "keep me"


def test_stale_temps_of_images_outside_the_selection_are_removed_too(root: Path) -> None:
    folder, review = make_review(root)
    stale = folder / ".b.txt.abcdefgh.tmp"  # b.png is ok: nothing is written for it, but it is the review's
    stale.write_text("half")
    then = time.time() - 600
    os.utime(stale, (then, then))
    result = apply_review(review, ["c.png"])
    assert result.removed_temp_files == [".b.txt.abcdefgh.tmp"] and not stale.exists()
