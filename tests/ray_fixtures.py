"""A real Ray head on 127.0.0.1 for the Ray executor tests: CPU only, one per test session, stopped at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_transports import free_port

RAY = Path(sys.executable).with_name("ray")


def wait_for_jobs_api(address: str, timeout: float = 60) -> None:
    """The dashboard answers the Jobs API a moment after `ray start` returns."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="session")
def ray_head() -> Iterator[str]:
    """`ray start --head` on free loopback ports; yields the dashboard address (what LORA_MCP_RAY_ADDRESS takes)."""
    pytest.importorskip("ray.job_submission", reason="the Ray tests need lora-mcp[ray]")
    if not RAY.exists():
        pytest.skip(f"no ray command beside {sys.executable}")
    temp = Path(tempfile.mkdtemp(prefix="lmray-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORA_MCP_", "FAKE_AITK_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    dashboard = free_port()
    command = [
        str(RAY), "start", "--head", "--num-cpus=2", "--num-gpus=0", "--node-ip-address=127.0.0.1",
        f"--port={free_port()}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
        f"--temp-dir={temp}", "--disable-usage-stats",
    ]  # fmt: skip
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        pytest.fail(f"ray start failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
    address = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_jobs_api(address)
        yield address
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def use_ray(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """Settings for the Ray executor on the test head: no GPUs asked for, quick polls."""
    monkeypatch.setenv("LORA_MCP_EXECUTOR", "ray")
    monkeypatch.setenv("LORA_MCP_RAY_ADDRESS", address)
    monkeypatch.setenv("LORA_MCP_RAY_GPUS_PER_JOB", "0")
    monkeypatch.setenv("LORA_MCP_RAY_POLL_INTERVAL", "0.2")
