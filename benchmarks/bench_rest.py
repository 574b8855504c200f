"""REST API and dashboard figures against a real `lora-mcp serve --transport streamable-http`.

1. Child log line -> browser DOM: a stand-in AI-Toolkit (bench_job_latency's) repaints the bar once per step and
   records `step wall-clock-time` after each write; headless Chromium shows the job page, and a MutationObserver
   records when each step number appears in the DOM. Same clock, so the difference is the latency (target p99 < 250 ms).
2. 100 SSE clients on one running job: the server process's CPU and RSS with 0 and then 100 open event streams.
3. GET /api/v1/jobs/{id} latency under 50 concurrent clients while the job runs, with ApacheBench (`ab`, from
   apache2-utils) when it is installed (a Python client on a small machine measures mostly itself), else httpx.
Usage: python benchmarks/bench_rest.py [--steps 300] [--step-delay 0.2] [--clients 100] [--pollers 50]
Needs chromium on PATH and the playwright package (the dev extra) for part 1; --skip-browser leaves it out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_job_latency import TRAINER, cpu_seconds, percentile, write_config

API = "/api/v1"


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "lora_mcp", "serve", "--transport", "streamable-http", "--port", str(port)]
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text()}")


def start_job(base: str, config: Path) -> str:
    reply = httpx.post(f"{base}{API}/jobs/train", json={"config_path": str(config)}, timeout=30)
    reply.raise_for_status()
    job_id = str(reply.json()["job_id"])
    while httpx.get(f"{base}{API}/jobs/{job_id}").json()["state"] != "running":
        time.sleep(0.05)
    return job_id


OBSERVER = """() => {
  window.__seen = {};
  const el = document.querySelector('[data-testid=step]');
  const record = () => { const s = Number(el.textContent); if (!(s in window.__seen)) window.__seen[s] = Date.now(); };
  new MutationObserver(record).observe(el, {childList: true, characterData: true, subtree: true});
}"""


def browser_latency(base: str, job_id: str, stamps: Path) -> None:
    """Part 1: open the job page, record when each step shows, compare with when the trainer wrote it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{base}/#/jobs/{job_id}")
        page.wait_for_function("() => Number(document.querySelector('[data-testid=step]').textContent) > 0")
        page.evaluate(OBSERVER)
        page.wait_for_function(
            "() => ['succeeded', 'failed', 'cancelled'].includes("
            "document.querySelector('[data-testid=state]').textContent)",
            timeout=0,
        )
        seen = {int(k): v / 1000 for k, v in page.evaluate("() => window.__seen").items()}
        browser.close()
    written = {int(s): float(t) for s, t in (line.split() for line in stamps.read_text().splitlines())}
    latencies = [(seen[s] - t) * 1000 for s, t in written.items() if s in seen]
    print(f"[1] log line -> DOM: {len(latencies)} steps seen of {len(written)} written")
    print(
        f"    latency ms: p50 {percentile(latencies, 50):.1f}  p90 {percentile(latencies, 90):.1f}  "
        f"p99 {percentile(latencies, 99):.1f}  max {max(latencies):.1f}  mean {statistics.mean(latencies):.1f}"
    )


async def sse_clients(base: str, job_id: str, pid: int, clients: int, seconds: float) -> None:
    """Part 2: the server's CPU and RSS with no stream open, then with `clients` streams following the job."""
    cpu0, rss0 = cpu_seconds(pid), rss_mib(pid)
    await asyncio.sleep(seconds)
    idle_cpu = (cpu_seconds(pid) - cpu0) / seconds
    counts = [0] * clients
    limits = httpx.Limits(max_connections=clients + 10)

    async def reader(i: int, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", f"{API}/jobs/{job_id}/events", params={"after": -1}) as reply:
            async for line in reply.aiter_lines():
                if line.startswith("id:"):
                    counts[i] += 1

    async with httpx.AsyncClient(base_url=base, timeout=None, limits=limits) as http:
        tasks = [asyncio.create_task(reader(i, http)) for i in range(clients)]
        await asyncio.sleep(2)  # all connected
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        start_counts = sum(counts)
        await asyncio.sleep(seconds)
        busy_cpu = (cpu_seconds(pid) - cpu1) / (time.monotonic() - t1)
        events = sum(counts) - start_counts
        rss1 = rss_mib(pid)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"[2] {clients} SSE clients on one running job, {seconds:.0f} s each:")
    print(f"    server CPU: {100 * idle_cpu:.1f}% of a core with 0 streams, {100 * busy_cpu:.1f}% with {clients}")
    print(f"    server RSS: {rss0:.0f} MiB before, {rss1:.0f} MiB with {clients} streams open")
    print(f"    events delivered: {events} ({events / clients:.0f} per client, {events / seconds:.0f}/s in all)")


async def pollers(base: str, path: str, pid: int, count: int, seconds: float) -> None:
    """Part 3: GET `path` latency with `count` clients asking back to back; the server's CPU meanwhile."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def poll(http: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            reply = await http.get(path)
            latencies.append((time.perf_counter() - t0) * 1000)
            reply.raise_for_status()

    limits = httpx.Limits(max_connections=count)
    cpu0 = cpu_seconds(pid)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        await asyncio.gather(*(poll(http) for _ in range(count)))
    cpu = (cpu_seconds(pid) - cpu0) / seconds
    print(f"[3] GET {path} with {count} concurrent clients: {len(latencies)} requests in {seconds:.0f} s")
    print(f"    server CPU {100 * cpu:.0f}% of a core, {1000 * cpu * seconds / len(latencies):.1f} ms CPU per request")
    print(
        f"    latency ms: p50 {percentile(latencies, 50):.1f}  p90 {percentile(latencies, 90):.1f}  "
        f"p99 {percentile(latencies, 99):.1f}  max {max(latencies):.1f}  ({len(latencies) / seconds:.0f} req/s)"
    )


def ab_pollers(base: str, path: str, pid: int, count: int, seconds: float) -> None:
    """Part 3 with ApacheBench (`ab`, C): the client costs little, so the figures are the server's."""
    cpu0 = cpu_seconds(pid)
    cmd = ["ab", "-q", "-k", "-c", str(count), "-t", str(seconds), "-n", "10000000", f"{base}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = (cpu_seconds(pid) - cpu0) / seconds
    lines = out.splitlines()
    done = next(line.split()[-1] for line in lines if line.startswith("Complete requests"))
    rate = next(line.split()[3] for line in lines if line.startswith("Requests per second"))
    pct = {line.split()[0]: line.split()[1] for line in lines if line.strip()[:3].rstrip("%").isdigit() and "%" in line}
    print(f"[3] GET {path} with {count} concurrent clients (ab -k): {done} requests in {seconds:.0f} s, {rate} req/s")
    print(f"    latency ms: p50 {pct.get('50%')}  p90 {pct.get('90%')}  p99 {pct.get('99%')}  max {pct.get('100%')}")
    print(f"    server CPU {100 * cpu:.0f}% of a core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--step-delay", type=float, default=0.2)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        toolkit, root, stamps = tmp / "aitk", tmp / "root", tmp / "stamps.txt"
        toolkit.mkdir()
        root.mkdir()
        (toolkit / "run.py").write_text(TRAINER)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LORA_MCP_")},
            "LORA_MCP_HOME": str(tmp / "state"),
            "LORA_MCP_ROOTS": str(root),
            "LORA_MCP_AI_TOOLKIT_DIR": str(toolkit),
            "LORA_MCP_AI_TOOLKIT_PYTHON": sys.executable,
            "LORA_MCP_TRAINER_ENV_PASSTHROUGH": "BENCH_*",
            "BENCH_STEP_DELAY": str(args.step_delay),
            "BENCH_STAMPS": str(stamps),
        }
        os.environ.update(env)
        config = write_config(root, args.steps)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(env, port, tmp / "server.log")
        try:
            if not args.skip_browser:
                browser_latency(base, start_job(base, config), stamps)
            job_id = start_job(base, config)
            asyncio.run(sse_clients(base, job_id, proc.pid, args.clients, args.seconds))
            for path in (f"{API}/jobs/{job_id}", "/healthz"):  # /healthz: the HTTP stack alone, for comparison
                if shutil.which("ab"):
                    ab_pollers(base, path, proc.pid, args.pollers, args.seconds)
                else:
                    asyncio.run(pollers(base, path, proc.pid, args.pollers, args.seconds))
            httpx.post(f"{base}{API}/jobs/{job_id}/cancel")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
