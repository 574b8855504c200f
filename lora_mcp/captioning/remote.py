"""Backends that call a VLM server: Ollama's native chat API and any OpenAI-compatible /v1/chat/completions.

Both share one policy: a bounded number of requests in flight, a timeout per request, and retries with exponential
backoff for timeouts, dropped connections, 429 and 5xx. A 4xx about one image fails that image only; an unknown
model or a server that stays unreachable stops the job (nothing else could work).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image
from pydantic import BaseModel, ValidationError

from lora_mcp.captioning.base import CaptionBackendError, CaptionResult, ItemFailed, encode_jpeg
from lora_mcp.captioning.params import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P


@dataclass(frozen=True)
class RemotePolicy:
    """How hard to push a VLM server and how patiently to retry it."""

    concurrency: int = 4
    timeout_s: float = 120.0
    retries: int = 2
    backoff_s: float = 1.0
    max_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P


class Transient(Exception):
    """Worth retrying: timeout, dropped connection, 429, 5xx."""


class Unreachable(Transient):
    """The server refused the connection; after the retries the whole job stops."""


class ItemRejected(Exception):
    """The server refused this one request (e.g. 400 for an image it cannot read)."""


class RemoteCaptioner:
    """Shared concurrency and retry loop; subclasses implement `request`."""

    backend = "remote"

    def __init__(self, model: str, system_prompt: str, policy: RemotePolicy) -> None:
        self.model = model
        self.system_prompt = system_prompt
        self.policy = policy
        self.batch_size = max(1, policy.concurrency)
        self._pool = ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix=f"caption-{self.backend}")

    def request(self, jpeg: bytes, prompt: str) -> str:
        """One caption request; raises Transient, Unreachable, ItemRejected or CaptionBackendError."""
        raise NotImplementedError

    def caption(self, images: Sequence[Image.Image], prompt: str) -> list[CaptionResult]:
        """Caption the batch with up to `concurrency` requests in flight."""
        futures = [self._pool.submit(self._with_retries, encode_jpeg(image), prompt) for image in images]
        return [f.result() for f in futures]

    def _with_retries(self, jpeg: bytes, prompt: str) -> CaptionResult:
        attempts = self.policy.retries + 1
        for attempt in range(attempts):
            try:
                return self.request(jpeg, prompt)
            except ItemRejected as exc:
                return ItemFailed(f"{self.backend} refused the image: {exc}")
            except Transient as exc:
                if attempt + 1 == attempts:
                    if isinstance(exc, Unreachable):
                        raise CaptionBackendError(
                            f"The {self.backend} server is unreachable: {exc}",
                            code="backend_unreachable",
                            hint=f"Start the {self.backend} server or fix its URL setting, then run caption_images "
                            "again (captions already written are kept).",
                        ) from exc
                    return ItemFailed(f"{self.backend} failed {attempts} times: {exc}")
                time.sleep(self.policy.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop sending; requests in flight are abandoned."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _status_error(backend: str, model: str, status: int, body: str) -> Exception:
    if status == 429 or status >= 500:
        return Transient(f"HTTP {status}: {body[:200]}")
    if status == 404 or "not found" in body.lower():
        return CaptionBackendError(
            f"The {backend} server does not know the model {model!r} (HTTP {status}): {body[:200]}",
            code="model_not_found",
            hint="Pull or load the model on the server (e.g. `ollama pull qwen2.5vl:7b`), or pass model=...",
        )
    if status in (401, 403):
        return CaptionBackendError(
            f"The {backend} server refused the credentials (HTTP {status}).",
            code="config_error",
            hint="Set LORA_MCP_OPENAI_API_KEY to a key the server accepts.",
        )
    return ItemRejected(f"HTTP {status}: {body[:200]}")


class OllamaCaptioner(RemoteCaptioner):
    """Ollama's native /api/chat through the official client; images go as raw base64."""

    backend = "ollama"

    def __init__(self, model: str, system_prompt: str, policy: RemotePolicy, host: str) -> None:
        super().__init__(model, system_prompt, policy)
        try:
            import ollama
        except ImportError as exc:
            raise CaptionBackendError(
                "The ollama backend needs the `ollama` package.",
                code="missing_dependency",
                hint="Install it with `pip install 'lora-mcp[caption]'`.",
            ) from exc
        self._ollama = ollama
        self._client = ollama.Client(host=host, timeout=policy.timeout_s)

    def request(self, jpeg: bytes, prompt: str) -> str:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": prompt, "images": [jpeg]},
        ]
        options = {
            "temperature": self.policy.temperature,
            "top_p": self.policy.top_p,
            "num_predict": self.policy.max_tokens,
        }
        try:
            reply = self._client.chat(model=self.model, messages=messages, options=options)
        except self._ollama.ResponseError as exc:
            raise _status_error(self.backend, self.model, exc.status_code, str(exc.error)) from exc
        except ConnectionError as exc:
            raise Unreachable(str(exc)) from exc
        except httpx.TransportError as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        return str(reply.message.content or "")

    def close(self) -> None:
        super().close()
        self._client._client.close()


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Completion(BaseModel):
    choices: list[_Choice]


class OpenAICaptioner(RemoteCaptioner):
    """POST {base_url}/chat/completions with the image as a data URL (vLLM, LM Studio, llama.cpp, Ollama /v1)."""

    backend = "openai"

    def __init__(
        self, model: str, system_prompt: str, policy: RemotePolicy, base_url: str, api_key: str | None
    ) -> None:
        super().__init__(model, system_prompt, policy)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url, timeout=policy.timeout_s, headers=headers)

    def request(self, jpeg: bytes, prompt: str) -> str:
        data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system_prompt},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": prompt},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                },
            ],
            "max_tokens": self.policy.max_tokens,  # llama.cpp-style servers read max_tokens only
            "temperature": self.policy.temperature,
            "top_p": self.policy.top_p,
        }
        try:
            response = self._client.post("chat/completions", json=body)
        except httpx.ConnectError as exc:
            raise Unreachable(str(exc)) from exc
        except httpx.TransportError as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise _status_error(self.backend, self.model, response.status_code, response.text)
        try:
            completion = _Completion.model_validate_json(response.content)
            return completion.choices[0].message.content or ""
        except (ValidationError, IndexError) as exc:
            raise ItemRejected(f"unexpected reply: {response.text[:200]}") from exc

    def close(self) -> None:
        super().close()
        self._client.close()
