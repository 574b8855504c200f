"""Build the MCPServer: one place that wires settings into the tool modules."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server import MCPServer

from lora_mcp import __version__
from lora_mcp.settings import Settings, get_settings

INSTRUCTIONS = """\
lora-mcp takes a folder of images to a trained Z-Image LoRA with Ostris AI-Toolkit.
Typical flow: system_check -> inspect_dataset(folder) -> fix what it reports -> generate_training_config ->
start_training -> wait_for_job (repeat until the job ends) -> get_job for the LoRA and samples.
Every path must lie inside the configured roots (system_check lists them)."""


@dataclass(frozen=True)
class AppState:
    """What every tool adapter needs; built once per server."""

    settings: Settings


def build_server(settings: Settings | None = None) -> MCPServer:
    """Create the lora-mcp MCPServer with every tool registered."""
    from lora_mcp.server import tools_dataset, tools_system

    settings = settings or get_settings()
    settings.ensure_dirs()
    server = MCPServer("lora-mcp", instructions=INSTRUCTIONS, version=__version__)
    state = AppState(settings=settings)
    tools_system.register(server, state)
    tools_dataset.register(server, state)
    return server
