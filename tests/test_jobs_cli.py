"""`lora-mcp train` and `lora-mcp jobs ...` as real subprocesses against the fake AI-Toolkit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jobs_fixtures import group_gone, process_gone, use_fake_aitk, wait_until, write_config

from lora_mcp.jobs.store import JobStore

SCRIPT = Path(sys.executable).with_name("lora-mcp")


def lora_mcp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the console script (the environment carries the monkeypatched LORA_MCP_* settings)."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "lora_mcp"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, check=False)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """stdout must be exactly one JSON document: progress and notes go to stderr."""
    assert result.stdout.strip(), result.stderr[-2000:]
    return json.loads(result.stdout)


def test_train_wait_json_then_list_show_logs_wait(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.01)
    config = write_config(settings, shared_images, steps=100)

    result = lora_mcp("train", str(config), "--wait", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    status = as_json(result)
    assert status["state"] == "succeeded" and status["step"] == 100, status
    assert status["outputs"]["lora_path"].endswith("lora_a.safetensors")
    job_id = status["job_id"]
    # The progress bar and the "queued" note went to stderr, one line per change (stderr is not a terminal).
    assert f"queued {job_id}" in result.stderr
    bars = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(bars) > 3 and "100/100" in bars[-1] and "#" * 30 in bars[-1], bars[-3:]
    assert "[" not in result.stdout.split("{", 1)[0], "nothing but the JSON on stdout"

    listed = as_json(lora_mcp("jobs", "list", "--json"))
    assert [j["job_id"] for j in listed] == [job_id] and listed[0]["state"] == "succeeded"
    assert as_json(lora_mcp("jobs", "list", "--state", "failed", "--json")) == []

    shown = lora_mcp("jobs", "show", job_id, "--json")
    assert shown.returncode == 0 and as_json(shown)["outputs"] == status["outputs"]
    human = lora_mcp("jobs", "show", job_id)
    assert f"{job_id}  train  succeeded" in human.stdout and "lora: " in human.stdout

    logs = lora_mcp("jobs", "logs", job_id, "--tail", "5")
    lines = logs.stdout.splitlines()
    assert logs.returncode == 0 and len(lines) == 5, lines
    assert lines[-1].startswith("Generating Samples: 100%|"), "a repainted bar shows as its last state"
    as_lines = as_json(lora_mcp("jobs", "logs", job_id, "--tail", "5", "--json"))["lines"]
    assert as_lines == lines and not any("\r" in line for line in as_lines)

    waited = lora_mcp("jobs", "wait", job_id, "--json")
    assert waited.returncode == 0 and as_json(waited)["state"] == "succeeded"


def started_job(config: Path) -> str:
    """`lora-mcp train CONFIG --json` without --wait: the job is launched and the command returns."""
    result = lora_mcp("train", str(config), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    status = as_json(result)
    assert status["state"] == "running", status
    return str(status["job_id"])


def test_jobs_cancel_wait_stops_a_running_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.2)
    config = write_config(settings, shared_images, steps=400)
    job_id = started_job(config)
    # Nobody watches the job now: its log shows that it trains all the same.
    wait_until(lambda: "lora_a:" in lora_mcp("jobs", "logs", job_id, "--tail", "3").stdout, what="training")

    result = lora_mcp("jobs", "cancel", job_id, "--wait", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    status = as_json(result)
    assert status["state"] == "cancelled" and status["cancel_requested"], status
    job = JobStore(settings.db_path).get(job_id)
    assert job is not None and job.exit_code == 0
    assert "Job stopped" in lora_mcp("jobs", "logs", job_id, "--tail", "20").stdout
    wait_until(lambda: process_gone(job.supervisor_pid) and group_gone(job.child_pid), 5, "no process left")


def test_jobs_wait_follows_to_the_end(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch, step_delay=0.02)
    config = write_config(settings, shared_images, steps=100)
    job_id = started_job(config)
    result = lora_mcp("jobs", "wait", job_id, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert as_json(result)["state"] == "succeeded"
    assert any("100/100" in line for line in result.stderr.splitlines())


def test_train_wait_exits_1_on_a_failed_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch)
    monkeypatch.setenv("FAKE_AITK_FAIL", "oom_load")
    config = write_config(settings, shared_images, steps=100)
    result = lora_mcp("train", str(config), "--wait", "--json")
    assert result.returncode == 1
    status = as_json(result)
    assert status["state"] == "failed" and status["error"]["code"] == "oom" and status["error"]["hint"]
    assert lora_mcp("jobs", "wait", status["job_id"]).returncode == 1


def test_train_preflight_refusal_is_exit_2_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fake_aitk(monkeypatch)
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("config: {}\n")
    result = lora_mcp("train", str(outside), "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and str(outside) in result.stderr
    assert as_json(lora_mcp("jobs", "list", "--json")) == []
