"""A real webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures, for the webhook tests and bench."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Received:
    """One verified request."""

    msg_id: str
    body: str
    payload: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """Records every request whose signature verifies; answers `fail_next` requests with 500 after recording them."""

    port: int
    secret: str = SECRET
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    fail_next: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                except Exception:
                    receiver.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.received.append(Received(headers["webhook-id"], body, payload, time.time()))
                status = 200
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    status = 500
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        return [r.msg_id for r in self.received]

    def unique(self) -> list[Received]:
        """The first copy of every message, in arrival order."""
        seen: set[str] = set()
        out = []
        for r in self.received:
            if r.msg_id not in seen:
                seen.add(r.msg_id)
                out.append(r)
        return out


def body_of(received: Received) -> dict[str, Any]:
    return dict(json.loads(received.body))
