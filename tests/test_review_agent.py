"""The reviewer agent (FunctionModel/TestModel) and the workflow in-process: prompts, retries, checkpoints, and the
real OpenAI client path against a stub server on 127.0.0.1 (tool calls and JSON text, images as data URLs)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_ai import BinaryContent, models
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from review_fixtures import TRIGGER, StubLLM, make_captioned_folder, numbered_captions

from lora_mcp.review.models import CaptionItem, LoraType, Style
from lora_mcp.review.params import ReviewParams
from lora_mcp.review.reviewer import ReviewRequest, build_agent, review_caption
from lora_mcp.review.reviewfile import load_review
from lora_mcp.review.runner import make_run, run_review
from lora_mcp.settings import Settings


@pytest.fixture(autouse=True)
def no_real_model_requests() -> Iterator[None]:
    models.ALLOW_MODEL_REQUESTS = False
    yield
    models.ALLOW_MODEL_REQUESTS = True


def user_parts(messages: list[ModelMessage]) -> list[object]:
    first = messages[0]
    assert isinstance(first, ModelRequest)
    prompt = next(p for p in first.parts if isinstance(p, UserPromptPart))
    return list(prompt.content) if isinstance(prompt.content, list) else [prompt.content]


def image_name(messages: list[ModelMessage]) -> str:
    text = str(user_parts(messages)[0])
    return text.split("Image file: ", 1)[1].split("\n", 1)[0]


def answer(info: AgentInfo, review: dict[str, object]) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, review)])


def request(tmp_path: Path, caption: str, use_image: bool = True) -> ReviewRequest:
    folder = make_captioned_folder(tmp_path, {"a.png": caption})
    return ReviewRequest(
        item=CaptionItem("a.png", caption, None, "ok"),
        findings=[],
        trigger_word=TRIGGER,
        style=Style.DESCRIPTIVE,
        lora_type=LoraType.CHARACTER,
        image_path=folder / "a.png" if use_image else None,
    )


def test_prompt_holds_caption_style_and_image(tmp_path: Path) -> None:
    seen: list[list[object]] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(user_parts(messages))
        return answer(info, {"verdict": "ok", "issues": []})

    review = asyncio.run(review_caption(build_agent(), FunctionModel(model), request(tmp_path, "ohwx on a beach")))
    assert review.verdict == "ok"
    text, image = seen[0]
    assert "Current caption: <<<ohwx on a beach>>>" in str(text) and "natural-language sentences" in str(text)
    assert isinstance(image, BinaryContent) and image.media_type == "image/jpeg"


def test_suggestion_without_trigger_is_sent_back(tmp_path: Path) -> None:
    replies = iter(
        [
            {"verdict": "fix", "issues": ["meta"], "suggested_caption": "a woman on a beach"},
            {"verdict": "fix", "issues": ["meta"]},
            {"verdict": "fix", "issues": ["meta"], "suggested_caption": f"{TRIGGER} on a beach"},
        ]
    )
    calls = 0

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        calls += 1
        return answer(info, next(replies))

    review = asyncio.run(review_caption(build_agent(), FunctionModel(model), request(tmp_path, "x", use_image=False)))
    assert review.suggested_caption == f"{TRIGGER} on a beach" and calls == 3


def test_test_model_and_prompted_output(tmp_path: Path) -> None:
    test_model = TestModel(custom_output_args={"verdict": "ok", "issues": [], "suggested_caption": None})
    assert asyncio.run(review_caption(build_agent(), test_model, request(tmp_path, "ohwx"))).verdict == "ok"

    def as_text(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert not info.output_tools
        return ModelResponse(parts=[TextPart(json.dumps({"verdict": "fix", "suggested_caption": f"{TRIGGER}, x"}))])

    review = asyncio.run(review_caption(build_agent("prompted"), FunctionModel(as_text), request(tmp_path, "x")))
    assert review.suggested_caption == f"{TRIGGER}, x"


def run(folder: Path, settings: Settings, model: object, checkpoint: Path, **kw: object) -> dict[str, object]:
    params = ReviewParams(folder=str(folder), trigger_word=TRIGGER, model="fn", **kw)  # type: ignore[arg-type]
    return asyncio.run(run_review(make_run(params, settings, model=model), checkpoint, "thread"))  # type: ignore[arg-type]


def test_killed_run_resumes_from_checkpoint_without_asking_again(
    root: Path, settings: Settings, tmp_path: Path
) -> None:
    folder = make_captioned_folder(root, numbered_captions(10))
    asked: Counter[str] = Counter()

    def failing(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        name = image_name(messages)
        asked[name] += 1
        if sum(asked.values()) > 6:  # the server goes away during the 4th batch of 2
            raise ModelHTTPError(503, "fn", "gone")
        return answer(info, {"verdict": "fix", "issues": ["x"], "suggested_caption": f"{TRIGGER}, {name}"})

    checkpoint = tmp_path / "review.sqlite"
    with pytest.raises(ExceptionGroup) as failed:
        run(folder, settings, FunctionModel(failing), checkpoint, concurrency=2, use_images=False)
    assert failed.value.split(ModelHTTPError)[1] is None, failed.value  # the server going away, nothing else
    first = set(asked)
    asked.clear()

    def fine(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        name = image_name(messages)
        asked[name] += 1
        return answer(info, {"verdict": "ok", "issues": []})

    outputs = run(folder, settings, FunctionModel(fine), checkpoint, concurrency=2, use_images=False)
    summary = outputs["summary"]
    assert isinstance(summary, dict) and summary["resumed"] and summary["reused_reviews"] == 6
    # Batches go in order: 3 finished batches (img_000..005) were checkpointed; the 4th failed and is asked again.
    assert {f"img_{i:03d}.png" for i in range(6)} <= first
    assert asked == Counter({f"img_{i:03d}.png": 1 for i in range(6, 10)})
    doc = load_review(Path(str(outputs["review_file"])))
    assert len(doc.images) == 10 and {i.reviewed_by for i in doc.images} == {"llm"}


def test_bad_answer_is_recorded_and_rules_verdict_kept(root: Path, settings: Settings, tmp_path: Path) -> None:
    folder = make_captioned_folder(root, {"a.png": "This image shows a woman"})

    def nonsense(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return answer(info, {"verdict": "maybe"})

    outputs = run(folder, settings, FunctionModel(nonsense), tmp_path / "c.sqlite")
    entry = load_review(Path(str(outputs["review_file"]))).images[0]
    assert entry.reviewed_by == "rules" and entry.llm_error and entry.verdict == "fix"
    assert entry.suggested_caption == f"{TRIGGER}, woman"


def test_rules_only_when_no_model_is_configured(root: Path, settings: Settings, tmp_path: Path) -> None:
    folder = make_captioned_folder(root, {"a.png": "ohwx on a beach", "b.png": "ohwx on a beach"})
    params = ReviewParams(folder=str(folder), trigger_word=TRIGGER)
    outputs = asyncio.run(run_review(make_run(params, settings), tmp_path / "c.sqlite", "t"))
    summary = outputs["summary"]
    assert summary["reviewed_by"] == {"rules": 2} and summary["by_verdict"] == {"fix": 2}
    assert "LORA_MCP_REVIEW_MODEL" in summary["llm"] and "LORA_MCP_OPENAI_BASE_URL" in summary["llm"]
    assert summary["top_findings"] == [{"code": "duplicate_caption", "count": 2}]


@pytest.mark.parametrize("mode", ["tool", "prompted"])
def test_openai_client_against_stub_server(root: Path, tmp_path: Path, mode: str) -> None:
    models.ALLOW_MODEL_REQUESTS = True  # this one goes over HTTP, to 127.0.0.1 only
    folder = make_captioned_folder(root, numbered_captions(3))
    with StubLLM() as stub:
        settings = Settings(openai_base_url=stub.base_url, review_model="stub-vl")
        params = ReviewParams(folder=str(folder), trigger_word=TRIGGER, model="stub-vl", output_mode=mode)  # type: ignore[arg-type]
        outputs = asyncio.run(run_review(make_run(params, settings), tmp_path / "c.sqlite", "t"))
    assert stub.counts() == Counter({f"img_{i:03d}.png": 1 for i in range(3)})
    assert {(r.has_tools, r.image_url_prefix, r.model) for r in stub.seen} == {
        (mode == "tool", "data:image/jpeg;base64,", "stub-vl")
    }
    doc = load_review(Path(str(outputs["review_file"])))
    assert doc.model == "stub-vl" and doc.images[2].suggested_caption == f"{TRIGGER}, stub caption of img_002.png"
