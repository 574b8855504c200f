"""The trust boundary for a training config: one validated plan per config, built from the bytes the trainer runs.

A config may come from an agent, so it is input like any tool argument. AI-Toolkit does not run the YAML as
written: its loader (`toolkit/config.py`) first replaces `${VAR}` with environment variables over the whole text,
parses it, then replaces `[name]` in every string of the JSON form; the process joins `training_folder` with its
name; and many keys load files, either local or from the Hugging Face hub when no such local path exists
(relative to the trainer's working directory, AI-Toolkit's own folder). So the plan:

1. reads the bytes once (at most MAX_CONFIG_BYTES, a regular file, no symlink at the end);
2. refuses `${...}` anywhere (the server does not hand its environment to configs);
3. parses as AI-Toolkit does and applies the `[name]` substitution exactly as its loader does;
4. accepts only what it models: one `diffusion_trainer` process of an `extension` job, keys AI-Toolkit reads
   (`aitk_keys`), no section that loads files it does not check (adapters, embeddings, validation sets);
5. checks every path the trainer will read or write, after substitution and joining, against the roots: a local
   path must be absolute and resolve (symlinks followed) inside a root; a hub id is accepted only where AI-Toolkit
   takes one and only if no such path exists in the trainer's folder; any other string shaped like a path is
   checked too, whatever its key;
6. refuses keys that send data off the machine unless the operator allows it.

The job then runs exactly these bytes (frozen into its directory, checked again by digest at launch).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lora_mcp.dataset.captions import normalize_caption_ext
from lora_mcp.errors import InvalidInput, LoraMcpError, PathNotAllowed
from lora_mcp.paths import confine
from lora_mcp.settings import Settings
from lora_mcp.training.aitk_keys import CHILD_SECTIONS, unknown_keys
from lora_mcp.training.config import NAME_RE

MAX_CONFIG_BYTES = 1 << 20
MAX_NODES = 20_000
MAX_DEPTH = 40
ENV_REFERENCE = re.compile(r"\$\{([^}]+)\}")
"""AI-Toolkit's pattern for environment references, replaced over the raw text before parsing."""

HUB_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*){1,4}$")
"""`owner/repo` or `owner/repo/file.safetensors` (a few levels), as AI-Toolkit passes to the hub."""

_FIX = "Call generate_training_config to write a config this server runs, or fix that key and call again."


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Where AI-Toolkit reads or writes a file, per section of the config (section names as in aitk_keys).
WRITE_DIRS = {("process", "training_folder"), ("process", "log_dir")}
LOCAL_READS = {
    ("datasets[]", key)
    for key in _words(
        "folder_path dataset_path clip_image_path control_path control_path_1 control_path_2 control_path_3 "
        "inpaint_path mask_path unconditional_path"
    )
} | {("samples[]", key) for key in ("ctrl_img", "ctrl_img_1", "ctrl_img_2", "ctrl_img_3")}
LOCAL_OR_HUB = {
    ("model", key)
    for key in _words(
        "name_or_path extras_name_or_path assistant_lora_path inference_lora_path lora_path refiner_name_or_path "
        "te_name_or_path unet_path vae_path unconditional_lora_path accuracy_recovery_adapter"
    )
} | {
    ("train", "adapter_assist_name_or_path"),
    ("train", "diffusion_feature_extractor_path"),
    ("train", "latent_feature_extractor_path"),
    ("network", "pretrained_lora_path"),
}
NOT_MODELLED = {
    ("process", "adapter"): "an adapter section (IP-Adapter, control adapters) loads files this server does not check",
    ("process", "embedding"): "an embedding section loads and writes files this server does not check",
    ("process", "decorator"): "a decorator section loads files this server does not check",
    ("process", "sqlite_db_path"): "sqlite_db_path is for AI-Toolkit's own UI, which this server replaces",
    ("train", "validation_config"): "a validation set loads files this server does not check",
    ("model", "model_paths"): "model_paths loads files this server does not check",
}
REMOTE = {
    ("save", "push_to_hub"): "uploads the LoRA to the Hugging Face hub",
    ("logging", "use_wandb"): "sends the run, its config and samples to Weights & Biases",
}
FREE_TEXT = _words(
    "prompt prompts neg negative_prompt unconditional_prompt trigger_word default_caption random_triggers "
    "replacements diff_output_preservation_class project_name run_name"
)
"""Keys whose strings are text for the model, never paths: not scanned for path shapes."""


class AitkYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the float rule AI-Toolkit adds (`1e-4` is a float, not a string)."""


AitkYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class ConfigPlan:
    """A config the trainer may run: its exact bytes, what it does after AI-Toolkit's substitutions, and where."""

    raw: bytes
    sha256: str
    config: dict[str, Any]
    """The config as AI-Toolkit's loader hands it to the job: parsed, `[name]` substituted."""
    name: str
    training_folder: Path
    dataset_folders: tuple[Path, ...]
    reads: tuple[Path, ...]
    """Every local file or folder the trainer reads (models, datasets, control images)."""
    writes: tuple[Path, ...]
    """Every folder the trainer writes into (its output folder, log dir, and caches beside the datasets)."""
    hub_ids: tuple[str, ...]
    steps: int | None
    trigger_word: str | None
    resolutions: list[int] | None
    caption_exts: tuple[str, ...]
    estimated_vram_gb: float | None

    @property
    def output_dir(self) -> Path:
        """`<training_folder>/<name>`: config copy, checkpoints, samples, the final LoRA."""
        return self.training_folder / self.name


def refusal(message: str, *, hint: str = _FIX, path_error: bool = False) -> InvalidInput:
    """An error about the config an agent can act on."""
    cls = PathNotAllowed if path_error else InvalidInput
    return cls(message, hint=hint, field="config_path")


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, read once: a regular file (not a symlink at the end), at most MAX_CONFIG_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise refusal(
            f"Cannot open the config {path}: {exc.strerror}.",
            hint="Pass the config_path that generate_training_config returned.",
        ) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise refusal(f"The config {path} is not a regular file.", hint="Pass a YAML file.")
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise refusal(f"The config {path} is over {MAX_CONFIG_BYTES // 1024} KiB; a training config is a few KiB.")
    return data


def load_plan(path: Path, settings: Settings) -> ConfigPlan:
    """Read a confined config file once and plan it (see `plan_config`)."""
    return plan_config(read_config_bytes(path), settings, source=str(path))


def plan_config(raw: bytes, settings: Settings, *, source: str = "the config") -> ConfigPlan:
    """Validate the bytes of an AI-Toolkit config as the trainer will see them; raise with what to fix."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refusal(f"Cannot read the config {source}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    if match := ENV_REFERENCE.search(text):
        line = text.count("\n", 0, match.start()) + 1
        raise refusal(
            f"{source} line {line} holds {match.group(0)!r}: AI-Toolkit replaces ${{...}} with the server's "
            "environment variables before it reads the file, so a config may not contain it.",
            hint="Write the value itself (an absolute path inside the allowed roots) instead of ${...}.",
        )
    try:
        parsed = yaml.load(text, Loader=AitkYamlLoader)  # a SafeLoader subclass: plain data only
    except yaml.YAMLError as exc:
        raise refusal(f"Cannot read the config {source}: not valid YAML: {exc}") from exc
    _check_shape(parsed, source)
    name = _config_name(parsed, source)
    try:
        # AI-Toolkit's own order: the JSON text of the parsed config, with [name] replaced as plain text.
        config = json.loads(json.dumps(parsed).replace("[name]", name))
    except (TypeError, ValueError) as exc:
        raise refusal(f"{source} cannot be read by AI-Toolkit after its [name] substitution: {exc}") from exc
    process = _one_process(config, source)
    return _Planner(settings, source).plan(raw, text, config, process)


def _check_shape(node: Any, source: str) -> None:
    """Plain YAML data only, bounded in size and depth (an alias bomb must not reach json.dumps)."""
    count = 0
    stack: list[tuple[Any, int, str]] = [(node, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise refusal(f"{source} is too large or too deeply nested to be a training config.")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1, f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))
        elif value is not None and not isinstance(value, str | int | float | bool):
            raise refusal(
                f"{source} has a {type(value).__name__} at {where.lstrip('.') or 'the top'}, which AI-Toolkit's "
                "loader cannot handle.",
                hint="Quote the value so it is a string.",
            )


def _config_name(parsed: Any, source: str) -> str:
    if not isinstance(parsed, Mapping) or not isinstance(parsed.get("config"), Mapping):
        raise refusal(f"{source} is not an AI-Toolkit job: it needs `job: extension` and a `config` section.")
    name = parsed["config"].get("name")
    _check_name(name, "config.name", source)
    return str(name)


def _check_name(name: Any, where: str, source: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise refusal(
            f"{source} has {where} = {name!r}: AI-Toolkit writes into <training_folder>/<name>, so the name must "
            "be 1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit.",
            hint=f"Set {where} to a plain name such as my_lora, or call generate_training_config to write the config.",
            path_error=True,
        )


def _one_process(config: dict[str, Any], source: str) -> dict[str, Any]:
    if config.get("job") != "extension":
        raise refusal(f"{source} has job = {config.get('job')!r}; this server runs `job: extension` configs only.")
    processes = config["config"].get("process")
    if not isinstance(processes, list) or len(processes) != 1 or not isinstance(processes[0], dict):
        raise refusal(
            f"{source} needs exactly one entry in config.process (it has "
            f"{len(processes) if isinstance(processes, list) else 'none'}); one job trains one LoRA."
        )
    process = processes[0]
    if process.get("type") != "diffusion_trainer":
        raise refusal(
            f"{source} has config.process[0].type = {process.get('type')!r}; this server runs the headless "
            "`diffusion_trainer` process only."
        )
    return process


class _Planner:
    """Walks one substituted config and collects or refuses every path in it."""

    def __init__(self, settings: Settings, source: str) -> None:
        self.settings = settings
        self.source = source
        self.trainer_cwd = settings.ai_toolkit_dir
        self.reads: list[Path] = []
        self.writes: list[Path] = []
        self.hub_ids: list[str] = []
        self.scanned: set[int] = set()

    def plan(self, raw: bytes, text: str, config: dict[str, Any], process: dict[str, Any]) -> ConfigPlan:
        unknown = unknown_keys(config)
        if unknown:
            listing = ", ".join(unknown[:8])
            raise refusal(
                f"{self.source} has keys AI-Toolkit does not read (it would silently ignore them): {listing}.",
                hint="Remove or correct them; training_config docs list the keys, or call generate_training_config.",
            )
        name = process.get("name", config["config"]["name"])
        _check_name(name, "config.process[0].name", self.source)
        self._section(process, "process", "config.process[0]")
        self._scan_strings(config, "")
        training_folder = self._absolute(process.get("training_folder"), "config.process[0].training_folder")
        output_dir = self._confine(training_folder / name, f"<training_folder>/{name}")
        datasets = [d for d in process.get("datasets") or [] if isinstance(d, dict)]
        if not datasets or any(not d.get("folder_path") for d in datasets):
            raise refusal(f"{self.source} needs config.process[0].datasets with a folder_path in each entry.")
        folders = tuple(self._confine(d["folder_path"], "datasets[].folder_path") for d in datasets)
        exts = tuple(self._caption_ext(d.get("caption_ext", "txt")) for d in datasets)
        return ConfigPlan(
            raw=raw,
            sha256=hashlib.sha256(raw).hexdigest(),
            config=config,
            name=name,
            training_folder=training_folder,
            dataset_folders=folders,
            reads=tuple(dict.fromkeys(self.reads)),
            writes=tuple(dict.fromkeys([output_dir, *self.writes, *folders])),
            hub_ids=tuple(dict.fromkeys(self.hub_ids)),
            steps=_int_or_none(_get(process, "train", "steps"), "train.steps", self.source),
            trigger_word=process.get("trigger_word") if isinstance(process.get("trigger_word"), str) else None,
            resolutions=_resolutions(datasets[0].get("resolution"), self.source),
            caption_exts=exts,
            estimated_vram_gb=estimated_vram_gb(text),
        )

    # -- the walk ---------------------------------------------------------------------------------------------

    def _section(self, node: dict[str, Any], section: str, where: str) -> None:
        for key, value in node.items():
            here = f"{where}.{key}"
            if (section, key) in NOT_MODELLED and value not in (None, False, {}, []):
                raise refusal(
                    f"{self.source} sets {here}: {NOT_MODELLED[(section, key)]}.",
                    hint=f"Remove {here}; this server trains LoRAs with the keys generate_training_config writes.",
                )
            if (section, key) in REMOTE and value:  # AI-Toolkit tests truthiness: even the string "false" uploads
                self._remote(here, REMOTE[(section, key)])
            if (section, key) in WRITE_DIRS and value is not None:
                self.writes.append(self._absolute(value, here))
            elif (section, key) in LOCAL_READS and value is not None:
                for i, item in enumerate(value if isinstance(value, list) else [value]):
                    self.reads.append(self._absolute(item, here if not isinstance(value, list) else f"{here}[{i}]"))
            elif (section, key) in LOCAL_OR_HUB and value is not None:
                self._local_or_hub(value, here)
            elif (section, key) == ("datasets[]", "caption_ext"):
                self._caption_ext(value)
            elif (section, key) == ("model", "qtype") and isinstance(value, str) and "|" in value:
                # "qint4|owner/repo/adapter.safetensors": AI-Toolkit loads an accuracy-recovery adapter from it.
                self._local_or_hub(value.split("|", 1)[1], here)
            child = CHILD_SECTIONS.get(section, {}).get(key)
            if child is not None:
                items = value if isinstance(value, list) else [value]
                for i, item in enumerate(items):
                    if isinstance(item, dict):
                        self._section(item, child, f"{here}[{i}]" if isinstance(value, list) else here)

    def _scan_strings(self, node: Any, where: str) -> None:
        """Any other string shaped like a path, under any key, must be an absolute path inside the roots."""
        for value, here in _strings(node, where, skip=FREE_TEXT | {"meta"}):
            if _looks_like_path(value):
                self._absolute(value, here)

    def _remote(self, where: str, what: str) -> None:
        if not self.settings.allow_remote_uploads:
            raise refusal(
                f"{self.source} sets {where}, which {what}: a config may not send data off this machine.",
                hint=f"Remove {where}; the operator can allow it with LORA_MCP_ALLOW_REMOTE_UPLOADS=true.",
            )

    # -- paths ------------------------------------------------------------------------------------------------

    def _absolute(self, value: Any, where: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise refusal(f"{self.source} has {where} = {value!r}; it must be an absolute path.", path_error=True)
        if not os.path.isabs(value):
            raise refusal(
                f"{self.source} has {where} = {value!r}: a relative path is resolved by AI-Toolkit against its own "
                "folder, outside the allowed roots.",
                hint=f"Make {where} an absolute path inside the allowed roots ({_roots(self.settings)}).",
                path_error=True,
            )
        return self._confine(value, where)

    def _confine(self, value: str | Path, where: str) -> Path:
        try:
            return confine(value, self.settings.roots, what=where)
        except LoraMcpError as exc:
            raise refusal(f"{self.source}: {exc.message}", hint=exc.hint or _FIX, path_error=True) from exc

    def _local_or_hub(self, value: Any, where: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise refusal(f"{self.source} has {where} = {value!r}; it must be a path or a hub id.")
        if os.path.isabs(value):
            self.reads.append(self._confine(value, where))
            return
        local = self.trainer_cwd / value if self.trainer_cwd is not None else None
        if not HUB_ID.match(value) or any(part in (".", "..") for part in value.split("/")):
            raise refusal(
                f"{self.source} has {where} = {value!r}: neither an absolute path inside the roots nor a hub id "
                "(owner/repo or owner/repo/file.safetensors).",
                path_error=True,
            )
        if local is not None and os.path.lexists(local):
            raise refusal(
                f"{self.source} has {where} = {value!r}, which names a file in AI-Toolkit's own folder ({local}), "
                "outside the allowed roots.",
                hint="Use an absolute path inside the roots, or a hub id that is not also a local folder.",
                path_error=True,
            )
        self.hub_ids.append(value)

    def _caption_ext(self, value: Any) -> str:
        if not isinstance(value, str):
            raise refusal(f"{self.source} has datasets[].caption_ext = {value!r}; it must be an extension like txt.")
        try:
            return normalize_caption_ext(value)
        except LoraMcpError as exc:
            raise refusal(f"{self.source}: {exc.message}", hint=exc.hint or _FIX) from exc


def _strings(node: Any, where: str, *, skip: frozenset[str] | set[str]) -> Iterator[tuple[str, str]]:
    """(string, dotted path) of every string value, depth first, not descending into keys named in `skip`."""
    stack: list[tuple[Any, str]] = [(node, where)]
    while stack:
        value, here = stack.pop()
        if isinstance(value, str):
            yield value, here
        elif isinstance(value, dict):
            stack.extend((v, f"{here}.{k}" if here else str(k)) for k, v in value.items() if str(k) not in skip)
        elif isinstance(value, list):
            stack.extend((v, f"{here}[{i}]") for i, v in enumerate(value))


def _looks_like_path(value: str) -> bool:
    text = value.strip()
    if text.startswith(("/", "~", "\\", "file:")) or re.match(r"^[A-Za-z]:[\\/]", text):
        return True
    return ".." in re.split(r"[\\/]", text)


def _roots(settings: Settings) -> str:
    return ", ".join(str(r) for r in settings.roots)


def _get(node: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None  # type: ignore[assignment]
    return node


def _int_or_none(value: Any, where: str, source: str) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 0:
        raise refusal(f"{source} has {where} = {value!r}; it must be a whole number.")
    return int(value) or None


def _resolutions(value: Any, source: str) -> list[int] | None:
    if value is None:
        return None
    items: Sequence[Any] = value if isinstance(value, list) else [value]
    if not items or any(isinstance(r, bool) or not isinstance(r, int) for r in items):
        raise refusal(
            f"{source} has datasets[0].resolution = {value!r}; it must be a list of side lengths such as [512, 1024]."
        )
    return [int(r) for r in items]


def estimated_vram_gb(text: str) -> float | None:
    """The estimate generate_training_config wrote into the config's header comment, if any."""
    for line in text[:2000].splitlines():
        if line.startswith("#") and "estimated_vram_gb:" in line:
            try:
                return float(line.split("estimated_vram_gb:", 1)[1].split()[0])
            except (ValueError, IndexError):
                return None
    return None
