"""Drive the REAL AI-Toolkit through lora-mcp's MCP tools: config -> start -> cancel -> resume -> succeed.

Not run in CI (it needs an AI-Toolkit checkout, its venv and a model). On a CPU box, a tiny random Z-Image works:

    LORA_MCP_AI_TOOLKIT_DIR=/path/ai-toolkit LORA_MCP_AI_TOOLKIT_PYTHON=/path/venv/bin/python HF_HUB_OFFLINE=1 \
    python scripts/real_trainer_check.py WORKDIR DATASET_DIR MODEL_DIR

WORKDIR becomes the state dir and the root; the dataset and model are copied into it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import anyio
from mcp import Client


async def main(work: Path, dataset: Path, model: Path) -> None:
    root = work / "root"
    os.environ.update(LORA_MCP_HOME=str(work / "state"), LORA_MCP_ROOTS=str(root))
    if not (root / "dataset").exists():
        shutil.copytree(dataset, root / "dataset", ignore=shutil.ignore_patterns("_*", ".*"))
        shutil.copytree(model, root / "model")
    from lora_mcp.server.app import build_server

    async with Client(build_server()) as client:

        async def call(tool: str, **args: object) -> dict:
            result = await client.call_tool(tool, args)
            if result.is_error:
                raise SystemExit(f"{tool} failed: {result.content[0].text}")  # type: ignore[union-attr]
            return result.structured_content or {}

        generated = await call(
            "generate_training_config",
            name=f"real_{int(time.time())}",
            dataset_folder=str(root / "dataset"),
            trigger_word="sks",
            variant="zimage",
            model_path=str(root / "model"),
            steps=100,
            resolutions=[128],
            save_every=20,
            sample_every=50,
            vram_gb=80,
        )
        print("config:", generated["config_path"])
        job = await call("start_training", config_path=generated["config_path"])
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        t0 = time.monotonic()
        while True:
            status = (
                await client.call_tool(
                    "wait_for_job", {"job_id": job["job_id"], "timeout_seconds": 2}, progress_callback=on_progress
                )
            ).structured_content or {}
            if status["step"] >= 30 or status["state"] != "running":
                break
        print(f"step {status['step']} after {time.monotonic() - t0:.1f}s; progress notifications: {len(seen)}")
        t1 = time.monotonic()
        await call("cancel_job", job_id=job["job_id"])
        while (status := await call("wait_for_job", job_id=job["job_id"], timeout_seconds=10))["state"] == "running":
            pass
        print(
            f"cancel -> {status['state']} in {time.monotonic() - t1:.1f}s, checkpoints "
            f"{[Path(c).name for c in status['outputs']['checkpoints']]}"
        )
        resumed = await call("resume_training", job_id=job["job_id"])
        while (status := await call("wait_for_job", job_id=resumed["job_id"], timeout_seconds=30))["state"] in (
            "queued",
            "running",
        ):
            print(f"  resumed job at step {status['step']}/{status['total_steps']} ({status['phase']})")
        print(f"resume -> {status['state']}, step {status['step']}, lora {status['outputs']['lora_path']}")
        print("metadata training_info:", status["outputs"]["lora_metadata"].get("training_info"))
        logs = await call("job_logs", job_id=resumed["job_id"], tail=400)
        print("resume lines:", [line for line in logs["lines"] if "RESUMING" in line or "Found step" in line])
        images = await client.call_tool("get_job", {"job_id": resumed["job_id"], "include_images": True})
        print("images returned:", sum(1 for c in images.content if c.type == "image"))


if __name__ == "__main__":
    anyio.run(main, *(Path(a).resolve() for a in sys.argv[1:4]))
