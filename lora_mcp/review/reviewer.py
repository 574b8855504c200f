"""The LLM reviewer: a pydantic-ai agent whose output is a typed review of one caption.

Any OpenAI-compatible server works (Ollama's /v1, vLLM, LM Studio, llama.cpp) as does OpenAI itself: the model is
`OpenAIChatModel(name, provider=OpenAIProvider(base_url, api_key))` from settings. Imported only by the worker.
"""

from __future__ import annotations

import asyncio
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field
from pydantic_ai import Agent, BinaryContent, ModelRetry, PromptedOutput, RunContext
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from lora_mcp.review.models import CaptionItem, Finding, LoraType, Style
from lora_mcp.review.rules import count_trigger
from lora_mcp.settings import Settings

IMAGE_MAX_SIDE = 768
"""Images are shrunk to this before sending: enough to judge a caption, far cheaper than the original."""

CONFIGURE_HINT = (
    "Set LORA_MCP_OPENAI_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama) and LORA_MCP_REVIEW_MODEL "
    "(e.g. qwen2.5vl:7b), or LORA_MCP_OPENAI_API_KEY and LORA_MCP_REVIEW_MODEL for OpenAI, then review again."
)


class LlmReview(BaseModel):
    """The reviewer's answer for one caption."""

    verdict: Literal["ok", "fix"] = Field(description="ok: keep the caption; fix: it should change.")
    issues: list[str] = Field(default_factory=list, description="Short statements of what is wrong (empty if ok).")
    suggested_caption: str | None = Field(
        default=None, description="The complete corrected caption when verdict is fix; null when ok."
    )


@dataclass(frozen=True)
class ReviewRequest:
    """Everything the reviewer is told about one caption."""

    item: CaptionItem
    findings: list[Finding]
    trigger_word: str
    style: Style
    lora_type: LoraType
    image_path: Path | None
    """The image to show the model; None for a text-only review."""


@lru_cache(maxsize=1)
def prompts() -> dict[str, Any]:
    """lora_mcp/prompts/review/reviewer.yaml."""
    text = resources.files("lora_mcp").joinpath("prompts/review/reviewer.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def llm_unavailable(model_name: str | None, settings: Settings) -> str | None:
    """Why no LLM review can run with these settings, or None when it can."""
    if not model_name:
        return "no review model is configured (LORA_MCP_REVIEW_MODEL)"
    if not settings.openai_base_url and not (settings.openai_api_key or os.environ.get("OPENAI_API_KEY")):
        return "neither LORA_MCP_OPENAI_BASE_URL nor an API key (LORA_MCP_OPENAI_API_KEY) is set"
    return None


def build_model(model_name: str, settings: Settings) -> OpenAIChatModel:
    """An OpenAI-compatible chat model from settings (a local server needs no key; any string is sent)."""
    api_key = settings.openai_api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
    provider = OpenAIProvider(base_url=settings.openai_base_url, api_key=api_key)
    return OpenAIChatModel(model_name, provider=provider)


def build_agent(output_mode: Literal["tool", "prompted"] = "tool") -> Agent[str, LlmReview]:
    """The reviewer agent. `tool`: the answer comes as a tool call; `prompted`: as JSON text (servers without tools)."""
    output: Any = LlmReview if output_mode == "tool" else PromptedOutput(LlmReview)
    agent: Agent[str, LlmReview] = Agent(output_type=output, deps_type=str, instructions=prompts()["system"], retries=2)

    @agent.output_validator
    def _check(ctx: RunContext[str], review: LlmReview) -> LlmReview:
        suggestion = (review.suggested_caption or "").strip()
        if review.verdict == "fix" and not suggestion:
            raise ModelRetry("verdict is fix but suggested_caption is empty: give the complete corrected caption.")
        if suggestion and count_trigger(suggestion, ctx.deps) != 1:
            raise ModelRetry(f"suggested_caption must contain the trigger word {ctx.deps!r} exactly once.")
        return review

    return agent


def user_prompt(request: ReviewRequest) -> list[str | BinaryContent]:
    """The user message: the filled-in template, plus the image when one is shown."""
    data = prompts()
    findings = "\n".join(f"- [{f.severity.value}] {f.code}: {f.message}" for f in request.findings) or "- none"
    text = data["user"].format(
        image=request.item.image,
        trigger_word=request.trigger_word,
        lora_type=request.lora_type.value,
        style=request.style.value,
        style_guide=data["styles"][request.style.value],
        caption=request.item.caption or "",
        findings=findings,
    )
    parts: list[str | BinaryContent] = [text]
    if request.image_path is not None:
        parts.append(image_content(request.image_path))
    return parts


def image_content(path: Path) -> BinaryContent:
    """The image, shrunk to IMAGE_MAX_SIDE and sent as JPEG (a data URL on the wire)."""
    from PIL import Image

    with Image.open(path) as img:
        img.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE))
        buffer = io.BytesIO()
        img.convert("RGB").save(buffer, format="JPEG", quality=85)
    return BinaryContent(data=buffer.getvalue(), media_type="image/jpeg")


async def review_caption(agent: Agent[str, LlmReview], model: Model | str, request: ReviewRequest) -> LlmReview:
    """Ask the model about one caption (a suggestion without the trigger word exactly once is sent back)."""
    prompt = await asyncio.to_thread(user_prompt, request)  # decoding a large photo must not stall the loop
    result = await agent.run(prompt, model=model, deps=request.trigger_word)
    return result.output
