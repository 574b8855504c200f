"""lora-mcp: an MCP server that takes a folder of images to a trained Z-Image LoRA."""

__version__ = "0.1.0"
