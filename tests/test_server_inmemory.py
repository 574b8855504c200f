"""The MCP server in memory, in both protocol modes: the handshake (2025-11-25) and the sessionless default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]


@pytest.mark.parametrize("mode", MODES)
async def test_lists_tools_with_descriptions_and_schemas(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"system_check", "inspect_dataset"} <= set(tools)
    for tool in tools.values():
        assert tool.description, f"{tool.name} has no description for the agent"
        assert tool.output_schema is not None, f"{tool.name} returns no structured output"
    folder = tools["inspect_dataset"].input_schema["properties"]["folder"]
    assert "roots" in folder["description"]
    assert "ctx" not in tools["inspect_dataset"].input_schema["properties"]


@pytest.mark.parametrize("mode", MODES)
async def test_system_check_returns_structured_report(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        result = await client.call_tool("system_check", {})
    assert not result.is_error, result.content
    report = result.structured_content
    assert report["state_dir"] == str(settings.home)
    assert report["roots"] == [str(r) for r in settings.roots]
    assert isinstance(report["gpus"], list)
    assert isinstance(report["problems"], list)
    # AI-Toolkit is not configured in the isolated environment: the report says what to set.
    assert any("LORA_MCP_AI_TOOLKIT_DIR" in p for p in report["problems"])


@pytest.mark.parametrize("mode", MODES)
async def test_path_outside_roots_is_a_tool_error_naming_path_and_roots(
    settings: Settings, tmp_path: Path, mode: str
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    async with Client(build_server(settings), mode=mode) as client:
        result = await client.call_tool("inspect_dataset", {"folder": str(outside)})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert str(outside) in text
    assert str(settings.roots[0]) in text
    assert "LORA_MCP_ROOTS" in text  # the next step for the agent


@pytest.mark.parametrize("mode", MODES)
async def test_missing_folder_inside_root_is_a_tool_error(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        result = await client.call_tool("inspect_dataset", {"folder": "not-there"})
    assert result.is_error
    assert "does not exist" in result.content[0].text  # type: ignore[union-attr]


async def test_instructions_reach_the_client(settings: Settings) -> None:
    async with Client(build_server(settings), mode="legacy") as client:
        assert client.instructions and "system_check" in client.instructions
        assert client.server_info is not None and client.server_info.name == "lora-mcp"


HEAVY = {"torch", "transformers", "pydantic_ai", "langgraph", "PIL", "numpy", "accelerate"}
IMPORT_PROBE = f"""
import sys
import anyio
from mcp import Client
import lora_mcp.cli
import lora_mcp.server.app

lora_mcp.cli.build_parser()  # `lora-mcp serve` builds every subcommand's parser first
server = lora_mcp.server.app.build_server()
after_build = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})


async def session() -> None:
    async with Client(server, mode="legacy") as client:
        await client.list_tools()

anyio.run(session)
after_session = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(after_build, after_session, sep="\\n")
"""


def test_start_up_imports_no_heavy_library() -> None:
    """Clients give up on a server that takes seconds to answer `initialize`: start-up is mcp + pydantic only."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    after_build, after_session = proc.stdout.splitlines()[-2:]
    assert after_build == "[]", f"imported while building the server: {after_build}"
    assert after_session == "[]", f"imported while opening a session and listing tools: {after_session}"


@pytest.mark.parametrize("mode", MODES)
async def test_guided_character_prompt(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        listed = await client.list_prompts()
        assert [p.name for p in listed.prompts] == ["train_character_lora"]
        prompt = await client.get_prompt("train_character_lora", {"folder": "/data/cat", "trigger_word": "ohwx"})
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert 'inspect_dataset(folder="/data/cat", trigger_word="ohwx")' in text
    for tool in (
        "system_check",
        "caption_images",
        "review_captions",
        "generate_training_config",
        "start_training",
        "wait_for_job",
        "export_lora",
    ):
        assert tool in text
    assert 'vram_gb="auto"' in text
