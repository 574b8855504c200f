"""GPU hand-off against stub ComfyUI and Ollama servers on 127.0.0.1 that record every request, end to end through
the real manager (as `open_manager` wires it) and the fake AI-Toolkit."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, write_config

from lora_mcp import gpu_handoff
from lora_mcp.assembly import open_manager
from lora_mcp.gpu_handoff import gpu_handoff_hooks, release_gpu_memory
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobState
from lora_mcp.jobs.status import job_status
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import Settings, get_settings
from lora_mcp.training.service import start_training
from lora_mcp.training.trainjob import TrainKind

LOADED = [
    {"name": "qwen2.5vl:7b", "model": "qwen2.5vl:7b", "size": 9_000_000_000, "size_vram": 8_100_000_000},
    {"name": "llama3.2:3b", "model": "llama3.2:3b", "size": 3_000_000_000, "size_vram": 2_900_000_000},
]


@dataclass
class Stub:
    """A tiny HTTP service: canned replies per (method, path), an optional delay, and a record of what it got."""

    routes: dict[tuple[str, str], Any]
    delay: float = 0.0
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def start_stub(stub: Stub) -> Stub:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            stub.requests.append((self.command, self.path, json.loads(raw) if raw else None))
            time.sleep(stub.delay)
            reply = stub.routes.get((self.command, self.path))
            if reply is None:
                self.send_error(404)
                return
            body = b"" if reply == "" else json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *_args: object) -> None:
            pass

    stub.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.server.daemon_threads = True
    threading.Thread(target=stub.server.serve_forever, daemon=True).start()
    return stub


@pytest.fixture
def comfyui() -> Iterator[Stub]:
    """ComfyUI's /free answers 200 with an empty body, as ComfyUI's server does."""
    stub = start_stub(Stub(routes={("POST", "/free"): ""}))
    yield stub
    assert stub.server is not None
    stub.server.shutdown()
    stub.server.server_close()


@pytest.fixture
def ollama() -> Iterator[Stub]:
    """Ollama with two loaded models; /api/generate with keep_alive 0 answers like an unload."""
    stub = start_stub(
        Stub(
            routes={
                ("GET", "/api/ps"): {"models": LOADED},
                ("POST", "/api/generate"): {"model": "x", "done": True, "done_reason": "unload"},
            }
        )
    )
    yield stub
    assert stub.server is not None
    stub.server.shutdown()
    stub.server.server_close()


def closed_port_url() -> str:
    """A URL nothing listens on (the port was just free), so a connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def handoff_settings(monkeypatch: pytest.MonkeyPatch, comfyui_url: str, ollama_url: str, **flags: str) -> Settings:
    monkeypatch.setenv("LORA_MCP_COMFYUI_URL", comfyui_url)
    monkeypatch.setenv("LORA_MCP_OLLAMA_URL", ollama_url)
    monkeypatch.setenv("LORA_MCP_FREE_COMFYUI_BEFORE_GPU_JOBS", flags.get("comfyui", "true"))
    monkeypatch.setenv("LORA_MCP_FREE_OLLAMA_BEFORE_GPU_JOBS", flags.get("ollama", "true"))
    monkeypatch.setenv("LORA_MCP_GPU_HANDOFF_TIMEOUT", flags.get("timeout", "2"))
    get_settings.cache_clear()
    return get_settings()


def run_job(manager: JobManager, settings: Settings, shared_images: Path) -> JobRecord:
    config = write_config(settings, shared_images, steps=100)
    job = wait_final(manager, start_training(manager, str(config)).job_id)
    assert job.state == JobState.SUCCEEDED, manager.tail(job.id, 30)
    return job


def test_release_sends_the_documented_requests(monkeypatch: pytest.MonkeyPatch, comfyui: Stub, ollama: Stub) -> None:
    settings = handoff_settings(monkeypatch, comfyui.url + "/", ollama.url)
    lines = release_gpu_memory(settings)
    assert comfyui.requests == [("POST", "/free", {"unload_models": True, "free_memory": True})]
    assert ollama.requests == [
        ("GET", "/api/ps", None),
        ("POST", "/api/generate", {"model": "qwen2.5vl:7b", "keep_alive": 0}),
        ("POST", "/api/generate", {"model": "llama3.2:3b", "keep_alive": 0}),
    ]
    assert lines == [
        f"ComfyUI at {comfyui.url}: asked to unload its models and free GPU memory (HTTP 200).",
        f"Ollama at {ollama.url}: asked to unload qwen2.5vl:7b, held 8.1 GB of GPU memory.",
        f"Ollama at {ollama.url}: asked to unload llama3.2:3b, held 2.9 GB of GPU memory.",
    ]


def test_gpu_job_hands_off_before_the_trainer_starts(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path, comfyui: Stub, ollama: Stub
) -> None:
    handoff_settings(monkeypatch, comfyui.url, ollama.url)
    settings = use_fake_aitk(monkeypatch)
    manager = open_manager(settings)  # the wiring the server and the CLI use
    job = run_job(manager, settings, shared_images)
    assert [r[1] for r in comfyui.requests] == ["/free"]
    assert [r[1] for r in ollama.requests] == ["/api/ps", "/api/generate", "/api/generate"]
    log = (job.job_dir / "log.txt").read_text()
    first_trainer_line = log.index("Running 1 job")
    ours = [line for line in log.splitlines() if line.startswith("lora-mcp: ")]
    assert len(ours) == 3 and all(log.index(line) < first_trainer_line for line in ours), log[:2000]
    assert "ComfyUI at" in ours[0] and "qwen2.5vl:7b" in ours[1]
    status = job_status(manager, manager.get(job.id))
    assert status.launch_notes == [line.removeprefix("lora-mcp: ") for line in ours]


def test_services_down_do_not_stop_the_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    comfy_url, ollama_url = closed_port_url(), closed_port_url()
    handoff_settings(monkeypatch, comfy_url, ollama_url)
    settings = use_fake_aitk(monkeypatch)
    manager = open_manager(settings)
    started = time.monotonic()
    job = run_job(manager, settings, shared_images)
    assert time.monotonic() - started < 60
    notes = job_status(manager, manager.get(job.id)).launch_notes
    assert notes[0].startswith(f"ComfyUI at {comfy_url}: could not ask it to free GPU memory: not reachable (")
    assert notes[0].endswith("The job starts anyway.")
    assert notes[1].startswith(f"Ollama at {ollama_url}: could not list its loaded models: not reachable (")
    log = (job.job_dir / "log.txt").read_text()
    assert f"lora-mcp: {notes[0]}" in log and f"lora-mcp: {notes[1]}" in log


def test_disabled_hand_off_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path, comfyui: Stub, ollama: Stub
) -> None:
    handoff_settings(monkeypatch, comfyui.url, ollama.url, comfyui="false", ollama="false")
    settings = use_fake_aitk(monkeypatch)
    assert gpu_handoff_hooks(settings) == []
    manager = open_manager(settings)
    job = run_job(manager, settings, shared_images)
    assert comfyui.requests == [] and ollama.requests == []
    assert "lora-mcp:" not in (job.job_dir / "log.txt").read_text()
    assert job_status(manager, manager.get(job.id)).launch_notes == []


def test_defaults_are_off_and_comfyui_without_url_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert not settings.free_comfyui_before_gpu_jobs and not settings.free_ollama_before_gpu_jobs
    assert gpu_handoff_hooks(settings) == []
    monkeypatch.setenv("LORA_MCP_FREE_COMFYUI_BEFORE_GPU_JOBS", "1")
    get_settings.cache_clear()
    assert release_gpu_memory(get_settings()) == [
        "ComfyUI: not asked to free GPU memory, LORA_MCP_COMFYUI_URL is not set."
    ]


def test_slow_services_time_out_within_the_budget(monkeypatch: pytest.MonkeyPatch, comfyui: Stub, ollama: Stub) -> None:
    comfyui.delay = ollama.delay = 3.0
    settings = handoff_settings(monkeypatch, comfyui.url, ollama.url, timeout="0.3")
    started = time.monotonic()
    lines = release_gpu_memory(settings)
    assert time.monotonic() - started < 2.0
    assert lines[0].endswith("could not ask it to free GPU memory: no answer within 0.3 s. The job starts anyway.")
    assert "could not list its loaded models: no answer within 0.3 s" in lines[1]


def test_the_whole_hand_off_stops_when_its_budget_is_spent(
    monkeypatch: pytest.MonkeyPatch, comfyui: Stub, ollama: Stub
) -> None:
    monkeypatch.setattr(gpu_handoff, "HANDOFF_BUDGET_SECONDS", 0.5)
    ollama.routes[("GET", "/api/ps")] = {"models": LOADED * 5}
    ollama.delay = 0.2
    settings = handoff_settings(monkeypatch, comfyui.url, ollama.url, comfyui="false")
    started = time.monotonic()
    lines = release_gpu_memory(settings)
    assert time.monotonic() - started < 1.5
    assert any("the hand-off budget is spent" in line for line in lines)
    assert len(ollama.requests) < 1 + 10


def test_ollama_errors_and_odd_replies_are_reported(monkeypatch: pytest.MonkeyPatch, ollama: Stub) -> None:
    settings = handoff_settings(monkeypatch, closed_port_url(), ollama.url, comfyui="false")
    del ollama.routes[("POST", "/api/generate")]
    lines = release_gpu_memory(settings)
    assert lines[0].startswith(f"Ollama at {ollama.url}: could not unload qwen2.5vl:7b, held 8.1 GB")
    assert "HTTP 404" in lines[0]
    ollama.routes[("GET", "/api/ps")] = {"models": "not a list"}
    assert release_gpu_memory(settings) == [f"Ollama at {ollama.url}: no model loaded, nothing to free."]


def test_a_failing_hook_never_stops_the_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch)
    seen: list[str] = []

    def explode(job: JobRecord) -> list[str]:
        seen.append(job.id)
        raise RuntimeError("boom")

    manager = JobManager(settings, [TrainKind()], poll_interval=0.05, before_gpu_launch=[explode])
    job = run_job(manager, settings, shared_images)
    assert seen == [job.id]
    assert "lora-mcp: pre-launch hook explode failed: boom\n" in (job.job_dir / "log.txt").read_text()
    assert new_manager(settings).before_gpu_launch == []
