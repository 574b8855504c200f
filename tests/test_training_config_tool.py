"""generate_training_config through the MCP server (in memory) and `lora-mcp config` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mcp import Client
from training_fixtures import TRIGGER, make_dataset

from lora_mcp.cli import main
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings
from lora_mcp.training.config import LoRATrainingConfig

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The in-memory client runs on asyncio."""
    return "asyncio"


@pytest.fixture
def dataset(root: Path, shared_images: Path) -> Path:
    """Six captioned images inside the root."""
    return make_dataset(root, shared_images)


def arguments(dataset: Path, **extra: object) -> dict[str, object]:
    return {"name": "tool_lora", "dataset_folder": str(dataset), "trigger_word": TRIGGER, "vram_gb": 16} | extra


async def test_tool_schema_is_the_model(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools["generate_training_config"].input_schema
    assert set(schema["properties"]) == {*LoRATrainingConfig.model_fields, "dry_run", "overwrite"}
    assert set(schema["required"]) == {"name", "dataset_folder", "trigger_word"}
    assert schema["properties"]["steps"]["minimum"] == 100 and schema["properties"]["steps"]["default"] == 2500
    assert "$ref" not in json.dumps(schema)
    assert tools["generate_training_config"].output_schema is not None


async def test_tool_dry_run_returns_yaml_and_writes_nothing(settings: Settings, dataset: Path) -> None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("generate_training_config", arguments(dataset, dry_run=True))
    assert not result.is_error, result.content
    out = result.structured_content
    assert out is not None and out["written"] is False and out["vram_tier"] == "16gb"
    assert not Path(out["config_path"]).exists()
    assert yaml.safe_load(out["yaml"])["config"]["name"] == "tool_lora"
    assert out["estimated_vram_gb"] > 0 and out["tier_choices"] and out["summary"]


async def test_tool_writes_the_config(settings: Settings, dataset: Path) -> None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("generate_training_config", arguments(dataset))
    out = result.structured_content
    assert out is not None and out["written"] is True
    assert Path(out["config_path"]).read_text(encoding="utf-8") == out["yaml"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"steps": 5}, "steps"), ({"trigger_word": "a/b"}, "trigger_word"), ({"output_folder": "/etc"}, "output_folder")],
)
async def test_tool_errors_name_the_field_and_the_fix(
    settings: Settings, dataset: Path, extra: dict[str, object], field: str
) -> None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("generate_training_config", arguments(dataset, **extra))
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert field in text and "Next:" in text


def test_cli_config_writes_and_prints_the_path(
    dataset: Path, root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)
    code = main(["config", "--name", "cli_lora", "--dataset-folder", "dataset", "--trigger-word", TRIGGER,
                 "--vram-gb", "12", "--resolutions", "1024x1024,768x1024", "--no-cache-latents",
                 "--sample-prompt", "[trigger] on a beach"])  # fmt: skip
    out = capsys.readouterr().out
    path = root / "lora-mcp" / "configs" / "cli_lora.yaml"
    assert code == 0 and f"{path}: written" in out and "warning: resolutions: converted" in out
    process = yaml.safe_load(path.read_text(encoding="utf-8"))["config"]["process"][0]
    assert process["datasets"][0]["resolution"] == [896, 1024]
    assert process["datasets"][0]["cache_latents_to_disk"] is False
    assert process["sample"]["samples"] == [{"prompt": "[trigger] on a beach"}]


def test_cli_config_json_dry_run(dataset: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "--name", "j", "--dataset-folder", str(dataset), "--trigger-word", TRIGGER,
                 "--vram-gb", "24", "--dry-run", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["written"] is False and not (root / "lora-mcp" / "configs" / "j.yaml").exists()


def test_cli_config_bad_value_exits_2_naming_the_field(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "--name", "j", "--dataset-folder", str(dataset), "--trigger-word", TRIGGER,
                 "--vram-gb", "24", "--rank", "999"])  # fmt: skip
    assert code == 2 and "rank" in capsys.readouterr().err
