"""Memory of abandoned streamable-HTTP sessions: RSS of `lora-mcp serve` with and without idle eviction.

Each run starts `python -m lora_mcp serve --transport streamable-http` (the `lora-mcp serve` entry point) on
127.0.0.1 at a free port, with LORA_MCP_HTTP_SESSION_IDLE_SECONDS set, and reads the server's VmRSS from
/proc/PID/status: at start, right after N clients each POST one `initialize` and go away without DELETE, and again
once the idle period has passed (plus a margin); then the same again (--rounds), to show whether memory keeps growing.
/healthz reports how many sessions the server still holds. The "evict" run uses a small idle setting (--idle); the
"off" run uses 1e9 s (eviction effectively off) and waits just as long. Prints a table with ratios. Linux only.
Usage: python benchmarks/bench_http_sessions.py [--sessions 2000] [--idle 20] [--rounds 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
OFF = 1e9
"""An idle setting no run outlives: eviction effectively off."""


@dataclass
class Sample:
    rss_mib: float
    sessions: int | None


@dataclass
class Run:
    idle: float
    samples: list[tuple[str, Sample]]
    """(stage, sample): start, then "after flood k" and "after wait k" for each round."""
    flood_seconds: list[float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    """The process's resident set size (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sample(proc: subprocess.Popen[bytes], base: str) -> Sample:
    sessions = httpx.get(f"{base}/healthz", timeout=10).json().get("sessions")
    return Sample(rss_mib(proc.pid), sessions)


async def flood(base: str, count: int, concurrency: int) -> None:
    """`count` clients that each initialize a session and go away (no DELETE, no GET stream)."""
    todo = iter(range(count))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in todo:
            reply = await client.post(f"{base}/mcp", json=INIT, headers=HEADERS)
            if reply.status_code != 200 or "mcp-session-id" not in reply.headers:
                raise RuntimeError(f"initialize answered {reply.status_code}: {reply.text[:200]}")

    async with httpx.AsyncClient(timeout=30) as client, anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker, client)


def start_server(tmp: Path, idle: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_MCP_")}
    env.update(
        LORA_MCP_HOME=str(tmp / "state"),
        LORA_MCP_ROOTS=str(tmp),
        LORA_MCP_HTTP_SESSION_IDLE_SECONDS=str(idle),
    )
    cmd = [sys.executable, "-m", "lora_mcp", "--log-level", "WARNING", "serve", "--transport", "streamable-http"]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not answer /healthz within 60 s")


def measure(idle: float, wait: float, sessions: int, rounds: int, concurrency: int) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp), idle)
        try:
            run = Run(idle, [("start", sample(proc, base))], [])
            for k in range(1, rounds + 1):
                began = time.perf_counter()
                anyio.run(flood, base, sessions, concurrency)
                run.flood_seconds.append(time.perf_counter() - began)
                run.samples.append((f"after {sessions} sessions, round {k}", sample(proc, base)))
                time.sleep(wait)
                run.samples.append((f"after the {wait:g} s wait, round {k}", sample(proc, base)))
            return run
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000, help="clients that initialize and leave (default 2000)")
    parser.add_argument("--idle", type=float, default=20.0, help="idle setting of the evicting run, s (default 20)")
    parser.add_argument("--margin", type=float, default=3.0, help="extra wait after the idle period, s (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="flood + wait rounds per run (default 2)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients at a time (default 16)")
    args = parser.parse_args()
    wait = args.idle + args.margin
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"{args.sessions} sessions per round, {args.concurrency} at a time; each flood is followed by a {wait:g} s wait"
    )
    evict = measure(args.idle, wait, args.sessions, args.rounds, args.concurrency)
    off = measure(OFF, wait, args.sessions, args.rounds, args.concurrency)
    floods = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(evict.flood_seconds, off.flood_seconds, strict=True))
    print(f"flood seconds per round (evict/off): {floods}")
    print()
    print(f"| stage | evict ({args.idle:g} s): RSS MiB (sessions) | off (1e9 s): RSS MiB (sessions) | evict / off |")
    print("|-------|------------------------------|------------------------------|-------------|")
    start_evict, start_off = evict.samples[0][1].rss_mib, off.samples[0][1].rss_mib
    for (stage, e), (_, o) in zip(evict.samples, off.samples, strict=True):
        ratio = e.rss_mib / o.rss_mib
        print(f"| {stage} | {e.rss_mib:.1f} ({e.sessions}) | {o.rss_mib:.1f} ({o.sessions}) | {ratio:.2f}x |")
    end_evict, end_off = evict.samples[-1][1].rss_mib, off.samples[-1][1].rss_mib
    print()
    print(f"growth over start at the end: evict {end_evict - start_evict:+.1f} MiB, off {end_off - start_off:+.1f} MiB")
    print(f"end / start: evict {end_evict / start_evict:.2f}x, off {end_off / start_off:.2f}x")


if __name__ == "__main__":
    main()
