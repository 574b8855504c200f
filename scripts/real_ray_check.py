"""The real-trainer check (scripts/real_trainer_check.py) with the Ray executor: AI-Toolkit runs as a Ray job.

Not run in CI (it needs an AI-Toolkit checkout, its venv and a model). It starts a one-node Ray head on 127.0.0.1
(CPU only, stopped at the end) unless LORA_MCP_RAY_ADDRESS names a cluster already, then drives config -> start ->
wait (progress) -> cancel -> resume -> succeed through lora-mcp's MCP tools, with LORA_MCP_EXECUTOR=ray:

    LORA_MCP_AI_TOOLKIT_DIR=/work/aitk/ai-toolkit LORA_MCP_AI_TOOLKIT_PYTHON=/work/aitk/venv/bin/python \
    HF_HUB_OFFLINE=1 python scripts/real_ray_check.py WORKDIR DATASET_DIR MODEL_DIR
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))
from real_trainer_check import main as real_trainer_check

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_head() -> tuple[str, Path]:
    """A CPU-only Ray head on loopback; returns its dashboard address and its temp dir."""
    temp = Path(tempfile.mkdtemp(prefix="lmray-", dir="/tmp"))
    dashboard = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_MCP_")}
    subprocess.run(
        [
            str(RAY), "start", "--head", "--num-cpus=2", "--num-gpus=0", "--node-ip-address=127.0.0.1",
            f"--port={free_port()}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
            f"--temp-dir={temp}", "--disable-usage-stats",
        ],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return f"http://127.0.0.1:{dashboard}", temp


def main() -> None:
    work, dataset, model = (Path(a).resolve() for a in sys.argv[1:4])
    own_head = not os.environ.get("LORA_MCP_RAY_ADDRESS")
    temp = None
    if own_head:
        t0 = time.monotonic()
        address, temp = start_head()
        os.environ["LORA_MCP_RAY_ADDRESS"] = address
        os.environ.setdefault("LORA_MCP_RAY_GPUS_PER_JOB", "0")
        print(f"ray head at {address} in {time.monotonic() - t0:.1f}s")
    os.environ["LORA_MCP_EXECUTOR"] = "ray"
    try:
        t0 = time.monotonic()
        anyio.run(real_trainer_check, work, dataset, model)
        print(f"whole check: {time.monotonic() - t0:.1f}s")
        state = work / "state" / "jobs"
        for job_dir in sorted(state.iterdir()):
            marker = job_dir / "executor.json"
            print(job_dir.name, "executor.json:", marker.read_text() if marker.exists() else "(none: local)")
    finally:
        if own_head:
            subprocess.run([str(RAY), "stop", "--force"], capture_output=True)
            shutil.rmtree(temp or "", ignore_errors=True)


if __name__ == "__main__":
    main()
