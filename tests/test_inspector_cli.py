"""The MCP Inspector CLI (a third-party Node client, 2025-11-25 handshake) drives `lora-mcp serve` over stdio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
INSPECTOR = REPO / ".tools" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture(scope="module")
def inspector() -> Path:
    """The Inspector that scripts/test.sh installs; missing is a failure, never a skip."""
    if not INSPECTOR.exists():
        pytest.fail(
            f"MCP Inspector CLI not found at {INSPECTOR}: run scripts/test.sh (it installs "
            "@modelcontextprotocol/inspector@0.15.0 into .tools/)"
        )
    if shutil.which("node") is None:
        pytest.fail(
            "node is not on PATH: the MCP Inspector CLI needs Node 20 (run scripts/test.sh on a machine with it)"
        )
    return INSPECTOR


def run_inspector(inspector: Path, root: Path, home: Path, *args: str) -> dict[str, Any]:
    """One Inspector CLI call against a fresh server; returns its JSON output."""
    cmd = [
        str(inspector),
        "--cli",
        "-e",
        f"LORA_MCP_HOME={home}",
        "-e",
        f"LORA_MCP_ROOTS={root}",
        sys.executable,
        "-m",
        "lora_mcp",
        "serve",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"inspector failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_tools_list(inspector: Path, root: Path, tmp_path: Path) -> None:
    result = run_inspector(inspector, root, tmp_path / "state", "--method", "tools/list")
    tools = {t["name"]: t for t in result["tools"]}
    assert {"system_check", "inspect_dataset"} <= set(tools)
    assert tools["inspect_dataset"]["inputSchema"]["required"] == ["folder"]
    assert "outputSchema" in tools["inspect_dataset"]


def test_system_check(inspector: Path, root: Path, tmp_path: Path) -> None:
    result = run_inspector(inspector, root, tmp_path / "state", "--method", "tools/call", "--tool-name", "system_check")
    assert result.get("isError") is not True
    assert result["structuredContent"]["roots"] == [str(root)]


def test_inspect_dataset(inspector: Path, root: Path, tmp_path: Path, shared_images: Path) -> None:
    folder = root / "cats"
    folder.mkdir()
    for name in ("astronaut.png", "chelsea.png", "coffee.png"):
        shutil.copy(shared_images / name, folder / name)
    (folder / "chelsea.txt").write_text("photo of a cat")
    args = ["--method", "tools/call", "--tool-name", "inspect_dataset", "--tool-arg", f"folder={folder}"]
    result = run_inspector(inspector, root, tmp_path / "state", *args)
    assert result.get("isError") is not True, result
    report = result["structuredContent"]
    assert report["image_count"] == 3
    assert report["captioned_count"] == 1
    assert isinstance(report["ready_for_training"], bool)
    assert {i["file"] for i in report["images"]} == {"astronaut.png", "chelsea.png", "coffee.png"}


@pytest.mark.parametrize("folder", ["/etc", "-rf"])
def test_inspect_dataset_refuses_paths_outside_roots(inspector: Path, root: Path, tmp_path: Path, folder: str) -> None:
    args = ["--method", "tools/call", "--tool-name", "inspect_dataset", "--tool-arg", f"folder={folder}"]
    result = run_inspector(inspector, root, tmp_path / "state", *args)
    assert result["isError"] is True
    assert "Next:" in result["content"][0]["text"]
