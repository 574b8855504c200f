"""The deterministic caption rules (no LLM)."""

from __future__ import annotations

import pytest
from review_fixtures import TRIGGER

from lora_mcp.review.models import CaptionItem, LoraType, Style, Verdict
from lora_mcp.review.rules import (
    check_caption,
    duplicate_findings,
    estimate_tokens,
    load_rules,
    rules_suggestion,
    rules_verdict,
)

RULES = load_rules()


def codes(caption: str | None, status: str = "ok", lora_type: LoraType = LoraType.CHARACTER, **kw: object) -> list[str]:
    rules = load_rules(**kw) if kw else RULES  # type: ignore[arg-type]
    item = CaptionItem(image="a.png", caption=caption, sha256=None, status=status)
    return [f.code for f in check_caption(item, TRIGGER, rules, Style.TERSE, lora_type)]


def test_clean_caption_has_no_findings() -> None:
    assert codes(f"{TRIGGER}, standing on a beach, red jacket, smiling, golden hour") == []


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("a woman on a beach", ["missing_trigger"]),
        (f"{TRIGGER} and {TRIGGER.upper()} on a beach", ["repeated_trigger"]),
        ("[trigger] on a beach", []),
        (f"{TRIGGER}x on a beach", ["missing_trigger"]),  # whole words only
    ],
)
def test_trigger_word_exactly_once(caption: str, expected: list[str]) -> None:
    assert codes(caption) == expected


def test_meta_phrases_hedging_and_banned_words() -> None:
    assert codes(f"This image shows {TRIGGER} on a beach") == ["meta_phrase"]
    assert codes(f"The image depicts {TRIGGER}, who appears to smile") == ["meta_phrase", "hedging"]
    assert codes(f"{TRIGGER}, possibly on a beach") == ["hedging"]
    assert codes(f"{TRIGGER}, an unlikely pose") == []  # 'likely' inside a word is not hedging
    assert codes(f"{TRIGGER}, masterpiece, on a beach", banned_words=["masterpiece"]) == ["banned_word"]


def test_identity_traits_only_for_characters_and_configurable() -> None:
    caption = f"{TRIGGER}, blonde hair, blue eyes, on a beach"
    assert codes(caption) == ["identity_trait", "identity_trait"]
    assert codes(caption, lora_type=LoraType.STYLE) == []
    assert codes(f"{TRIGGER}, wearing glasses (c++)", identity_traits=["glasses", "c++"]) == ["identity_trait"] * 2
    assert codes(f"{TRIGGER}, blonde hair", identity_traits=["glasses"]) == []  # replaces the defaults


def test_token_budget_from_z_image_encoder() -> None:
    # diffusers' ZImagePipeline: max_sequence_length=512, minus Qwen3's chat-template tokens.
    assert RULES.token_budget == 504
    assert estimate_tokens("one two three", RULES) == 4  # 3 words * 1.3, rounded up
    assert estimate_tokens("x" * 400, RULES) == 100  # one long token soup: characters / 4
    long_caption = f"{TRIGGER}, " + " ".join(["word"] * 400)
    found = codes(long_caption)
    assert "over_token_budget" in found and "too_long_for_style" in found


def test_empty_missing_unreadable() -> None:
    assert codes("   \n") == ["empty_caption"]
    assert codes(None, status="missing") == ["missing_caption"]
    assert codes(None, status="not_utf8") == ["unreadable_caption"]


def test_duplicates_across_images() -> None:
    items = [
        CaptionItem("a.png", f"{TRIGGER} on a beach", None, "ok"),
        CaptionItem("b.png", f"  {TRIGGER}   ON a beach ", None, "ok"),
        CaptionItem("c.png", f"{TRIGGER} in a park", None, "ok"),
        CaptionItem("d.png", "", None, "empty"),
        CaptionItem("e.png", "", None, "empty"),
    ]
    found = duplicate_findings(items)
    assert sorted(found) == ["a.png", "b.png"]
    assert "b.png" in found["a.png"].message


def test_verdict_and_mechanical_suggestion() -> None:
    item = CaptionItem("a.png", "This image shows a woman on a beach", None, "ok")
    findings = check_caption(item, TRIGGER, RULES, Style.TERSE, LoraType.CHARACTER)
    assert rules_verdict(findings) == Verdict.FIX
    assert rules_suggestion(item.caption, TRIGGER, RULES) == f"{TRIGGER}, woman on a beach"
    assert rules_suggestion(f"{TRIGGER} on a beach", TRIGGER, RULES) is None
    assert rules_suggestion(None, TRIGGER, RULES) is None
