"""Helpers for the REST and dashboard tests: a real `lora-mcp serve` with the fake trainer, and an SSE reader."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from jobs_fixtures import FAKE_AITK, config_fields
from test_transports import HttpServer, start_http
from training_fixtures import make_dataset

API = "/api/v1"


def fake_trainer_env(step_delay: float) -> dict[str, str]:
    """The server's environment for the fake AI-Toolkit (as `use_fake_aitk` sets it for in-process tests)."""
    return {
        "LORA_MCP_AI_TOOLKIT_DIR": str(FAKE_AITK),
        "LORA_MCP_AI_TOOLKIT_PYTHON": sys.executable,
        "FAKE_AITK_STEP_DELAY": str(step_delay),
        "LORA_MCP_TRAINER_ENV_PASSTHROUGH": "FAKE_AITK_*",
    }


def start_rest_server(
    tmp: Path, transport: str = "streamable-http", step_delay: float = 0.03, **env: str
) -> HttpServer:
    """A real server process on 127.0.0.1 (or `host`) whose trainer is the fake one."""
    return start_http(tmp, transport, **{**fake_trainer_env(step_delay), **env})


def config_body(server: HttpServer, shared_images: Path, name: str, steps: int = 100, **extra: Any) -> dict[str, Any]:
    """A POST /configs body for a small real dataset inside the server's root."""
    dataset = server.root / "dataset"
    if not dataset.is_dir():
        make_dataset(server.root, shared_images)
    return config_fields(dataset, name, steps, **extra)


def start_job(client: httpx.Client, server: HttpServer, shared_images: Path, name: str, steps: int = 100) -> str:
    """Generate a config and start a train job over REST; its id."""
    reply = client.post(f"{API}/configs", json=config_body(server, shared_images, name, steps))
    assert reply.status_code == 200, reply.text
    reply = client.post(f"{API}/jobs/train", json={"config_path": reply.json()["config_path"]})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["job_id"])


def wait_state(client: httpx.Client, job_id: str, states: set[str], timeout: float = 90) -> dict[str, Any]:
    """Poll GET /jobs/{id} until its state is one of `states`."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(f"{API}/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, f"job {job_id} still {status['state']}"
        time.sleep(0.1)


@dataclass
class SseEvent:
    """One server-sent event as a client parses it."""

    id: str | None
    event: str
    data: dict[str, Any]


def read_sse(reply: httpx.Response) -> Iterator[SseEvent]:
    """The events of a streaming response (comments and data-less blocks skipped)."""
    event_id, kind, data = None, "message", []
    for line in reply.iter_lines():
        if not line:
            if data:
                yield SseEvent(event_id, kind, json.loads("\n".join(data)))
            event_id, kind, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)
