"""The whole tool surface an agent sees (tools/list): names, required arguments, argument types and enums, compared
with tests/golden/tool_surface.json so that a rename or a changed type is a deliberate, reviewed change.

After an intended change, regenerate the golden file and review its diff:

    LORA_MCP_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_tool_surface.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).parent / "golden" / "tool_surface.json"
UPDATE = os.environ.get("LORA_MCP_UPDATE_GOLDEN") == "1"  # read at import: the autouse fixture clears LORA_MCP_*
MODES = ["legacy", "auto"]


@pytest.fixture
def anyio_backend() -> str:
    """The in-memory client runs on asyncio."""
    return "asyncio"


def shape(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The type of one argument: JSON types, enums, consts, array items, union members (no descriptions, no
    defaults: those may change without renaming anything)."""
    if "$ref" in schema:
        return shape(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    out: dict[str, Any] = {}
    for key in ("type", "enum", "const", "format"):
        if key in schema:
            out[key] = schema[key]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            out[key] = [shape(member, defs) for member in schema[key]]
    if "items" in schema:
        out["items"] = shape(schema["items"], defs)
    if "properties" in schema:
        out["properties"] = {name: shape(sub, defs) for name, sub in schema["properties"].items()}
    return out


async def surface(settings: Settings, mode: str) -> dict[str, Any]:
    """Every tool's name, required arguments and argument shapes, as tools/list returns them."""
    async with Client(build_server(settings), mode=mode) as client:
        tools = (await client.list_tools()).tools
    result: dict[str, Any] = {}
    for tool in tools:
        schema = tool.input_schema
        defs = schema.get("$defs", {})
        result[tool.name] = {
            "required": sorted(schema.get("required", [])),
            "arguments": {name: shape(prop, defs) for name, prop in schema.get("properties", {}).items()},
        }
    return result


def dump(data: dict[str, Any]) -> str:
    """Sorted, indented JSON: a changed tool shows as a small, readable diff."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("mode", MODES)
async def test_tool_surface_matches_golden(settings: Settings, mode: str) -> None:
    text = dump(await surface(settings, mode))
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
        return
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: run LORA_MCP_UPDATE_GOLDEN=1 pytest {Path(__file__).name} and review it")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the tool surface changed: if intended, run LORA_MCP_UPDATE_GOLDEN=1 pytest tests/test_tool_surface.py "
        "and review the diff of tests/golden/tool_surface.json"
    )


async def test_descriptions_are_dedented(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        text = tool.description or ""
        assert text and text == text.strip(), f"{tool.name}: {text!r}"
        assert "\n " not in text and "  " not in text, f"{tool.name}: indented description {text!r}"
