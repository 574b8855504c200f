"""Ollama and OpenAI-compatible backends against a real stub server on 127.0.0.1: request shapes, retries, timeouts,
fatal errors, and a caption job cancelled mid-run."""

from __future__ import annotations

import base64
import io
import socket
from pathlib import Path

import pytest
from caption_fixtures import Reply, StubVLM, caption_manager, make_dataset, stub_vlm
from jobs_fixtures import wait_final, wait_until
from PIL import Image

from lora_mcp.captioning.base import CaptionBackendError, ItemFailed
from lora_mcp.captioning.remote import OllamaCaptioner, OpenAICaptioner, RemotePolicy
from lora_mcp.captioning.service import CaptionRequest, start_captioning
from lora_mcp.jobs.models import JobState
from lora_mcp.settings import Settings, get_settings

__all__ = ["stub_vlm"]

FAST = RemotePolicy(concurrency=2, timeout_s=2.0, retries=2, backoff_s=0.01, max_tokens=77, temperature=0.3)
SYSTEM = "You are a helpful image captioner."


def _image(color: str = "red") -> Image.Image:
    return Image.new("RGB", (64, 48), color)


def _is_jpeg(data: bytes) -> bool:
    return Image.open(io.BytesIO(data)).format == "JPEG"


def test_ollama_native_chat_shape(stub_vlm: StubVLM) -> None:
    captioner = OllamaCaptioner("qwen2.5vl:7b", SYSTEM, FAST, host=stub_vlm.url)
    try:
        assert captioner.caption([_image(), _image("blue")], "Describe.") == [stub_vlm.default.text] * 2
    finally:
        captioner.close()
    path, body = stub_vlm.requests[0]
    assert path == "/api/chat" and body["model"] == "qwen2.5vl:7b" and body["stream"] is False
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM}
    assert user["content"] == "Describe." and len(user["images"]) == 1
    raw = user["images"][0]
    assert not raw.startswith("data:")  # Ollama wants raw base64
    assert _is_jpeg(base64.b64decode(raw))
    assert body["options"]["num_predict"] == 77 and body["options"]["temperature"] == 0.3


def test_openai_data_url_shape(stub_vlm: StubVLM) -> None:
    captioner = OpenAICaptioner("vlm", SYSTEM, FAST, base_url=f"{stub_vlm.url}/v1", api_key="sk-test")
    try:
        assert captioner.caption([_image()], "Describe.") == [stub_vlm.default.text]
    finally:
        captioner.close()
    path, body = stub_vlm.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "vlm" and body["max_tokens"] == 77
    text, image = body["messages"][1]["content"]
    assert text == {"type": "text", "text": "Describe."}
    url = image["image_url"]["url"]
    assert image["type"] == "image_url" and url.startswith("data:image/jpeg;base64,")
    assert _is_jpeg(base64.b64decode(url.split(",", 1)[1]))


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_retries_after_500_then_succeeds(stub_vlm: StubVLM, backend: str) -> None:
    stub_vlm.script = [Reply(status=500, text="overloaded"), Reply(status=503, text="busy")]
    captioner = _make(backend, stub_vlm, RemotePolicy(concurrency=1, retries=2, backoff_s=0.01))
    try:
        assert captioner.caption([_image()], "Describe.") == [stub_vlm.default.text]
    finally:
        captioner.close()
    assert len(stub_vlm.requests) == 3


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_timeouts_are_retried_then_the_image_fails(stub_vlm: StubVLM, backend: str) -> None:
    stub_vlm.default = Reply(delay=0.6)
    captioner = _make(backend, stub_vlm, RemotePolicy(concurrency=1, timeout_s=0.2, retries=1, backoff_s=0.01))
    try:
        [result] = captioner.caption([_image()], "Describe.")
    finally:
        captioner.close()
    assert isinstance(result, ItemFailed) and "2 times" in result.reason and "Timeout" in result.reason
    assert len(stub_vlm.requests) == 2


def test_bad_request_fails_one_image_unknown_model_stops(stub_vlm: StubVLM) -> None:
    stub_vlm.script = [Reply(status=400, text="cannot decode image")]
    captioner = _make("openai", stub_vlm, RemotePolicy(concurrency=1, backoff_s=0.01))
    try:
        first, second = captioner.caption([_image(), _image()], "Describe.")
        assert isinstance(first, ItemFailed) and "400" in first.reason and second == stub_vlm.default.text
        stub_vlm.script = [Reply(status=404, text="model 'nope' not found")]
        with pytest.raises(CaptionBackendError) as info:
            captioner.caption([_image()], "Describe.")
        assert info.value.code == "model_not_found"
    finally:
        captioner.close()


def test_unreachable_server_is_fatal() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    captioner = OllamaCaptioner("m", SYSTEM, RemotePolicy(retries=1, backoff_s=0.01), host=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(CaptionBackendError) as info:
            captioner.caption([_image()], "Describe.")
    finally:
        captioner.close()
    assert info.value.code == "backend_unreachable" and "caption_images" in (info.value.hint or "")


def test_openai_needs_a_base_url_and_model(settings: Settings, tmp_path: Path) -> None:
    from lora_mcp.errors import InvalidInput

    with pytest.raises(InvalidInput, match="LORA_MCP_OPENAI_BASE_URL"):
        start_captioning(caption_manager(settings), CaptionRequest(folder=tmp_path, backend="openai", model="m"))


def test_cancel_mid_run_keeps_written_captions(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path, stub_vlm: StubVLM
) -> None:
    monkeypatch.setenv("LORA_MCP_OPENAI_BASE_URL", f"{stub_vlm.url}/v1")
    get_settings.cache_clear()
    settings = get_settings()
    stub_vlm.default = Reply(text="The image depicts a slow caption.", delay=0.4)
    folder = make_dataset(settings.roots[0], shared_images, corrupt=None)
    manager = caption_manager(settings)
    status = start_captioning(
        manager, CaptionRequest(folder=folder, trigger_word="ohwx", backend="openai", model="vlm", batch_size=1)
    )
    assert manager.get(status.job_id).lane_kind == "cpu"

    def written() -> list[Path]:
        manager.tick()
        return sorted(folder.glob("*.txt"))

    wait_until(lambda: len(written()) >= 2, timeout=30, what="two captions")
    manager.cancel(status.job_id)
    job = wait_final(manager, status.job_id, timeout=30)
    assert job.state == JobState.CANCELLED and job.exit_code == 130, manager.tail(job.id, 20)
    captions = sorted(folder.glob("*.txt"))
    assert 2 <= len(captions) < 8
    assert all(c.read_text(encoding="utf-8") == "ohwx, A slow caption." for c in captions)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no partial temp file


def _make(backend: str, stub: StubVLM, policy: RemotePolicy) -> OllamaCaptioner | OpenAICaptioner:
    if backend == "ollama":
        return OllamaCaptioner("m", SYSTEM, policy, host=stub.url)
    return OpenAICaptioner("m", SYSTEM, policy, base_url=f"{stub.url}/v1", api_key=None)
