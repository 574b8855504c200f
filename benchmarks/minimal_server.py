"""The smallest useful MCP server (one tool), the baseline for bench_cold_start.py."""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer("minimal")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    server.run()
