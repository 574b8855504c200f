"""Helpers for the review tests: a stub OpenAI-compatible server on 127.0.0.1 and small caption folders."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image

TRIGGER = "ohwx"

Reply = Callable[[str, str, str], dict[str, Any]]
"""(image, trigger word, caption) -> the review the stub answers."""


def default_reply(image: str, trigger: str, caption: str) -> dict[str, Any]:
    return {
        "verdict": "fix",
        "issues": ["stub: tighten the wording"],
        "suggested_caption": f"{trigger}, stub caption of {image}",
    }


@dataclass
class SeenRequest:
    """What the stub saw in one chat completion request."""

    image: str
    has_image: bool
    image_url_prefix: str
    has_tools: bool
    model: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 stalls a burst of 8 connections by a 1 s SYN retry


class StubLLM:
    """A minimal /v1/chat/completions: tool_calls when the request has tools, JSON text otherwise.

    It counts requests per image file named in the prompt, can wait `latency` seconds per request, and after
    `slow_after` requests makes every further request wait `slow_latency` (until `release()`).
    """

    def __init__(self, latency: float = 0.0, reply: Reply = default_reply) -> None:
        self.latency = latency
        self.reply = reply
        self.slow_after: int | None = None
        self.slow_latency = 60.0
        self.seen: list[SeenRequest] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r.image for r in self.seen)

    def __enter__(self) -> StubLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        """Stop slowing down."""
        self.slow_after = None
        self.released.set()

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        text, urls = "", []
        for message in body.get("messages", []):
            content = message.get("content")
            parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
            for part in parts:
                if part.get("type") == "text":
                    text += part["text"] + "\n"
                elif part.get("type") == "image_url":
                    urls.append(part["image_url"]["url"])
        image = _field(text, "Image file")
        caption_match = re.search(r"Current caption: <<<(.*?)>>>", text, re.S)
        tools = body.get("tools") or []
        with self.lock:
            self.seen.append(
                SeenRequest(image, bool(urls), urls[0][:23] if urls else "", bool(tools), str(body.get("model")))
            )
            slow = self.slow_after is not None and len(self.seen) > self.slow_after
        if slow:
            self.released.wait(self.slow_latency)
        elif self.latency:
            time.sleep(self.latency)
        review = json.dumps(self.reply(image, _field(text, "Trigger word"), caption_match[1] if caption_match else ""))
        message: dict[str, Any] = {"role": "assistant", "content": review}
        if tools:
            function = {"name": tools[0]["function"]["name"], "arguments": review}
            call = {"id": "call_1", "type": "function", "function": function}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                data = json.dumps(stub._answer(body)).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed while we slept
                    pass

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", text, re.M)
    return match[1].strip() if match else ""


def make_captioned_folder(root: Path, captions: dict[str, str | None], name: str = "dataset") -> Path:
    """A folder of tiny PNGs; `captions` maps image name to caption text (None: no caption file)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, caption) in enumerate(captions.items()):
        Image.new("RGB", (32, 24), (i * 37 % 256, 90, 160)).save(folder / image)
        if caption is not None:
            (folder / image).with_suffix(".txt").write_text(caption, encoding="utf-8")
    return folder


def numbered_captions(n: int) -> dict[str, str | None]:
    """n distinct captions, each with a meta phrase so every one needs a fix."""
    return {f"img_{i:03d}.png": f"This image shows {TRIGGER}, a person in scene number {i}" for i in range(n)}
