"""Tool adapter: generate_training_config."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from lora_mcp.server.app import AppState
from lora_mcp.server.errors import tool_errors
from lora_mcp.server.model_params import with_model_parameters
from lora_mcp.server.progress import thread_progress
from lora_mcp.training.config import LoRATrainingConfig, parse_config
from lora_mcp.training.generate import GeneratedConfig, generate_training_config


def register(server: MCPServer, state: AppState) -> None:
    """Register the training-config tool."""

    @server.tool(name="generate_training_config")
    @tool_errors
    @with_model_parameters(LoRATrainingConfig)
    async def generate_training_config_tool(
        ctx: Context,
        dry_run: Annotated[bool, Field(description="Return the YAML without writing anything.")] = False,
        overwrite: Annotated[bool, Field(description="Replace a different existing config of that name.")] = False,
        **fields: Any,
    ) -> GeneratedConfig:
        """Check a dataset and settings, then write an AI-Toolkit YAML for a Z-Image LoRA (VRAM tier presets)."""
        config = parse_config(fields)

        progress = thread_progress(ctx, "checked")
        run = partial(generate_training_config, config, state.settings, dry_run=dry_run, overwrite=overwrite)
        return await anyio.to_thread.run_sync(partial(run, progress=progress))
