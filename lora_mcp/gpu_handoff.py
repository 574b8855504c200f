"""GPU hand-off: before a training job starts, ask ComfyUI and Ollama to release the GPU memory they hold.

Both keep models in VRAM between requests, and a Z-Image LoRA run needs most of a 24 GB card. The requests are
best effort: a service that is down, slow or answers with an error is reported, never a reason to fail the job.
Each request has a short timeout and the whole hand-off stops after `HANDOFF_BUDGET_SECONDS`, well inside the
job manager's start-up grace period. Both services release memory asynchronously: an accepted request means the
unload was asked for, not that it has finished.

- ComfyUI: `POST /free` with `{"unload_models": true, "free_memory": true}` (its server sets both flags on the prompt
  queue, which unloads at its next idle moment).
- Ollama: `GET /api/ps` lists the loaded models, then `POST /api/generate` with `{"model": name, "keep_alive": 0}`
  unloads each one.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from lora_mcp.settings import Settings

HANDOFF_BUDGET_SECONDS = 8.0
MAX_REPLY_BYTES = 1 << 20

# Local services on the stack's network: never route these requests through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HandoffError(Exception):
    """One hand-off request did not get a usable answer."""


class Budget:
    """The time left for the whole hand-off, handed out as per-request timeouts."""

    def __init__(self, per_request: float, total: float | None = None) -> None:
        self.per_request = per_request
        self.deadline = time.monotonic() + (HANDOFF_BUDGET_SECONDS if total is None else total)

    def timeout(self) -> float | None:
        """The timeout for the next request, or None when the budget is spent."""
        left = self.deadline - time.monotonic()
        return min(self.per_request, left) if left > 0.05 else None


def call_json(method: str, url: str, body: dict[str, Any] | None, timeout: float) -> tuple[int, Any]:
    """One JSON request; returns (status, decoded reply or None). Raises HandoffError with a short reason."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            raw = reply.read(MAX_REPLY_BYTES)
            status = reply.status
    except urllib.error.HTTPError as exc:
        raise HandoffError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise HandoffError(f"not reachable ({exc.reason})") from exc
    except TimeoutError as exc:
        raise HandoffError(f"no answer within {timeout:.1f} s") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise HandoffError(f"request failed ({exc})") from exc
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, None


def free_comfyui(base_url: str | None, budget: Budget) -> str:
    """Ask ComfyUI to unload its models and free memory; one line saying what happened."""
    if not base_url:
        return "ComfyUI: not asked to free GPU memory, LORA_MCP_COMFYUI_URL is not set."
    base = base_url.rstrip("/")
    timeout = budget.timeout()
    if timeout is None:
        return f"ComfyUI at {base}: skipped, the {HANDOFF_BUDGET_SECONDS:.0f} s hand-off budget is spent."
    try:
        status, _ = call_json("POST", f"{base}/free", {"unload_models": True, "free_memory": True}, timeout)
    except HandoffError as exc:
        return f"ComfyUI at {base}: could not ask it to free GPU memory: {exc}. The job starts anyway."
    return f"ComfyUI at {base}: asked to unload its models and free GPU memory (HTTP {status})."


def _loaded_models(reply: Any) -> list[tuple[str, int | None]]:
    models = reply.get("models") if isinstance(reply, dict) else None
    found = []
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name") or entry.get("model"), str):
            vram = entry.get("size_vram")
            found.append((str(entry.get("name") or entry.get("model")), vram if isinstance(vram, int) else None))
    return found


def free_ollama(base_url: str, budget: Budget) -> list[str]:
    """Ask Ollama to unload every loaded model; one line per model (or one saying why not)."""
    base = base_url.rstrip("/")
    timeout = budget.timeout()
    if timeout is None:
        return [f"Ollama at {base}: skipped, the {HANDOFF_BUDGET_SECONDS:.0f} s hand-off budget is spent."]
    try:
        _, reply = call_json("GET", f"{base}/api/ps", None, timeout)
    except HandoffError as exc:
        return [f"Ollama at {base}: could not list its loaded models: {exc}. The job starts anyway."]
    models = _loaded_models(reply)
    if not models:
        return [f"Ollama at {base}: no model loaded, nothing to free."]
    lines = []
    for name, vram in models:
        timeout = budget.timeout()
        if timeout is None:
            lines.append(f"Ollama at {base}: did not unload {name}, the hand-off budget is spent.")
            continue
        held = f", held {vram / 1e9:.1f} GB of GPU memory" if vram else ""
        try:
            call_json("POST", f"{base}/api/generate", {"model": name, "keep_alive": 0}, timeout)
        except HandoffError as exc:
            lines.append(f"Ollama at {base}: could not unload {name}{held}: {exc}. The job starts anyway.")
            continue
        lines.append(f"Ollama at {base}: asked to unload {name}{held}.")
    return lines


def release_gpu_memory(settings: Settings) -> list[str]:
    """Ask the services the settings enable to release GPU memory; what happened, one line each. Never raises."""
    budget = Budget(settings.gpu_handoff_timeout)
    lines = []
    if settings.free_comfyui_before_gpu_jobs:
        lines.append(free_comfyui(settings.comfyui_url, budget))
    if settings.free_ollama_before_gpu_jobs:
        lines.extend(free_ollama(settings.ollama_url, budget))
    return lines


def gpu_handoff_hooks(settings: Settings) -> list[Callable[[Any], list[str]]]:
    """The job manager's pre-launch hooks for GPU jobs: the hand-off when the settings turn it on, else none."""
    if not (settings.free_comfyui_before_gpu_jobs or settings.free_ollama_before_gpu_jobs):
        return []

    def gpu_handoff(_job: Any) -> list[str]:
        return release_gpu_memory(settings)

    return [gpu_handoff]
