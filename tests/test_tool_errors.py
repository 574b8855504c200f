"""Tool errors carry the text an agent reads AND a structured error object it can branch on (code, retryable, field,
hint) in `_meta["lora-mcp/error"]`, in both protocol modes. No structuredContent on errors: TS-SDK clients (the
Inspector) would validate it against the tool's outputSchema and fail the call (see lora_mcp.server.errors).

`server()` applies `structured_tool_errors` as build_server is to (idempotent: a no-op once build_server does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from training_fixtures import TRIGGER, make_dataset

from lora_mcp.server.app import build_server
from lora_mcp.server.errors import ERROR_META_KEY, structured_tool_errors
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]


def server(settings: Settings) -> MCPServer:
    """The lora-mcp server with structured tool errors."""
    return structured_tool_errors(build_server(settings))


@pytest.fixture
def anyio_backend() -> str:
    """The in-memory client runs on asyncio."""
    return "asyncio"


async def call(settings: Settings, mode: str, tool: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Call one tool that must fail; return its text and its structured error."""
    async with Client(server(settings), mode=mode) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is None
    assert result.meta is not None
    error = result.meta[ERROR_META_KEY]
    assert set(error) == {"code", "retryable", "field", "hint", "message"}
    assert text == f"Error executing tool {tool}: {error['message']} Next: {error['hint']}"  # the SDK's text
    return text, error


@pytest.mark.parametrize("mode", MODES)
async def test_invalid_argument(settings: Settings, root: Path, mode: str) -> None:
    (root / "set").mkdir()
    _, error = await call(settings, mode, "caption_images", {"folder": str(root / "set"), "caption_ext": "png"})
    assert error["code"] == "invalid_input" and error["retryable"] is False and error["field"] == "caption_ext"
    assert "'png'" in error["message"] and "'txt'" in error["hint"]


@pytest.mark.parametrize("mode", MODES)
async def test_path_outside_the_roots(settings: Settings, tmp_path: Path, mode: str) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    text, error = await call(settings, mode, "inspect_dataset", {"folder": str(outside)})
    assert error["code"] == "path_not_allowed" and error["retryable"] is False
    assert str(outside) in error["message"] and "LORA_MCP_ROOTS" in text


@pytest.mark.parametrize("mode", MODES)
async def test_missing_job(settings: Settings, mode: str) -> None:
    _, error = await call(settings, mode, "get_job", {"job_id": "20990101-000000-abcdef"})
    assert error["code"] == "not_found" and error["retryable"] is False and error["field"] == "job_id"
    _, waited = await call(settings, mode, "wait_for_job", {"job_id": "20990101-000000-abcdef", "timeout_seconds": 0})
    assert waited["code"] == "not_found"


@pytest.mark.parametrize("mode", MODES)
async def test_operation_failure_without_ai_toolkit(
    settings: Settings, root: Path, shared_images: Path, mode: str
) -> None:
    dataset = make_dataset(root, shared_images)
    arguments = {"name": "err_lora", "dataset_folder": str(dataset), "trigger_word": TRIGGER, "vram_gb": 16}
    async with Client(server(settings), mode=mode) as client:
        generated = await client.call_tool("generate_training_config", arguments)
        assert not generated.is_error, generated.content
        config_path = generated.structured_content["config_path"]  # type: ignore[index]
        result = await client.call_tool("start_training", {"config_path": config_path})
    assert result.is_error and result.structured_content is None  # start_training declares an outputSchema
    error = result.meta[ERROR_META_KEY]  # type: ignore[index]
    assert error["code"] == "operation_failed" and error["retryable"] is True
    assert "LORA_MCP_AI_TOOLKIT_DIR" in error["message"] + error["hint"]


async def test_without_the_server_layer_the_text_is_unchanged(settings: Settings, tmp_path: Path) -> None:
    async with Client(build_server(settings)) as plain, Client(server(settings)) as structured:
        arguments = {"folder": str(tmp_path)}
        before = await plain.call_tool("inspect_dataset", arguments)
        after = await structured.call_tool("inspect_dataset", arguments)
    assert before.is_error and after.is_error and before.content == after.content
    assert after.meta is not None and after.meta[ERROR_META_KEY]["code"] == "path_not_allowed"


def test_a_missing_library_is_named_not_a_bare_error() -> None:
    """A core install without an extra: the agent learns which package to install, not 'Error executing tool'."""
    from lora_mcp.server.errors import StructuredToolError, tool_errors

    @tool_errors
    def needs_it() -> None:
        import lora_mcp_no_such_module  # type: ignore[import-not-found]  # noqa: F401

    with pytest.raises(StructuredToolError) as info:
        needs_it()
    assert "lora_mcp_no_such_module" in str(info.value) and "pip install" in str(info.value)
    assert info.value.info.code == "operation_failed" and info.value.info.retryable
