"""system_check and `lora-mcp doctor`: GPUs from nvidia-smi (a fake that prints real bytes), AI-Toolkit, disk."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lora_mcp.settings import Settings
from lora_mcp.system import GPUInfo, parse_nvidia_smi_csv, query_gpus, system_check

# Captured from `nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=...` on an H100 80GB HBM3.
H100_CSV = b"index, name, memory.total [MiB], memory.used [MiB]\n0, NVIDIA H100 80GB HBM3, 81559 MiB, 0 MiB\n"
H100_NOHEADER = b"0, NVIDIA H100 80GB HBM3, 81559 MiB, 0 MiB\n"
H100_NOHEADER_NOUNITS = b"0, NVIDIA H100 80GB HBM3, 81559, 0\n"
# Same format, two cards, one busy (a typical workstation).
TWO_GPUS = b"0, NVIDIA GeForce RTX 4090, 24564, 18211\n1, NVIDIA GeForce RTX 3090, 24576, 1\n"
H100 = GPUInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_total_mb=81559, memory_used_mb=0)


@pytest.mark.parametrize("raw", [H100_CSV, H100_NOHEADER, H100_NOHEADER_NOUNITS, H100_CSV.replace(b"\n", b"\r\n")])
def test_parse_real_h100_output(raw: bytes) -> None:
    assert parse_nvidia_smi_csv(raw.decode()) == [H100]


def test_parse_two_gpus() -> None:
    gpus = parse_nvidia_smi_csv(TWO_GPUS.decode())
    assert [(g.index, g.name, g.memory_free_mb) for g in gpus] == [
        (0, "NVIDIA GeForce RTX 4090", 24564 - 18211),
        (1, "NVIDIA GeForce RTX 3090", 24575),
    ]


def test_parse_skips_rows_it_cannot_read() -> None:
    text = (
        "0, NVIDIA A10G, [N/A], [N/A]\n"
        "1, GRID T4-16Q, 16384 MiB, [Not Supported]\n"
        "\n"
        "garbage\n"
        "2, NVIDIA L4, 23034 MiB, 2 MiB\n"
    )
    assert [g.index for g in parse_nvidia_smi_csv(text)] == [2]


def test_parse_empty() -> None:
    assert parse_nvidia_smi_csv("") == []
    assert parse_nvidia_smi_csv("index, name, memory.total [MiB], memory.used [MiB]\n") == []


def install_fake_nvidia_smi(bin_dir: Path, stdout: bytes, exit_code: int = 0, stderr: bytes = b"") -> Path:
    """A `nvidia-smi` script that checks it was asked the real query, then prints `stdout` byte for byte."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "out.bin").write_bytes(stdout)
    (bin_dir / "err.bin").write_bytes(stderr)
    script = bin_dir / "nvidia-smi"
    script.write_text(
        f"""#!{sys.executable}
import sys
query = "--query-gpu=index,name,memory.total,memory.used"
if query not in sys.argv or not any(a.startswith("--format=csv") for a in sys.argv):
    sys.exit(f"unexpected arguments: {{sys.argv[1:]}}")
sys.stdout.buffer.write(open({str(bin_dir / "out.bin")!r}, "rb").read())
sys.stderr.buffer.write(open({str(bin_dir / "err.bin")!r}, "rb").read())
sys.exit({exit_code})
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


@pytest.fixture
def no_gpu_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH with nothing on it: no nvidia-smi."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_no_nvidia_smi(no_gpu_path: None, settings: Settings) -> None:
    report = system_check(settings)
    assert report.gpus == []
    assert "nvidia-smi not found" in report.gpu_note
    assert any("No CUDA GPU" in p for p in report.problems)


def test_fake_nvidia_smi_first_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    bin_dir = tmp_path / "bin"
    install_fake_nvidia_smi(bin_dir, H100_NOHEADER_NOUNITS)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    report = system_check(settings)
    assert report.gpus == [H100]
    assert report.gpu_note == "1 NVIDIA GPU(s) found."
    assert not any("GPU" in p for p in report.problems)


def test_failing_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = b"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    install_fake_nvidia_smi(tmp_path / "bin", message, exit_code=9)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    gpus, note = query_gpus()
    assert gpus == []
    assert note.startswith("nvidia-smi exited 9") and "couldn't communicate" in note


def test_ai_toolkit_checks(tmp_path: Path, no_gpu_path: None) -> None:
    toolkit = tmp_path / "ai-toolkit"
    toolkit.mkdir()
    root = tmp_path / "root"
    report = system_check(Settings(home=tmp_path / "state", roots=[root], ai_toolkit_dir=toolkit))
    assert not report.ai_toolkit.run_py_found
    assert any(f"No run.py in {toolkit}" in p for p in report.problems)
    (toolkit / "run.py").write_text("")
    report = system_check(
        Settings(home=tmp_path / "state", roots=[root], ai_toolkit_dir=toolkit, ai_toolkit_python=tmp_path / "nope")
    )
    assert report.ai_toolkit.run_py_found and not report.ai_toolkit.python_found
    assert any("LORA_MCP_AI_TOOLKIT_PYTHON" in p for p in report.problems)


def test_missing_root_and_low_disk_are_problems(tmp_path: Path, no_gpu_path: None) -> None:
    missing = tmp_path / "missing-root"
    settings = Settings(home=tmp_path / "state", roots=[missing])
    report = system_check(settings, min_free_gb=1e9)
    assert any(f"Root {missing} does not exist" in p for p in report.problems)
    assert any("GB free at" in p for p in report.problems)
    assert report.disks[1].path == str(missing)  # measured on the nearest existing parent
    assert report.disks[1].total_gb > 0


def run_doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lora_mcp", "doctor", "--json"], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_doctor_json_with_fake_gpu(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    toolkit = tmp_path / "ai-toolkit"
    toolkit.mkdir()
    (toolkit / "run.py").write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "LORA_MCP_AI_TOOLKIT_DIR": str(toolkit),
    }
    proc = run_doctor(env)
    report = json.loads(proc.stdout)  # stdout is only the JSON document
    assert [g["name"] for g in report["gpus"]] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"]
    assert report["ai_toolkit"]["run_py_found"] is True
    assert report["roots"] == [os.environ["LORA_MCP_ROOTS"]]
    assert proc.returncode == (1 if report["problems"] else 0), proc.stderr


def test_cli_doctor_json_without_gpu_exits_1(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    proc = run_doctor({**os.environ, "PATH": str(empty)})
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["gpus"] == [] and report["problems"]


def test_cli_doctor_text(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lora_mcp", "doctor"],
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "GPUs:" in proc.stdout and "Problems:" in proc.stdout
    assert "LORA_MCP_AI_TOOLKIT_DIR" in proc.stdout
