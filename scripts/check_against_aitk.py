"""Check lora-mcp's generated configs against a real AI-Toolkit checkout (not run in CI: it needs AI-Toolkit's venv).

Three checks, each printed as it runs:
1. allow-list drift: re-derive the keys AI-Toolkit's config classes read (`kwargs.get` in toolkit/config_modules.py)
   and compare them with lora_mcp.training.aitk_keys.ALLOWED_KEYS;
2. config classes: load every tests/golden/*.yaml with AI-Toolkit's own loader (toolkit.config.get_config) and build
   ModelConfig, TrainConfig, NetworkConfig, SaveConfig, SampleConfig and DatasetConfig from it, then
   validate_configs, exactly as BaseSDTrainProcess does;
3. real runs: generate configs with generate_training_config for a tiny random Z-Image (see
   ../shared/tools/make_tiny_zimage.py) and run `python run.py CONFIG` in the checkout; each must exit 0 and leave
   <training_folder>/<name>/<name>.safetensors.

Usage (from the repository root):
  .venv/bin/python scripts/check_against_aitk.py --aitk /work/aitk --aitk-python /work/aitk-venv/bin/python \
      --tiny-model /work/tiny-zimage [--adapter LORA.safetensors] [--skip-runs]
The tiny model has no hub training adapter: pass any Z-Image LoRA file (keys diffusion_model.layers.0....) as
--adapter to train the zimage-turbo variant. Layer offloading (the 8 GB tier) needs CUDA and is not run here.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lora_mcp.training.aitk_keys import ALLOWED_KEYS  # noqa: E402

CLASS_OF_SECTION = {
    "network": "NetworkConfig",
    "save": "SaveConfig",
    "datasets[]": "DatasetConfig",
    "train": "TrainConfig",
    "model": "ModelConfig",
    "sample": "SampleConfig",
    "samples[]": "SampleItem",
    "logging": "LoggingConfig",
}

LOADER = r"""
import json, sys
from toolkit.config import get_config
from toolkit.config_modules import (DatasetConfig, ModelConfig, NetworkConfig, SampleConfig, SaveConfig, TrainConfig,
                                    preprocess_dataset_raw_config, validate_configs)
for path in sys.argv[1:]:
    job = get_config(path)
    p = job["config"]["process"][0]
    train = TrainConfig(**p["train"])
    model = ModelConfig(**dict(p["model"], dtype=train.dtype))
    network = NetworkConfig(**p["network"])
    save = SaveConfig(**p["save"])
    sample = SampleConfig(**p["sample"])
    datasets = []
    for raw in preprocess_dataset_raw_config(p["datasets"]):
        if train.cache_text_embeddings:
            raw["cache_text_embeddings"] = True
        datasets.append(DatasetConfig(**raw))
    validate_configs(train, model, save, datasets)
    print(json.dumps({"file": path.rsplit("/", 1)[-1], "arch": model.arch, "quantize": model.quantize,
        "qtype": model.qtype, "low_vram": model.low_vram, "layer_offloading": model.layer_offloading,
        "assistant_lora": model.assistant_lora_path, "extras": model.extras_name_or_path, "rank": network.linear,
        "alpha": network.linear_alpha, "lr": train.lr, "scheduler": train.noise_scheduler,
        "timesteps": train.timestep_type, "dtype": train.dtype, "save_dtype": save.dtype, "sampler": sample.sampler,
        "guidance": sample.guidance_scale, "sample_steps": sample.sample_steps, "prompts": len(sample.prompts),
        "resolutions": [d.resolution for d in datasets], "te_cache": [d.cache_text_embeddings for d in datasets]}))
"""


def read_keys(source: str) -> dict[str, set[str]]:
    """Per class in `source`: the string keys passed to kwargs.get."""
    keys: dict[str, set[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            found = keys.setdefault(node.name, set())
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "get"
                    and isinstance(call.func.value, ast.Name)
                    and call.func.value.id == "kwargs"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                ):
                    found.add(str(call.args[0].value))
    return keys


def check_drift(aitk: Path) -> bool:
    """Compare the allow-list with the checkout's config classes."""
    keys = read_keys((aitk / "toolkit" / "config_modules.py").read_text(encoding="utf-8"))
    ok = True
    for section, cls in CLASS_OF_SECTION.items():
        added, removed = keys[cls] - ALLOWED_KEYS[section], ALLOWED_KEYS[section] - keys[cls]
        if added or removed:
            ok = False
            print(f"  drift in {section} ({cls}): new {sorted(added)}, gone {sorted(removed)}")
    print(f"[1] allow-list vs {aitk}: {'no drift' if ok else 'DRIFT'}")
    return ok


def check_goldens(aitk: Path, python: Path) -> bool:
    """Load every golden YAML into AI-Toolkit's config classes."""
    goldens = sorted(str(p) for p in (REPO / "tests" / "golden").glob("*.yaml"))
    proc = subprocess.run([str(python), "-c", LOADER, *goldens], cwd=aitk, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            print("  " + line)
    ok = proc.returncode == 0 and proc.stdout.count('"file"') == len(goldens)
    if not ok:
        print(proc.stderr[-4000:])
    print(f"[2] {len(goldens)} golden configs through AI-Toolkit's config classes: {'accepted' if ok else 'FAILED'}")
    return ok


def make_dataset(folder: Path, trigger: str) -> None:
    """Six shared images with captions that hold the trigger word."""
    images = REPO.parent / "shared" / "data" / "images"
    folder.mkdir(parents=True)
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "camera.png"):
        shutil.copy(images / name, folder / name)
        (folder / name).with_suffix(".txt").write_text(f"a photo of {trigger}, {name.split('.')[0]}", encoding="utf-8")


def run_one(aitk: Path, python: Path, fields: dict[str, object], work: Path) -> bool:
    """Generate one config with lora-mcp, run it with AI-Toolkit's run.py, check rc and the final LoRA."""
    from lora_mcp.settings import get_settings
    from lora_mcp.training.config import parse_config
    from lora_mcp.training.generate import generate_training_config

    result = generate_training_config(parse_config(fields), get_settings())
    name = str(fields["name"])
    log = work / f"{name}.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run(
            [str(python), "run.py", result.config_path], cwd=aitk, stdout=out, stderr=subprocess.STDOUT, env=env
        ).returncode
    lora = Path(result.expected_lora_path)
    ok = rc == 0 and lora.is_file()
    detail = f"{lora.stat().st_size} bytes" if lora.is_file() else "missing"
    print(f"  {name}: tier {result.vram_tier}, rc={rc}, {time.monotonic() - start:.0f} s, LoRA {detail}")
    if ok:
        print(f"    {lora_summary(python, lora)}")
    else:
        print("    " + "\n    ".join(log.read_text(errors="replace").splitlines()[-25:]))
    return ok


def lora_summary(python: Path, lora: Path) -> str:
    """Key count and training_info of a LoRA file, read in AI-Toolkit's venv (it has safetensors)."""
    code = (
        "import sys, json; from safetensors import safe_open\n"
        "f = safe_open(sys.argv[1], 'pt'); keys = list(f.keys())\n"
        "print(json.dumps({'keys': len(keys), 'first': keys[0], "
        "'training_info': (f.metadata() or {}).get('training_info')}))"
    )
    return subprocess.run([str(python), "-c", code, str(lora)], capture_output=True, text=True).stdout.strip()


def check_runs(aitk: Path, python: Path, tiny: Path, adapter: Path | None) -> bool:
    """Real trainings of the tiny model from generated configs."""
    work = Path(tempfile.mkdtemp(prefix="lora-mcp-aitk-"))
    root = work / "root"
    root.mkdir()
    make_dataset(root / "dataset", "ohwx")
    roots = [str(root), str(tiny.resolve())]
    if adapter is not None:
        shutil.copy(adapter, root / "adapter.safetensors")
    os.environ["LORA_MCP_ROOTS"] = os.pathsep.join(roots)
    os.environ["LORA_MCP_HOME"] = str(work / "state")
    common = {"dataset_folder": str(root / "dataset"), "trigger_word": "ohwx", "model_path": str(tiny)}
    common |= {"resolutions": [128], "steps": 100, "save_every": 50, "sample_every": 50, "rank": 4}
    runs: list[dict[str, object]] = [
        {"name": "base_plenty", "variant": "zimage", "vram_gb": 80},  # bf16, no quantization
        {"name": "deturbo_24gb", "variant": "zimage-deturbo", "vram_gb": 24},  # qfloat8 + low_vram
        {"name": "base_12gb", "variant": "zimage", "vram_gb": 12},  # + cached text embeddings
    ]
    if adapter is not None:
        adapter_path = str(root / "adapter.safetensors")
        runs.insert(0, {"name": "turbo_plenty", "variant": "zimage-turbo", "vram_gb": 80, "adapter_path": adapter_path})
    print(f"[3] real runs in {work} (cwd {aitk}):")
    results = [run_one(aitk, python, common | run, work) for run in runs]
    ok = all(results)
    print(f"[3] {sum(results)}/{len(results)} runs exited 0 with their final LoRA: {'OK' if ok else 'FAILED'}")
    return ok


def main() -> int:
    """Run the three checks; exit 1 if any fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aitk", type=Path, default=Path("/work/aitk"))
    parser.add_argument("--aitk-python", type=Path, default=Path("/work/aitk-venv/bin/python"))
    parser.add_argument("--tiny-model", type=Path, default=Path("/work/tiny-zimage"))
    parser.add_argument("--adapter", type=Path, help="A Z-Image LoRA file to stand in for the Turbo training adapter.")
    parser.add_argument("--skip-runs", action="store_true")
    args = parser.parse_args()
    ok = check_drift(args.aitk)
    ok = check_goldens(args.aitk, args.aitk_python) and ok
    if not args.skip_runs:
        ok = check_runs(args.aitk, args.aitk_python, args.tiny_model, args.adapter) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
