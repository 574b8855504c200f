"""Check the trust boundary against the REAL AI-Toolkit: what the trainer sees, where it writes, what it runs.

Not run in CI (it needs an AI-Toolkit checkout, its venv and a model). On a CPU box, a tiny random Z-Image works:

    LORA_MCP_AI_TOOLKIT_DIR=/path/ai-toolkit LORA_MCP_AI_TOOLKIT_PYTHON=/path/venv/bin/python HF_HUB_OFFLINE=1 \
    python scripts/real_trust_check.py WORKDIR DATASET_DIR MODEL_DIR

Through lora-mcp's MCP tools, in memory:
1. a generated config with `training_folder: <root>/runs/[name]` trains; the real trainer's output lands where the
   plan said, and the environment of the running trainer (read from /proc/<pid>/environ) holds HF_TOKEN but no
   LORA_MCP_* variable and no OPENAI_API_KEY;
2. hostile configs (name escapes, ${VAR}, relative folders, push_to_hub) are refused and nothing appears outside;
3. resume_training of the succeeded job is refused; a config with the same name and more steps continues from the
   saved step (what the refusal's hint promises).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import yaml
from mcp import Client

SECRETS = {
    "LORA_MCP_HTTP_TOKEN": "tok-real-check-0123456789abcdef",
    "LORA_MCP_OPENAI_API_KEY": "sk-real-check-abcdef0123456789",
    "OPENAI_API_KEY": "sk-plain-real-check-99999999",
    "HF_TOKEN": "hf_realcheck0123456789abcdefgh",
}


def child_environ(job_dir: Path, timeout: float = 120) -> dict[str, str]:
    """The environment of the job's running trainer, from /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int((job_dir / "child.pid").read_text())
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        except (OSError, ValueError):
            time.sleep(0.2)
    raise SystemExit("the trainer never started")


async def main(work: Path, dataset: Path, model: Path) -> None:
    root = work / "root"
    os.environ.update(LORA_MCP_HOME=str(work / "state"), LORA_MCP_ROOTS=str(root), **SECRETS)
    if not (root / "dataset").exists():
        shutil.copytree(dataset, root / "dataset", ignore=shutil.ignore_patterns("_*", ".*"))
        shutil.copytree(model, root / "model")
    from lora_mcp.server.app import build_server

    async with Client(build_server()) as client:

        async def call(tool: str, expect_error: bool = False, **args: object) -> Any:
            result = await client.call_tool(tool, args)
            if result.is_error != expect_error:
                raise SystemExit(f"{tool}: unexpected {'error' if result.is_error else 'success'}: {result.content}")
            return result.content[0].text if result.is_error else result.structured_content  # type: ignore[union-attr]

        async def wait(job_id: str) -> dict[str, Any]:
            while True:
                status = await call("wait_for_job", job_id=job_id, timeout_seconds=30)
                if status["state"] in ("succeeded", "failed", "cancelled"):
                    return dict(status)

        name = f"trust_{int(time.time())}"
        generated = await call(
            "generate_training_config",
            name=name,
            dataset_folder=str(root / "dataset"),
            trigger_word="sks",
            variant="zimage",
            model_path=str(root / "model"),
            steps=100,
            resolutions=[128],
            save_every=50,
            sample_every=1000,
            vram_gb=80,
        )
        config = Path(generated["config_path"])
        data = yaml.safe_load(config.read_text())
        data["config"]["process"][0]["training_folder"] = f"{root}/runs/[name]"
        data["config"]["process"][0]["train"]["steps"] = 30
        placeholder = config.with_name(f"{name}_placeholder.yaml")
        placeholder.write_text(yaml.safe_dump(data, sort_keys=False))

        started = await call("start_training", config_path=str(placeholder))
        job_dir = work / "state" / "jobs" / started["job_id"]
        env = child_environ(job_dir)
        status = await wait(started["job_id"])
        leaked = sorted(k for k in env if k.startswith("LORA_MCP_") or k == "OPENAI_API_KEY")
        print(f"1. job {started['job_id']}: {status['state']}, lora {status['outputs']['lora_path']}")
        print(f"   trainer env: {len(env)} variables, HF_TOKEN passed: {'HF_TOKEN' in env}, leaked: {leaked}")
        expected = root / "runs" / name / name / f"{name}.safetensors"
        print(f"   output where the plan said ({expected}): {expected.is_file()}")
        logs = await call("job_logs", job_id=started["job_id"], tail=5000)
        text = "\n".join(logs["lines"])
        print(f"   any secret value in job_logs: {any(v in text for v in SECRETS.values())}")

        outside = work / "outside"
        attacks = {
            "name ../../outside": ("config", "name", "../../outside/x"),
            "process name": ("process", "name", "../../../outside"),
            "training_folder [name]/..": ("process", "training_folder", "[name]/../../outside"),
            "training_folder ${HOME}": ("process", "training_folder", "${HOME}/x"),
            "relative training_folder": ("process", "training_folder", "output"),
            "prompt ${LORA_MCP_HTTP_TOKEN}": ("prompt", None, "${LORA_MCP_HTTP_TOKEN}"),
            "push_to_hub": ("save", "push_to_hub", True),
        }
        for label, (where, key, value) in attacks.items():
            bad = yaml.safe_load(config.read_text())
            process = bad["config"]["process"][0]
            if where == "config":
                bad["config"][key] = value
            elif where == "process":
                process[key] = value
            elif where == "prompt":
                process["sample"]["samples"][0]["prompt"] = value
            else:
                process[where][key] = value
            path = config.with_name("hostile.yaml")
            path.write_text(yaml.safe_dump(bad, sort_keys=False))
            message = await call("start_training", expect_error=True, config_path=str(path))
            print(f"2. {label}: refused: {message[:150]}")
        print(f"   anything outside the roots: {outside.exists()}")

        refused = await call("resume_training", expect_error=True, job_id=started["job_id"])
        print(f"3. resume of the succeeded job refused: {refused[:120]}")
        data["config"]["process"][0]["train"]["steps"] = 40
        longer = config.with_name(f"{name}_longer.yaml")
        longer.write_text(yaml.safe_dump(data, sort_keys=False))
        again = await call("start_training", config_path=str(longer))
        status = await wait(again["job_id"])
        resumed = [
            line
            for line in (await call("job_logs", job_id=again["job_id"], tail=5000))["lines"]
            if "step" in line.lower() and ("Found" in line or "RESUMING" in line)
        ]
        print(f"   same name, 40 steps: {status['state']} at step {status['step']}; {resumed[:2]}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    anyio.run(main, *(Path(a).resolve() for a in sys.argv[1:]))
