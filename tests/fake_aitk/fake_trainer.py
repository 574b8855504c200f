"""The fake job: reads the YAML like AI-Toolkit, prints its lines, writes its files. See run.py for the knobs."""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import pickle
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import fake_errors
import numpy as np
import yaml
from fake_bar import Bar, run_bar
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SOFTWARE = {"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit", "version": "0.12.26"}
LORA_MODULES = ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0")
FAIL = os.environ.get("FAKE_AITK_FAIL", "")


def load_job(config_file: str, name: str | None) -> FakeTrainer:
    """get_job(): read the YAML, substitute [name], print the process config, build the process (may raise)."""
    path = Path(config_file)
    if not path.exists():
        raise ValueError(f"Could not find config file {config_file}")
    # Like toolkit/config.py: ${VAR} is replaced from the environment over the whole text, before parsing.
    raw = yaml.safe_load(re.sub(r"\$\{([^}]+)\}", env_value, path.read_text(encoding="utf-8")))
    if "job" not in raw:
        raise ValueError("config file must have a job key")
    if "config" not in raw:
        raise ValueError("config file must have a config section")
    if "name" not in raw["config"] and name is None:
        raise ValueError("config file must have a config.name key")
    name = name or raw["config"]["name"]
    raw = json.loads(json.dumps(raw).replace("[name]", name), object_pairs_hook=OrderedDict)
    processes = raw["config"].get("process")
    if not processes:
        raise ValueError('config file is invalid. Missing "config.process" key')
    process = processes[0]
    print(json.dumps(process, indent=4))
    if os.environ.get("FAKE_AITK_PRINT_ENV"):
        for key, value in sorted(os.environ.items()):
            print(f"env {key}={value}")
    # BaseProcess: a process-level name overrides the job's.
    return FakeTrainer(raw, process, process.get("name", raw["config"]["name"]))


def env_value(match: re.Match[str]) -> str:
    """AI-Toolkit's replacement: the variable's value, or an error when it is not set."""
    value = os.environ.get(match.group(1))
    if value is None:
        name = match.group(1)
        raise ValueError(f"Environment variable {name} not set. Please ensure it's defined before proceeding.")
    return value


def validate_configs(train: dict[str, Any]) -> None:
    """The one validate_configs() rule the fake knows, plus FAKE_AITK_FAIL=config."""
    if FAIL == "config" or (train.get("diff_output_preservation") and train.get("blank_prompt_preservation")):
        raise ValueError(
            "Cannot use both differential output preservation and blank prompt preservation at the same time. "
            "Please set one of them to False."
        )


def section(process: dict[str, Any], key: str) -> dict[str, Any]:
    value = process.get(key) or {}
    return dict(value) if isinstance(value, dict) else {}


class FakeTrainer:
    """One diffusion_trainer process."""

    def __init__(self, raw_config: dict[str, Any], process: dict[str, Any], name: str) -> None:
        self.name = name
        self.save_root = os.path.join(process.get("training_folder"), name)  # TypeError when missing, like AI-Toolkit
        train, save, sample = section(process, "train"), section(process, "save"), section(process, "sample")
        network, self.model = section(process, "network"), section(process, "model")
        self.steps = int(train.get("steps", 1000))
        self.lr = float(train.get("lr", 1e-6))
        self.batch_size = int(train.get("batch_size", 1))
        self.save_every = int(save.get("save_every", 1000))
        self.keep = int(save.get("max_step_saves_to_keep", 5))
        self.sample_every = int(sample.get("sample_every", 100))
        self.sample_size = (int(sample.get("width", 512)), int(sample.get("height", 512)))
        samples = sample.get("samples") or [{"prompt": p} for p in sample.get("prompts", [])]
        self.prompts = [str(s.get("prompt", "")) for s in samples]
        self.disable_sampling = bool(train.get("disable_sampling", False))
        self.skip_first_sample = bool(train.get("skip_first_sample", False))
        self.rank = int(network.get("linear") or network.get("rank") or network.get("linear_dim") or 4)
        self.alpha = network.get("linear_alpha", network.get("alpha", 1.0))
        datasets = process.get("datasets") or [{}]
        self.dataset = datasets[0]
        self.trigger = process.get("trigger_word")
        self.perf_every = int(process.get("performance_log_every", 0) or 0)
        self.delay = float(os.environ.get("FAKE_AITK_STEP_DELAY", "0.02"))
        self.fail_at = int(os.environ.get("FAKE_AITK_FAIL_AT_STEP", str(self.steps // 2)))
        self.seed = int(os.environ.get("SEED", "0"))
        self.step_num = self.start_step = self.epoch_num = 0
        self.num_images = 1
        self.bar: Bar | None = None
        validate_configs(train)
        os.makedirs(self.save_root, exist_ok=True)
        with open(os.path.join(self.save_root, "config.yaml"), "w") as f:
            yaml.dump(json.loads(json.dumps(raw_config)), f)

    def run(self) -> None:
        """The whole job, in AI-Toolkit's order."""
        print("")
        print("#############################################")
        print(f"# Running job: {self.name}")
        print("#############################################")
        print("")
        print("")
        print("Running  1 process")
        self.load_model()
        self.create_network()
        self.resume()
        self.load_dataset()
        if self.disable_sampling or self.skip_first_sample:
            print("Skipping first sample due to config setting")
        elif self.step_num <= 1:
            print("Generating baseline samples before training")
            self.sample(self.step_num)
        self.train()
        self.save(None)
        if not self.disable_sampling:
            self.sample(self.step_num)
        print("")

    # ---- set-up ----------------------------------------------------------------------------------------------

    def load_model(self) -> None:
        print("Loading ZImage model")
        print("Loading transformer")
        path = str(self.model.get("name_or_path", ""))
        if FAIL == "model_not_found":
            if path.startswith(("/", ".", "~")):
                raise_chained(*fake_errors.local_missing(path))
            raise_chained(fake_errors.repo_not_found(path), fake_errors.not_a_model(path))
        if FAIL == "gated":
            raise_chained(fake_errors.gated(path), fake_errors.not_a_model(path))
        if FAIL == "oom_load":
            raise fake_errors.OutOfMemoryError(fake_errors.CUDA_OOM)
        if self.model.get("assistant_lora_path"):
            print("Loading assistant LoRA")
            print("Merging in assistant LoRA")
        if self.model.get("quantize"):
            print("Quantizing Transformer")
        if self.model.get("low_vram"):
            print("Moving transformer to CPU")
        print("Text Encoder")
        run_bar(24, "Loading weights", seconds_per_it=0.0001, repaint_on_close=False)
        if self.model.get("quantize_te"):
            print("Quantizing Text Encoder")
        for line in ("Loading VAE", "Making pipe", "Preparing Model", "Model Loaded"):
            print(line)

    def create_network(self) -> None:
        print(f"create LoRA network. base dim (rank): {self.rank}, alpha: {self.alpha}")
        print("neuron dropout: p=None, rank dropout: p=None, module dropout: p=None")
        print("create LoRA for Text Encoder: 0 modules.")
        print(f"create LoRA for U-Net: {2 * len(LORA_MODULES)} modules.")
        print("enable LoRA for U-Net")

    def resume(self) -> None:
        """Continue from the newest `<name>*.safetensors`, as AI-Toolkit does on a re-run."""
        saves = sorted(Path(self.save_root).glob(f"{self.name}*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
        if saves:
            latest = str(saves[-1])
            print(f"#### IMPORTANT RESUMING FROM {latest} ####")
            print(f"Loading from {latest}")
            print("Missing keys: []")
            with safe_open(latest, "np") as f:
                info = json.loads((f.metadata() or {}).get("training_info", "{}"))
            if "step" in info:
                self.step_num = self.start_step = int(info["step"])
                self.epoch_num = int(info.get("epoch", 0))
                print(f"Found step {self.step_num} in metadata, starting from there")
        optimizer = os.path.join(self.save_root, "optimizer.pt")
        if os.path.exists(optimizer):
            print(f"Loading optimizer state from {optimizer}")
            print("Updating optimizer LR from params")

    def load_dataset(self) -> None:
        folder = str(self.dataset.get("folder_path"))
        print(f"Dataset: {folder}")
        print("  -  Preprocessing image dimensions")
        images = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))
        sizes = {}
        for image in images:
            with Image.open(os.path.join(folder, image)) as im:
                sizes[image] = im.size
        run_bar(len(images), seconds_per_it=0.005)
        print(f"  -  Found {len(images)} images")
        self.num_images = max(len(images), 1)
        write_dataset_caches(folder, sizes, bool(self.dataset.get("cache_latents_to_disk")))
        resolution = (self.dataset.get("resolution") or [512])[0]
        buckets: dict[str, int] = {}
        for w, h in sizes.values():
            scale = resolution / math.sqrt(w * h)
            key = f"{max(16, int(w * scale) // 16 * 16)}x{max(16, int(h * scale) // 16 * 16)}"
            buckets[key] = buckets.get(key, 0) + 1
        print(f"Bucket sizes for {folder}:")
        for key, count in buckets.items():
            print(f"{key}: {count} files")
        print(f"{len(buckets)} buckets made")
        print(f"Caching latents for {folder}")
        if self.dataset.get("cache_latents_to_disk"):
            print(" - Saving latents to disk")
        to_disk = bool(self.dataset.get("cache_latents_to_disk"))
        run_bar(len(images), "Caching latents to disk" if to_disk else "Caching latents")

    # ---- training --------------------------------------------------------------------------------------------

    def train(self) -> None:
        self.bar = bar = Bar(self.steps, self.name, initial=self.step_num, seconds_per_it=self.delay)
        atexit.register(self.close_bar)  # tqdm repaints a bar left open when the interpreter exits
        consecutive_oom = 0
        for step in range(self.start_step, self.steps):
            self.step_num = step
            is_save_step = self.save_every and step % self.save_every == 0
            is_sample_step = self.sample_every and step % self.sample_every == 0 and not self.disable_sampling
            self.fail_in_step(step)
            time.sleep(self.delay)
            if FAIL == "oom_steps" and step >= self.fail_at:
                consecutive_oom += 1
                if consecutive_oom > 3:
                    raise RuntimeError("OOM during training step 3 times in a row, aborting training")
                print_oom_skip(consecutive_oom)
            else:
                bar.set_postfix_str(f"lr: {self.lr:.1e} loss: {self.loss(step):.3e}")
            if step != self.start_step:
                if is_save_step:
                    print(f"\nSaving at step {step}")
                    self.save(step)
                if is_sample_step:
                    self.sample(step)
                if self.perf_every and step % self.perf_every == 0:
                    self.print_timers()
            bar.update(step + 1 - bar.n)
            self.step_num = step + 1
            self.epoch_num = (self.step_num - 1) * self.batch_size // self.num_images
        self.close_bar()

    def fail_in_step(self, step: int) -> None:
        if step != self.fail_at:
            return
        if FAIL == "crash":
            raise RuntimeError(fake_errors.CUDA_CRASH)
        if FAIL == "hang":
            while True:  # stuck (a deadlocked dataloader, a wedged GPU); SIGINT still stops it
                time.sleep(3600)

    def loss(self, step: int) -> float:
        rng = np.random.default_rng(self.seed * 100_003 + step)
        return float(0.3 + 0.25 * math.exp(-3 * step / max(self.steps, 1)) + 0.05 * rng.random())

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def print_timers(self) -> None:
        print(f"\nTimer '{self.name} Timer':")
        for timer in ("train_loop", "prepare_latents", "predict_noise", "calculate_loss", "backward", "optimizer_step"):
            print(f" - {self.delay / 6:.4f}s avg - {timer}, num = {self.perf_every}")
        print("")

    # ---- outputs ---------------------------------------------------------------------------------------------

    def save(self, step: int | None) -> None:
        """A step checkpoint (step given) or the final LoRA, then optimizer.pt, then trimming old checkpoints."""
        if FAIL == "disk_full" and (step is None or step >= self.fail_at):
            raise fake_errors.disk_full()
        filename = f"{self.name}.safetensors" if step is None else f"{self.name}_{step:09d}.safetensors"
        path = os.path.join(self.save_root, filename)
        tensors = self.lora_tensors()
        save_file(tensors, path, metadata=self.metadata(tensors))
        print(f"Saved checkpoint to {path}")
        optimizer = os.path.join(self.save_root, "optimizer.pt")
        with open(optimizer, "wb") as f:
            pickle.dump({"state": {}, "param_groups": [{"lr": self.lr, "step": self.step_num}]}, f)
        print(f"Saved optimizer to {optimizer}")
        old = sorted(Path(self.save_root).glob(f"{self.name}_*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
        for item in old[: -self.keep] if self.keep else old:
            print(f"Removing old save: {item}")
            item.unlink()

    def lora_tensors(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed * 7919 + self.step_num)
        tensors = {}
        for layer in range(2):
            for module in LORA_MODULES:
                key = f"diffusion_model.layers.{layer}.{module}"
                tensors[f"{key}.lora_A.weight"] = rng.standard_normal((self.rank, 64)).astype(np.float16)
                tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((64, self.rank)) * 0.01).astype(np.float16)
        return tensors

    def metadata(self, tensors: dict[str, np.ndarray]) -> dict[str, str]:
        """What AI-Toolkit writes: every value a string, nested values as JSON."""
        digest = hashlib.sha256(b"".join(t.tobytes() for t in tensors.values())).hexdigest()
        meta: dict[str, Any] = {"training_info": {"step": self.step_num, "epoch": self.epoch_num}}
        meta["ss_base_model_version"] = "zimage"
        meta["ss_output_name"] = self.name
        if self.trigger:
            meta["ss_tag_frequency"] = {f"1_{self.trigger}": {self.trigger: 1}}
        meta["software"] = SOFTWARE
        meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
        meta["format"] = "pt"
        meta["sshs_model_hash"] = digest
        meta["sshs_legacy_hash"] = "e3b0c442"
        return meta

    def sample(self, step: int) -> None:
        """One JPEG per prompt: samples/<epoch ms>__<9-digit step>_<i>.jpg."""
        folder = os.path.join(self.save_root, "samples")
        os.makedirs(folder, exist_ok=True)
        bar = Bar(len(self.prompts), "Generating Samples", seconds_per_it=0.5)
        w, h = self.sample_size
        scale = 64 / max(w, h)
        for i in range(len(self.prompts)):
            rng = np.random.default_rng(self.seed * 31 + step * 1009 + i)
            pixels = rng.integers(0, 256, (max(8, int(h * scale)), max(8, int(w * scale)), 3), dtype=np.uint8)
            stamp = int(time.time() * 1000)
            Image.fromarray(pixels).save(os.path.join(folder, f"{stamp}__{step:09d}_{i}.jpg"), quality=85)
            bar.update()
        bar.close()
        print("")


def raise_chained(first: BaseException, second: BaseException) -> None:
    """Raise `second` while handling `first`, as diffusers does (the traceback shows both)."""
    try:
        raise first
    except type(first):
        raise second  # noqa: B904  (implicit chaining is the point: "During handling of the above exception")


def print_oom_skip(count: int) -> None:
    print("")
    print("################################################")
    print(f"# OOM during training step, skipping batch {count}/3 #")
    print("################################################")
    print("")


def write_dataset_caches(folder: str, sizes: dict[str, tuple[int, int]], latents_to_disk: bool) -> None:
    """AI-Toolkit writes into the dataset folder: .aitk_size.json, and _latent_cache/ when caching to disk."""
    index: dict[str, Any] = {"__version__": "0.1.2"}
    for image, (w, h) in sizes.items():
        stat = os.stat(os.path.join(folder, image))
        index[f"/{image}"] = [w, h, f"{stat.st_size}:{int(stat.st_mtime)}"]
    with open(os.path.join(folder, ".aitk_size.json"), "w") as f:
        json.dump(index, f)
    if latents_to_disk:
        cache = os.path.join(folder, "_latent_cache")
        os.makedirs(cache, exist_ok=True)
        for image in sizes:
            tag = hashlib.md5(image.encode()).hexdigest()[:22]
            latent = {"latent": np.zeros((16, 4, 4), np.float16)}
            save_file(latent, os.path.join(cache, f"{Path(image).stem}_{tag}.safetensors"))
