"""The fake AI-Toolkit, run as a real child process the way the job manager runs the real one, read by the parser."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors import safe_open

from lora_mcp.jobs.models import Phase
from lora_mcp.training.logparse import AitkLogParser

FAKE = Path(__file__).resolve().parent / "fake_aitk"
CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aitk_progress_bar_capture.txt"
SAMPLE_NAME = re.compile(r"^\d{13}__(\d{9})_(\d+)\.jpg$")


@dataclass
class Run:
    returncode: int
    output: str
    parser: AitkLogParser


@pytest.fixture
def dataset(tmp_path: Path, shared_images: Path) -> Path:
    """Three real images and captions (the trainer writes caches into this folder, so it is a copy)."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    for name in ("horse.png", "camera.png", "chelsea.png"):
        shutil.copy(shared_images / name, folder / name)
        (folder / name).with_suffix(".txt").write_text(f"a photo of [trigger], {name[:-4]}")
    return folder


def write_config(tmp_path: Path, dataset: Path, *, name: str = "fk", steps: int = 6, **changes: Any) -> Path:
    """An AI-Toolkit YAML like the ones lora-mcp generates, small."""
    process: dict[str, Any] = {
        "type": "diffusion_trainer",
        "training_folder": str(tmp_path / "output"),
        "trigger_word": "sks",
        "network": {"type": "lora", "linear": 4, "linear_alpha": 4},
        "save": {"dtype": "float16", "save_every": 2, "max_step_saves_to_keep": 2},
        "datasets": [{"folder_path": str(dataset), "caption_ext": "txt", "cache_latents_to_disk": True}],
        "train": {"batch_size": 1, "steps": steps, "lr": 1e-4, "optimizer": "adamw8bit"},
        "model": {"name_or_path": "Tongyi-MAI/Z-Image-Turbo", "arch": "zimage", "quantize": True},
        "sample": {
            "sample_every": 3,
            "width": 256,
            "height": 192,
            "samples": [{"prompt": "[trigger]"}, {"prompt": "x"}],
        },
    }
    for key, value in changes.items():
        if value is None:
            process.pop(key)
        else:
            process[key] = {**process[key], **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yaml"
    document = {"job": "extension", "config": {"name": name, "process": [process]}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def fake_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_AITK_")}
    return {**env, "PYTHONUNBUFFERED": "1", "SEED": "7", "FAKE_AITK_STEP_DELAY": "0", **extra}


def start(config: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start the fake like the job manager starts AI-Toolkit: absolute config, cwd = its folder, output merged."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "run.py", str(config)],
            cwd=FAKE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=fake_env(**env),
            # a parent started in the background may ignore SIGINT; the child must not inherit that
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def parsed(config: Path, output: str) -> AitkLogParser:
    process = yaml.safe_load(config.read_text())["config"]
    parser = AitkLogParser(process["name"], process["process"][0]["train"]["steps"])
    for i in range(0, len(output), 777):  # arbitrary chunks, as a pipe delivers them
        parser.feed(output[i : i + 777])
    parser.close()
    return parser


def run(config: Path, **env: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "run.py", str(config)],
        cwd=FAKE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=fake_env(**env),
        timeout=60,
    )
    output = proc.stdout.decode("utf-8")
    return Run(proc.returncode, output, parsed(config, output))


def wait_for_step(log: Path, config: Path, step: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if parsed(config, log.read_bytes().decode("utf-8", "replace")).progress.step >= step:
            return
        time.sleep(0.05)
    pytest.fail(f"the fake never reached step {step}:\n{log.read_text(errors='replace')[-2000:]}")


def lora_contents(path: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """Metadata and tensor bytes (the file bytes vary: safetensors writes its metadata map in hash order)."""
    with safe_open(str(path), "np") as f:
        return dict(f.metadata() or {}), {key: f.get_tensor(key).tobytes() for key in f.keys()}  # noqa: SIM118


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "np") as f:
        return dict(f.metadata() or {})


# ---- a normal run ----------------------------------------------------------------------------------------------


def test_a_run_prints_progress_and_writes_real_outputs(tmp_path: Path, dataset: Path) -> None:
    config = write_config(tmp_path, dataset)
    result = run(config)
    assert result.returncode == 0, result.output[-3000:]
    progress = result.parser.progress
    assert (progress.step, progress.total_steps, progress.phase) == (6, 6, Phase.DONE)
    assert progress.loss is not None and progress.learning_rate == pytest.approx(1e-4)
    out = tmp_path / "output" / "fk"
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "fk.safetensors",
        "fk_000000002.safetensors",
        "fk_000000004.safetensors",
    ]
    saved = ["fk_000000002.safetensors", "fk_000000004.safetensors", "fk.safetensors"]
    assert progress.checkpoints_saved == [str(out / name) for name in saved]
    assert "Removing old save: " not in result.output  # 2 step saves, 2 kept
    meta = metadata(out / "fk.safetensors")
    assert json.loads(meta["training_info"])["step"] == 6
    assert (meta["ss_output_name"], meta["ss_base_model_version"], meta["format"]) == ("fk", "zimage", "pt")
    with safe_open(str(out / "fk.safetensors"), "np") as f:
        keys = list(f.keys())
        assert all(k.startswith("diffusion_model.layers.") for k in keys) and len(keys) == 16
        assert f.get_tensor("diffusion_model.layers.0.attention.to_q.lora_A.weight").shape == (4, 64)
    assert json.loads(metadata(out / "fk_000000004.safetensors")["training_info"])["step"] == 4
    samples = sorted(SAMPLE_NAME.match(p.name).groups() for p in (out / "samples").iterdir())  # type: ignore[union-attr]
    assert samples == [(f"{s:09d}", str(i)) for s in (0, 3, 6) for i in (0, 1)]
    assert (out / "optimizer.pt").stat().st_size > 0 and (out / "config.yaml").is_file()
    assert (dataset / ".aitk_size.json").is_file() and len(list((dataset / "_latent_cache").iterdir())) == 3
    assert result.parser.classify_failure(0, final_lora_exists=True, cancel_requested=False) is None


def test_output_follows_ai_toolkit_order(tmp_path: Path, dataset: Path) -> None:
    result = run(write_config(tmp_path, dataset, name="order", steps=4))
    markers = [
        "Running 1 job",
        '    "type": "diffusion_trainer",\n    "training_folder": ',
        "# Running job: order",
        "Running  1 process",
        "Loading ZImage model",
        "Quantizing Transformer",
        "Model Loaded",
        "Dataset: ",
        "  -  Found 3 images",
        "Caching latents for ",
        "\rCaching latents to disk: 100%|██████████| 3/3",
        "Generating baseline samples before training",
        "\rGenerating Samples:",
        "\rorder:   0%|          | 0/4 [00:00<?, ?it/s]",
        "\rorder:   0%|          | 0/4 [00:00<?, ?it/s, lr: 1.0e-04 loss: ",
        "]\nSaving at step 2\nSaved checkpoint to ",
        "\rorder: 100%|██████████| 4/4 [",
        "]\nSaved checkpoint to " + str(tmp_path / "output" / "order" / "order.safetensors"),
    ]
    positions = [result.output.find(marker) for marker in markers]
    assert -1 not in positions, [m for m, p in zip(markers, positions, strict=True) if p == -1]
    assert positions == sorted(positions)


def test_the_bar_writes_the_capture_bytes() -> None:
    if not CAPTURE.is_file():
        pytest.fail(f"the tqdm capture is missing at {CAPTURE}: CI must lay ../shared beside the checkout")
    segments = CAPTURE.read_bytes().decode("utf-8").split("\r")
    spec = importlib.util.spec_from_file_location("fake_bar", FAKE / "fake_bar.py")
    assert spec and spec.loader
    fake_bar = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake_bar)
    written: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            written.append(text)

        def flush(self) -> None:
            pass

    bar = fake_bar.Bar(20, "my_zimage_lora", initial=5, seconds_per_it=1 / 6.65, stream=Sink())
    bar.set_postfix_str("lr: 1.0e-04 loss: 4.123e-01")
    bar.update()
    assert "".join(written).split("\r")[1:] == segments[1:4]


def test_slow_steps_print_seconds_per_iteration(tmp_path: Path, dataset: Path) -> None:
    result = run(write_config(tmp_path, dataset, steps=2, sample={"sample_every": 100}), FAKE_AITK_STEP_DELAY="1.25")
    assert " 1.25s/it, lr: " in result.output
    assert result.parser.progress.it_per_second == pytest.approx(0.8)


def test_same_seed_same_bytes(tmp_path: Path, dataset: Path) -> None:
    config = write_config(tmp_path, dataset, steps=3)
    final = tmp_path / "output" / "fk" / "fk.safetensors"
    first = run(config)
    lora = lora_contents(final)
    shutil.rmtree(tmp_path / "output")
    second = run(config)
    assert first.output == second.output
    assert lora == lora_contents(final)


def test_rerun_resumes_from_the_newest_checkpoint(tmp_path: Path, dataset: Path) -> None:
    assert run(write_config(tmp_path, dataset, steps=4)).returncode == 0
    result = run(write_config(tmp_path, dataset, steps=8, save={"max_step_saves_to_keep": 1}))
    assert result.returncode == 0
    final = tmp_path / "output" / "fk" / "fk.safetensors"
    assert f"#### IMPORTANT RESUMING FROM {final} ####\n" in result.output
    assert "Found step 4 in metadata, starting from there\n" in result.output
    assert "Generating baseline samples" not in result.output
    progress = result.parser.progress
    assert (progress.resumed_from_step, progress.step, progress.total_steps) == (4, 8, 8)
    assert json.loads(metadata(final)["training_info"])["step"] == 8
    assert f"Removing old save: {final.parent / 'fk_000000002.safetensors'}\n" in result.output


# ---- stopping --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail", ["", "hang"])
def test_sigint_stops_without_saving(tmp_path: Path, dataset: Path, fail: str) -> None:
    config = write_config(tmp_path, dataset, steps=500, save={"save_every": 1000})
    log = tmp_path / "run.log"
    proc = start(config, log, FAKE_AITK_STEP_DELAY="0.02", FAKE_AITK_FAIL=fail, FAKE_AITK_FAIL_AT_STEP="3")
    try:
        wait_for_step(log, config, 3)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    parser = parsed(config, log.read_bytes().decode("utf-8"))
    assert parser.stopped and "Job stopped" in parser.tail(5)
    assert not (tmp_path / "output" / "fk" / "fk.safetensors").exists()
    assert parser.classify_failure(0, final_lora_exists=False, cancel_requested=True) is None
    error = parser.classify_failure(0, final_lora_exists=False, cancel_requested=False)
    assert error is not None and error.code == "killed"


def test_sigterm_kills_at_once(tmp_path: Path, dataset: Path) -> None:
    config = write_config(tmp_path, dataset, steps=50)
    log = tmp_path / "run.log"
    proc = start(config, log, FAKE_AITK_FAIL="hang", FAKE_AITK_FAIL_AT_STEP="2")
    try:
        wait_for_step(log, config, 2)
        proc.terminate()
        assert proc.wait(timeout=15) == -signal.SIGTERM
    finally:
        proc.kill()
    parser = parsed(config, log.read_bytes().decode("utf-8"))
    assert not parser.stopped
    error = parser.classify_failure(-signal.SIGTERM, final_lora_exists=False, cancel_requested=False)
    assert error is not None and error.code == "killed"


# ---- failures --------------------------------------------------------------------------------------------------

FAILURES = [
    ("oom_load", {}, "oom", "while loading"),
    ("oom_steps", {}, "oom", "during training"),
    ("model_not_found", {}, "model_not_found", "Tongyi-MAI/Z-Image-Turbo is not a local folder"),
    ("model_not_found", {"model": {"name_or_path": "/models/missing"}}, "model_not_found", "/models/missing"),
    ("gated", {"model": {"name_or_path": "Tongyi-MAI/Z-Image"}}, "gated_model", "Access to model Tongyi-MAI/Z-Image"),
    ("missing_dep", {}, "missing_dependency", "No module named 'torchaudio'"),
    ("config", {}, "config_error", "ValueError: Cannot use both"),
    ("disk_full", {}, "disk_full", "No space left on device"),
    ("crash", {}, "trainer_error", "illegal memory access"),
    ("", {"training_folder": None}, "config_error", "TypeError: expected str, bytes or os.PathLike"),
]


@pytest.mark.parametrize(("fail", "changes", "code", "quoted"), FAILURES, ids=[f"{f[0]}-{f[2]}" for f in FAILURES])
def test_failure_modes_are_classified(
    tmp_path: Path, dataset: Path, fail: str, changes: dict[str, Any], code: str, quoted: str
) -> None:
    config = write_config(tmp_path, dataset, **changes)
    result = run(config, FAKE_AITK_FAIL=fail, FAKE_AITK_FAIL_AT_STEP="2")
    assert result.returncode == 1, result.output[-2000:]
    assert "Traceback (most recent call last):" in result.output
    if fail != "missing_dep":  # an import-time failure dies before AI-Toolkit's handler exists
        assert "Error running job: " in result.output and " - 1 failure\n" in result.output
    error = result.parser.classify_failure(1, final_lora_exists=False, cancel_requested=False)
    assert error is not None
    assert (error.code, quoted in error.message) == (code, True), error.message
