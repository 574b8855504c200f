"""view_dataset on 1,000 generated images: response size and time for page 1 and a middle page, cold and warm.

The images are bench_inspect.py's (70% JPEG, 30% PNG, 256-1024 px, seeded), generated once into the same cache
folder. Each call goes through an in-memory MCP client (`mcp.Client(build_server(settings))`), so the time
includes the SDK's validation and the base64 of the contact sheet. "Cold" is an empty dataset facts cache (a fresh
LORA_MCP_HOME: every image decoded), "warm" the cache the previous call left. Response bytes are the JSON of the
whole CallToolResult (text part + structured content + base64 image); "sheet" is the JPEG's own size.
Usage: python benchmarks/bench_view_dataset.py [--count N] [--data DIR] [--page-size N]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inspect import generate

from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings


def sizes(result: Any) -> tuple[int, int]:
    """(bytes of the whole result as JSON, bytes of the JPEG contact sheet)."""
    whole = len(result.model_dump_json(by_alias=True, exclude_none=True))
    sheet = sum(len(base64.b64decode(c.data)) for c in result.content if c.type == "image")
    return whole, sheet


async def timed_call(settings: Settings, folder: Path, page: int, page_size: int) -> tuple[float, int, int]:
    """One view_dataset call in a fresh session: seconds, response bytes, sheet bytes."""
    async with Client(build_server(settings), mode="legacy") as client:
        start = time.perf_counter()
        result = await client.call_tool("view_dataset", {"folder": str(folder), "page": page, "page_size": page_size})
        elapsed = time.perf_counter() - start
    if result.is_error:
        raise SystemExit(f"view_dataset failed: {result.content}")
    return (elapsed, *sizes(result))


async def run(folder: Path, count: int, page_size: int) -> None:
    middle = max(1, (count // page_size) // 2)
    rows = []
    with tempfile.TemporaryDirectory() as home:
        for label, page in (("first", 1), ("middle", middle)):
            for cache in ("cold", "warm"):
                if cache == "cold":  # a fresh home each time: no cached facts
                    settings = Settings(home=Path(home) / f"{label}-{page}", roots=[folder.parent])
                rows.append((f"{label} (page {page})", cache, *await timed_call(settings, folder, page, page_size)))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"dataset: {count} images in {folder}, page_size {page_size}")
    print("| page | facts cache | time (s) | response bytes | sheet JPEG bytes |")
    print("|---|---|---|---|---|")
    for name, cache, seconds, whole, sheet in rows:
        print(f"| {name} | {cache} | {seconds:.2f} | {whole:,} | {sheet:,} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=None, help="Cache folder for the generated images.")
    parser.add_argument("--page-size", type=int, default=16)
    args = parser.parse_args()
    folder = args.data or Path(tempfile.gettempdir()) / f"lora-mcp-bench-inspect-{args.count}"
    marker = folder / ".complete"
    if not marker.exists() or marker.read_text() != str(args.count):
        start = time.perf_counter()
        generate(folder, args.count)
        print(f"generated {args.count} images in {folder} ({time.perf_counter() - start:.0f} s)")
    anyio.run(run, folder, args.count, args.page_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
