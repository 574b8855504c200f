"""A crafted config must not let the trainer leave the roots or see the server's secrets.

Each attack a hostile agent tried is here, through MCP where it was seen, against a stand-in trainer that behaves
like AI-Toolkit's loader (tests/fake_aitk: `${VAR}` from the environment over the text, `[name]` in every string,
the process name over the job's, `os.path.join(training_folder, name)`), plus the classes behind them as
parametrized and property tests of the plan.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, write_config
from mcp import Client

from lora_mcp.errors import InvalidInput, PathNotAllowed
from lora_mcp.jobs.models import JobState
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings
from lora_mcp.training import plan as plan_module
from lora_mcp.training.plan import ConfigPlan, plan_config
from lora_mcp.training.service import resume_training, start_training
from lora_mcp.training.trainjob import CONFIG_COPY

pytestmark = pytest.mark.anyio

SECRET_TOKEN = "tok-3f9a1c77e2b84d0f9e6a5b4c3d2e1f00"
SECRET_KEY = "sk-llm-9d8c7b6a5f4e3d2c1b0a"
HF_SECRET = "hf_abcdefghijklmnopqrstuvwxyz0123"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> tuple[Settings, Path]:
    settings = use_fake_aitk(monkeypatch)
    return settings, write_config(settings, shared_images, steps=100)


def load(config: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(config.read_text()))


def hostile(config: Path, change: Callable[[dict[str, Any]], None], name: str = "hostile.yaml") -> Path:
    data = load(config)
    change(data)
    out = config.with_name(name)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def proc(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data["config"]["process"][0])


def set_in(*keys: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets config.process[0].<keys...> = value."""

    def change(data: dict[str, Any]) -> None:
        node: Any = data["config"]["process"][0]
        for key in keys[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[keys[-1]] = value

    return change


def files_outside(tmp_path: Path, settings: Settings) -> list[Path]:
    """Everything under tmp_path that is neither in a root nor in the state dir (the trainer's leftovers)."""
    keep = [*settings.roots, settings.home]
    return [
        p
        for p in tmp_path.rglob("*")
        if not any(p == k or p.is_relative_to(k) for k in keep) and not any(k.is_relative_to(p) for k in keep)
    ]


# ---- 1-2: escapes through the name, [name] and ${VAR}, through MCP ---------------------------------------------


ATTACKS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "name-dotdot": lambda d, out: d["config"].update(name="../../outside/x"),
    "name-absolute": lambda d, out: d["config"].update(name=str(out / "x")),
    "process-name": lambda d, out: proc(d) and d["config"]["process"][0].update(name="../../../outside"),
    "folder-from-name": lambda d, out: (
        d["config"].update(name="x"),
        d["config"]["process"][0].update(training_folder="[name]/../../outside"),
    ),
    "folder-relative": lambda d, out: d["config"]["process"][0].update(training_folder="output"),
    "folder-env": lambda d, out: d["config"]["process"][0].update(training_folder="${HOME}/x"),
    "prompt-env": lambda d, out: d["config"]["process"][0]["sample"]["samples"][0].update(
        prompt="${LORA_MCP_HTTP_TOKEN}"
    ),
    "folder-tilde": lambda d, out: d["config"]["process"][0].update(training_folder="~/x"),
    "folder-outside": lambda d, out: d["config"]["process"][0].update(training_folder=str(out)),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_escape_attempts_are_refused_through_mcp(
    fake: tuple[Settings, Path], tmp_path: Path, attack: str
) -> None:
    settings, config = fake
    out = tmp_path / "outside"
    crafted = hostile(config, lambda d: ATTACKS[attack](d, out))
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("start_training", {"config_path": str(crafted)})
        listed = await client.call_tool("list_jobs", {})
    assert result.is_error, f"{attack} was accepted"
    text = result.content[0].text  # type: ignore[union-attr]
    assert "Next:" in text and "config" in text.split(":", 1)[1], f"not an actionable message: {text}"
    assert listed.structured_content == {"jobs": []}
    assert not out.exists() and files_outside(tmp_path, settings) == []


async def test_name_placeholder_inside_the_roots_is_fine(fake: tuple[Settings, Path]) -> None:
    """[name] is AI-Toolkit's own feature: allowed wherever the substituted result stays inside the roots."""
    settings, config = fake
    root = settings.roots[0]
    crafted = hostile(config, set_in("training_folder", value=f"{root}/runs/[name]"))
    status = start_training(new_manager(settings), str(crafted))
    job = wait_final(new_manager(settings), status.job_id)
    assert job.state == JobState.SUCCEEDED, job.error
    name = load(config)["config"]["name"]
    assert (root / "runs" / name / name / f"{name}.safetensors").is_file()


# ---- 3: the bytes checked are the bytes run --------------------------------------------------------------------


def test_swapping_the_file_after_the_check_changes_nothing(
    fake: tuple[Settings, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, config = fake
    original = config.read_bytes()
    evil = yaml.safe_dump(
        {**load(config), "config": {**load(config)["config"], "name": "evil"}}, sort_keys=False
    ).replace(str(settings.roots[0] / "lora-mcp" / "output"), str(tmp_path / "outside"))
    real_read = plan_module.read_config_bytes

    def read_then_swap(path: Path) -> bytes:
        data = real_read(path)
        if path == config:
            path.write_text(evil)  # the attacker wins every race from here on
        return data

    monkeypatch.setattr(plan_module, "read_config_bytes", read_then_swap)
    manager = new_manager(settings)
    status = start_training(manager, str(config))
    job = wait_final(manager, status.job_id)
    assert (job.job_dir / CONFIG_COPY).read_bytes() == original, "the trainer runs the bytes that were checked"
    assert job.state == JobState.SUCCEEDED, job.error
    assert not (tmp_path / "outside").exists() and files_outside(tmp_path, settings) == []


def test_a_frozen_config_changed_while_queued_never_runs(fake: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, config = fake
    manager = new_manager(settings)
    first = start_training(manager, str(config))  # holds the one GPU lane
    second = start_training(manager, str(config))
    assert manager.get(second.job_id).state == JobState.QUEUED
    frozen = manager.get(second.job_id).job_dir / CONFIG_COPY
    frozen.write_text(frozen.read_text().replace(str(settings.roots[0]), str(tmp_path / "outside")))
    wait_final(manager, first.job_id)
    job = wait_final(manager, second.job_id)
    assert job.state == JobState.FAILED and job.error is not None
    assert "changed after it was validated" in job.error.message
    assert not (tmp_path / "outside").exists()


def test_resume_refuses_a_tampered_frozen_config(fake: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, config = fake
    manager = new_manager(settings)
    status = start_training(manager, str(config))
    manager.cancel(status.job_id)
    job = wait_final(manager, status.job_id)
    frozen = job.job_dir / CONFIG_COPY
    frozen.write_text(frozen.read_text().replace(str(settings.roots[0]), str(tmp_path / "outside")))
    with pytest.raises(InvalidInput, match="changed after it was validated"):
        resume_training(manager, status.job_id)


def test_resume_of_a_succeeded_job_is_refused(fake: tuple[Settings, Path]) -> None:
    settings, config = fake
    manager = new_manager(settings)
    status = start_training(manager, str(config))
    assert wait_final(manager, status.job_id).state == JobState.SUCCEEDED
    with pytest.raises(InvalidInput, match="already succeeded") as info:
        resume_training(manager, status.job_id)
    assert "more steps" in str(info.value)


# ---- 4: secrets ------------------------------------------------------------------------------------------------


async def test_the_trainer_gets_a_built_environment_and_logs_are_redacted(
    fake: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config = fake
    monkeypatch.setenv("LORA_MCP_HTTP_TOKEN", SECRET_TOKEN)
    monkeypatch.setenv("LORA_MCP_OPENAI_API_KEY", SECRET_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY + "-plain")
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("FAKE_AITK_PRINT_ENV", "1")
    settings = use_fake_aitk(monkeypatch)
    async with Client(build_server(settings)) as client:
        started = await client.call_tool("start_training", {"config_path": str(config)})
        assert not started.is_error, started.content
        job_id = started.structured_content["job_id"]  # type: ignore[index]
        wait_final(new_manager(settings), job_id)
        logs = await client.call_tool("job_logs", {"job_id": job_id, "tail": 5000})
        resource = await client.read_resource(f"lora://jobs/{job_id}/log")
    raw_log = (settings.jobs_dir / job_id / "log.txt").read_text()
    env_lines = [line for line in raw_log.splitlines() if line.startswith("env ")]
    names = {line[4:].split("=", 1)[0] for line in env_lines}
    assert env_lines and "PATH" in names and "HF_TOKEN" in names and "FAKE_AITK_PRINT_ENV" in names
    assert not [n for n in names if n.startswith("LORA_MCP_")], names
    assert "OPENAI_API_KEY" not in names
    assert SECRET_TOKEN not in raw_log and SECRET_KEY not in raw_log
    assert HF_SECRET in raw_log, "gated models need HF_TOKEN: the trainer gets it"
    shown = "\n".join(logs.structured_content["lines"])  # type: ignore[index]
    shown += "".join(getattr(c, "text", "") for c in resource.contents)
    assert "env HF_TOKEN=[redacted]" in shown and HF_SECRET not in shown


def test_a_trainer_error_message_is_redacted(fake: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """get_job's message and error come from log lines: the same redaction applies."""
    _, config = fake
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    settings = use_fake_aitk(monkeypatch)
    crafted = hostile(config, set_in("model", "name_or_path", value=f"someone/{HF_SECRET}"))
    monkeypatch.setenv("FAKE_AITK_FAIL", "model_not_found")
    manager = new_manager(settings)
    job = wait_final(manager, start_training(manager, str(crafted)).job_id)
    from lora_mcp.jobs.status import job_status

    status = job_status(manager, job)
    assert job.state == JobState.FAILED
    assert HF_SECRET not in status.model_dump_json()


# ---- the classes: every path key, after substitution -----------------------------------------------------------


def plan_of(settings: Settings, data: dict[str, Any]) -> ConfigPlan:
    return plan_config(yaml.safe_dump(data, sort_keys=False).encode(), settings, source="test.yaml")


REFUSED: dict[str, tuple[Callable[[dict[str, Any], Path], Any], str]] = {
    "model-outside": (lambda d, o: set_in("model", "name_or_path", value=str(o))(d), "outside"),
    "model-dotdot": (lambda d, o: set_in("model", "name_or_path", value="../../etc")(d), "hub id"),
    "adapter-outside": (lambda d, o: set_in("model", "assistant_lora_path", value=f"{o}/a.safetensors")(d), "outside"),
    "vae-relative": (lambda d, o: set_in("model", "vae_path", value="vae/../../x")(d), "hub id"),
    "qtype-adapter": (lambda d, o: set_in("model", "qtype", value=f"uint4|{o}/ara.safetensors")(d), "outside"),
    "control-path": (lambda d, o: set_in("datasets", 0, "control_path", value=str(o))(d), "outside"),
    "mask-relative": (lambda d, o: set_in("datasets", 0, "mask_path", value="masks")(d), "relative"),
    "second-dataset": (
        lambda d, o: d["config"]["process"][0]["datasets"].append({"folder_path": str(o)}),
        "outside",
    ),
    "ctrl-img": (lambda d, o: set_in("sample", "samples", 0, "ctrl_img", value=f"{o}/c.png")(d), "outside"),
    "log-dir": (lambda d, o: set_in("log_dir", value=str(o))(d), "outside"),
    "pretrained-lora": (lambda d, o: set_in("network", "pretrained_lora_path", value=str(o))(d), "outside"),
    "feature-extractor": (lambda d, o: set_in("train", "diffusion_feature_extractor_path", value=str(o))(d), "outside"),
    "free-dict-path": (lambda d, o: set_in("train", "optimizer_params", "state", value=f"{o}/x")(d), "outside"),
    "free-dict-dotdot": (lambda d, o: set_in("model", "model_kwargs", value={"p": "a/../../b"})(d), "relative"),
    "caption-ext": (lambda d, o: set_in("datasets", 0, "caption_ext", value="../../x")(d), "extension"),
    "adapter-section": (lambda d, o: set_in("adapter", value={"name_or_path": "x/y"})(d), "adapter"),
    "validation": (lambda d, o: set_in("train", "validation_config", value={"a": 1})(d), "validation"),
    "sqlite": (lambda d, o: set_in("sqlite_db_path", value=str(o))(d), "sqlite_db_path"),
    "push-to-hub": (lambda d, o: set_in("save", "push_to_hub", value=True)(d), "off this machine"),
    "push-to-hub-string": (lambda d, o: set_in("save", "push_to_hub", value="false")(d), "off this machine"),
    "wandb": (lambda d, o: set_in("logging", "use_wandb", value=True)(d), "Weights & Biases"),
    "unknown-key": (lambda d, o: set_in("train", "stepz", value=10)(d), "does not read"),
    "two-processes": (lambda d, o: d["config"]["process"].append(dict(proc(d))), "exactly one"),
    "other-process": (lambda d, o: set_in("type", value="ui_trainer")(d), "diffusion_trainer"),
    "other-job": (lambda d, o: d.update(job="extract"), "extension"),
    "name-not-text": (lambda d, o: d["config"].update(name=123), "config.name"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_every_path_key_is_checked(fake: tuple[Settings, Path], tmp_path: Path, case: str) -> None:
    settings, config = fake
    data = load(config)
    change, needle = REFUSED[case]
    change(data, tmp_path / "outside")
    with pytest.raises(InvalidInput) as info:
        plan_of(settings, data)
    assert needle in str(info.value), str(info.value)


def test_remote_uploads_when_the_operator_allows_them(fake: tuple[Settings, Path]) -> None:
    settings, config = fake
    data = load(config)
    set_in("save", "push_to_hub", value=True)(data)
    assert plan_of(settings.model_copy(update={"allow_remote_uploads": True}), data).name


def test_hub_ids_pass_unless_they_name_a_file_in_the_trainer_folder(
    fake: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, config = fake
    toolkit = tmp_path / "toolkit"
    (toolkit / "output" / "other").mkdir(parents=True)
    settings = settings.model_copy(update={"ai_toolkit_dir": toolkit})
    data = load(config)
    set_in("model", "name_or_path", value="Tongyi-MAI/Z-Image-Turbo")(data)
    assert "Tongyi-MAI/Z-Image-Turbo" in plan_of(settings, data).hub_ids
    set_in("model", "name_or_path", value="output/other")(data)
    with pytest.raises(PathNotAllowed, match="AI-Toolkit's own folder"):
        plan_of(settings, data)


@pytest.mark.parametrize("link", ["training_folder", "output_dir"])
def test_symlinks_out_of_the_roots_are_followed_and_refused(
    fake: tuple[Settings, Path], tmp_path: Path, link: str
) -> None:
    settings, config = fake
    root, out = settings.roots[0], tmp_path / "outside"
    out.mkdir()
    data = load(config)
    name = data["config"]["name"]
    if link == "training_folder":
        (root / "linked").symlink_to(out)
        set_in("training_folder", value=str(root / "linked"))(data)
    else:
        (root / "runs").mkdir()
        (root / "runs" / name).symlink_to(out)
        set_in("training_folder", value=str(root / "runs"))(data)
    with pytest.raises(PathNotAllowed, match="symlink"):
        plan_of(settings, data)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (
            b"job: extension\nconfig: {name: x}\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
            b"b: &b [*a, *a, *a, *a, *a, *a, *a]\n"
            b"c: &c [*b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d]\n"
            b"f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
            "too large",
        ),
        (b"job: extension\nconfig: {name: x, process: [{type: diffusion_trainer, when: 2026-01-01}]}\n", "date"),
        (b"job: extension\nconfig:\n  name: x\n  process: []\n", "exactly one"),
        ("job: extension # \u00e9\n".encode("latin-1"), "UTF-8"),
    ],
    ids=["alias-bomb", "timestamp", "no-process", "latin-1"],
)
def test_malformed_bytes(settings: Settings, raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        plan_config(raw, settings)


def test_oversized_and_special_files(fake: tuple[Settings, Path]) -> None:
    settings, config = fake
    big = config.with_name("big.yaml")
    big.write_bytes(config.read_bytes() + b"#" * plan_module.MAX_CONFIG_BYTES)
    with pytest.raises(InvalidInput, match="KiB"):
        start_training(new_manager(settings), str(big))
    fifo = config.with_name("fifo.yaml")
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput):
        start_training(new_manager(settings), str(fifo))


NAMES = st.one_of(
    st.sampled_from(["..", ".", "../x", "/abs", "a/b", "a\\b", "[name]", "${HOME}", "-x", "", " ", "ok_name"]),
    st.text(alphabet="ab./\\-_[]${}~ \x00", min_size=0, max_size=12),
)
FOLDERS = st.sampled_from(
    [
        "{root}/out",
        "{root}/../out",
        "{root}/[name]/..",
        "[name]",
        "{out}",
        "{root}/a/../../out",
        "~/{root}",
        "out",
        "{root}/./[name]/x",
        "{root}/${{HOME}}",
        "//{root}/ok",
        "{root}/ok/",
    ]
)


@given(name=NAMES, process_name=st.none() | NAMES, folder=FOLDERS)
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_an_accepted_plan_writes_only_inside_the_roots(
    fake: tuple[Settings, Path], tmp_path: Path, name: str, process_name: str | None, folder: str
) -> None:
    """Whatever the name and folder, a plan either refuses or the trainer's own join lands inside the roots."""
    settings, config = fake
    root = settings.roots[0]
    data = load(config)
    data["config"]["name"] = name
    if process_name is not None:
        data["config"]["process"][0]["name"] = process_name
    data["config"]["process"][0]["training_folder"] = folder.format(root=root, out=tmp_path / "outside")
    try:
        plan = plan_of(settings, data)
    except InvalidInput:
        return
    process = plan.config["config"]["process"][0]
    # What AI-Toolkit itself computes from the substituted config:
    save_root = os.path.realpath(
        os.path.join(process["training_folder"], process.get("name", plan.config["config"]["name"]))
    )
    assert Path(save_root).is_relative_to(os.path.realpath(root)), (name, process_name, folder, save_root)
    assert Path(save_root) == plan.output_dir


def test_a_symlink_in_the_dataset_leading_out_is_refused(fake: tuple[Settings, Path], tmp_path: Path) -> None:
    """AI-Toolkit walks the dataset and reads symlinked files too; inspection skips them, the trainer would not."""
    settings, config = fake
    secret = tmp_path / "private.png"
    secret.write_bytes(next(p for p in (settings.roots[0] / "dataset").iterdir() if p.suffix == ".png").read_bytes())
    (settings.roots[0] / "dataset" / "zz_link.png").symlink_to(secret)
    with pytest.raises(PathNotAllowed, match=r"zz_link\.png"):
        start_training(new_manager(settings), str(config))
    (settings.roots[0] / "dataset" / "zz_link.png").unlink()
    (settings.roots[0] / "dataset" / "zz_inside.txt").symlink_to(settings.roots[0] / "dataset" / "zz_other.txt")
    (settings.roots[0] / "dataset" / "zz_other.txt").write_text("a caption")
    assert start_training(new_manager(settings), str(config)).job_id, "a link that stays inside is fine"


async def test_resume_in_the_wrong_state_is_a_precondition_error(fake: tuple[Settings, Path]) -> None:
    """The structured error tells 'wait and retry' (still running) from 'do something else' (succeeded)."""
    from lora_mcp.server.errors import ERROR_META_KEY

    settings, config = fake
    async with Client(build_server(settings)) as client:
        started = await client.call_tool("start_training", {"config_path": str(config)})
        job_id = started.structured_content["job_id"]  # type: ignore[index]
        running = await client.call_tool("resume_training", {"job_id": job_id})
        wait_final(new_manager(settings), job_id)
        done = await client.call_tool("resume_training", {"job_id": job_id})
    assert running.is_error and done.is_error
    assert running.meta is not None and done.meta is not None
    assert running.meta[ERROR_META_KEY]["code"] == "precondition_failed" and running.meta[ERROR_META_KEY]["retryable"]
    assert done.meta[ERROR_META_KEY]["code"] == "precondition_failed" and not done.meta[ERROR_META_KEY]["retryable"]
