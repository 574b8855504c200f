"""MCP prompts: guided flows an agent (or a person picking from a client's prompt menu) can start from."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from pydantic import Field

from lora_mcp.server.app import AppState

CHARACTER_FLOW = """\
Train a character LoRA for Z-Image from the images in {folder}, with the trigger word "{trigger_word}".
Work through these steps with the lora-mcp tools, and tell me what you find at each one:

1. system_check: is there a GPU, is AI-Toolkit installed, is there disk? Stop and tell me if a problem is listed.
2. inspect_dataset(folder="{folder}", trigger_word="{trigger_word}"): fix or report every error. For a character,
   9-12 varied images (faces, angles, light, backgrounds) work best; remove duplicates.
3. If captions are missing: caption_images(folder="{folder}", trigger_word="{trigger_word}"), then wait_for_job until
   it ends.
4. review_captions(folder="{folder}", trigger_word="{trigger_word}"), wait_for_job, then show me the suggested changes
   from the review file; apply_caption_review only what I approve.
5. generate_training_config(name=..., dataset_folder="{folder}", trigger_word="{trigger_word}", vram_gb="{vram_gb}")
   and show me the summary and warnings before going on.
6. start_training(config_path=...), then call wait_for_job repeatedly; report the step, loss and ETA now and then.
   If it fails, read error.hint and tell me what to do; resume_training continues from the last checkpoint.
7. When it succeeds: get_job(include_images=True) to look at the samples, then export_lora if I want it in ComfyUI.
"""


def register(server: MCPServer, state: AppState) -> None:
    """Register the guided prompts."""

    @server.prompt(name="train_character_lora")
    def train_character_lora(
        folder: Annotated[str, Field(description="Folder of images of the character (inside the allowed roots).")],
        trigger_word: Annotated[str, Field(description="A rare word that will call up the character, e.g. 'ohwx'.")],
        vram_gb: Annotated[str, Field(description="GPU memory in GB, or 'auto' to read it from nvidia-smi.")] = "auto",
    ) -> str:
        """A guided flow from a folder of character images to a trained, checked and exported LoRA."""
        return CHARACTER_FLOW.format(folder=folder, trigger_word=trigger_word, vram_gb=vram_gb)
