"""Helpers for the caption tests: a dataset copy, a caption job manager, and a stub VLM server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tiny_llava import build_tiny_joycaption

from lora_mcp.captioning.service import CAPTION_KIND
from lora_mcp.jobs.manager import JobManager
from lora_mcp.settings import Settings


@pytest.fixture(scope="session")
def tiny_joycaption(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random JoyCaption-shaped LLaVA saved in a temp folder, built once per test session."""
    return build_tiny_joycaption(tmp_path_factory.mktemp("models") / "tiny-joycaption")


def make_dataset(root: Path, images: Path, name: str = "dataset", corrupt: str | None = "d_broken.png") -> Path:
    """A copy of the shared images inside the root, with a corrupt image sorted into the middle."""
    folder = root / name
    folder.mkdir(parents=True)
    for image in sorted(images.iterdir()):
        shutil.copy(image, folder / image.name)
    if corrupt:
        (folder / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


def caption_manager(settings: Settings, grace: float = 5.0) -> JobManager:
    return JobManager(settings, [CAPTION_KIND], poll_interval=0.05, cancel_grace_seconds=grace)


@dataclass
class Reply:
    """One scripted answer: HTTP status, body text, and a delay before answering."""

    status: int = 200
    text: str = "This image shows a small grey cat on a red chair."
    delay: float = 0.0


@dataclass
class StubVLM:
    """An Ollama + OpenAI-compatible stub: records each request body, answers from a script, then `default`."""

    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append((path, body))
            return self.script.pop(0) if self.script else self.default


def _handler(stub: StubVLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            reply = stub.next_reply(self.path, body)
            time.sleep(reply.delay)
            if reply.status != 200:
                payload: dict[str, Any] = {"error": reply.text}
            elif self.path == "/api/chat":
                payload = {
                    "model": body["model"],
                    "message": {"role": "assistant", "content": reply.text},
                    "done": True,
                }
            else:
                payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}}]}
            data = json.dumps(payload).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

    return Handler


@pytest.fixture
def stub_vlm() -> Iterator[StubVLM]:
    """A running stub server; `stub.url` is its base URL."""
    stub = StubVLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()
