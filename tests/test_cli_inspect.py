"""`lora-mcp inspect` as a real subprocess: paths are used as given (no roots), JSON and text output, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from dataset_fixtures import caption, picture, save


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lora_mcp", "inspect", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_json_report_for_a_folder_outside_the_roots(tmp_path: Path, shared_images: Path) -> None:
    folder = tmp_path / "elsewhere"  # not under LORA_MCP_ROOTS: a person at a terminal may inspect anything
    shutil.copytree(shared_images, folder)
    caption(folder / "rocket.txt", "a rocket on the pad")
    result = run_cli(str(folder), "--json", "--trigger-word", "sks", "--resolutions", "512,1024")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ready_for_training"] is True
    assert report["image_count"] == 8 and report["captioned_count"] == 1
    assert [b["resolution"] for b in report["buckets"]] == [512, 1024]
    assert {p["code"] for p in report["problems"]} == {"caption_missing", "non_rgb", "too_small", "trigger_missing"}


def test_text_report_and_exit_code_one_when_not_ready(tmp_path: Path) -> None:
    for i in range(5):
        save(picture(i), tmp_path / f"{i}.png")
        caption(tmp_path / f"{i}.txt")
    (tmp_path / "broken.jpg").write_text("not a jpeg")
    caption(tmp_path / "broken.txt")
    result = run_cli(str(tmp_path))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "Ready for training: no (1 error, 0 warnings)" in out
    assert "[corrupt_image] broken.jpg" in out and "Fix: Re-export or re-download broken.jpg" in out
    assert "Buckets (sides are multiples of 16):" in out and "1024: 640x512 x5" in out


def test_bad_arguments_exit_two_with_a_hint(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path), "--resolutions", "512,big")
    assert result.returncode == 2
    assert "--resolutions '512,big'" in result.stderr and "512,768,1024" in result.stderr
    missing = run_cli(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
