"""Cold start over stdio: spawn to the `tools/list` answer, `lora-mcp serve` vs a one-tool MCPServer.

Runs alternate between the two servers so that both see the same machine state. Prints medians and the ratio
(target: lora-mcp <= 1.3 x the minimal server). Usage: python benchmarks/bench_cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}
REQUESTS = b"".join(
    json.dumps(m).encode() + b"\n"
    for m in (
        INIT,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    )
)


def time_to_tools_list(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning `cmd` to reading its tools/list answer on stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(REQUESTS)
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{cmd} closed stdout before answering tools/list")
            message = json.loads(line)
            if message.get("id") == 2:
                elapsed = time.perf_counter() - start
                if not message["result"]["tools"]:
                    raise RuntimeError(f"{cmd} listed no tools")
                return elapsed
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per server (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        env = {**os.environ, "LORA_MCP_HOME": str(Path(tmp) / "state"), "LORA_MCP_ROOTS": str(root)}
        servers = {
            "lora-mcp serve": [sys.executable, "-m", "lora_mcp", "serve"],
            "minimal MCPServer": [sys.executable, str(HERE / "minimal_server.py")],
        }
        for cmd in servers.values():  # warm the OS file cache and the bytecode caches once
            time_to_tools_list(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.runs):
            for name, cmd in servers.items():
                times[name].append(time_to_tools_list(cmd, env))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"runs: {args.runs} per server, alternating; time from spawn to the tools/list answer over stdio")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:20s} median {medians[name]:.3f} s  min {min(t):.3f} s  max {max(t):.3f} s")
    ratio = medians["lora-mcp serve"] / medians["minimal MCPServer"]
    print(f"ratio lora-mcp / minimal: {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
