"""Deterministic caption checks (no LLM): trigger word, token budget, meta phrases, hedging, banned words, identity
traits, duplicates, empty captions. The word lists and limits live in lora_mcp/prompts/review/rules.yaml.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from lora_mcp.dataset.captions import TRIGGER_PLACEHOLDERS
from lora_mcp.review.models import CaptionItem, Finding, LoraType, Severity, Style, Verdict


@dataclass(frozen=True)
class RuleSet:
    """The lists and limits the checks use."""

    meta_phrases: tuple[str, ...]
    hedging: tuple[str, ...]
    banned_words: tuple[str, ...]
    identity_patterns: tuple[str, ...]
    token_budget: int
    """Caption tokens the text encoder keeps: max sequence length minus the chat template's tokens."""
    tokens_per_word: float
    chars_per_token: float
    style_limits: dict[str, dict[str, int]]


@lru_cache(maxsize=1)
def _rules_data() -> dict[str, Any]:
    text = resources.files("lora_mcp").joinpath("prompts/review/rules.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def load_rules(banned_words: Sequence[str] = (), identity_traits: Sequence[str] | None = None) -> RuleSet:
    """The shipped rules, plus extra banned words; `identity_traits` (plain phrases) replaces the default patterns."""
    data = _rules_data()
    budget = data["token_budget"]
    if identity_traits is None:
        patterns = tuple(data["identity_trait_patterns"])
    else:
        patterns = tuple(rf"(?<!\w){re.escape(t.strip())}(?!\w)" for t in identity_traits if t.strip())
    return RuleSet(
        meta_phrases=tuple(data["meta_phrases"]),
        hedging=tuple(data["hedging"]),
        banned_words=tuple(dict.fromkeys([*data.get("banned_words", []), *(w.strip() for w in banned_words)])),
        identity_patterns=patterns,
        token_budget=int(budget["max_sequence_length"]) - int(budget["chat_template_tokens"]),
        tokens_per_word=float(budget["tokens_per_word"]),
        chars_per_token=float(budget["chars_per_token"]),
        style_limits=dict(data.get("styles", {})),
    )


def estimate_tokens(text: str, rules: RuleSet) -> int:
    """Approximate Qwen3 tokens: max(words * tokens_per_word, chars / chars_per_token), rounded up."""
    words = len(text.split())
    return math.ceil(max(words * rules.tokens_per_word, len(text) / rules.chars_per_token))


def _phrase_re(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)", re.IGNORECASE)


def _found(phrases: Iterable[str], text: str) -> list[str]:
    return [p for p in phrases if p and _phrase_re(p).search(text)]


def count_trigger(text: str, trigger_word: str) -> int:
    """How often the trigger word (whole word, any case) or an AI-Toolkit placeholder occurs in `text`."""
    placeholders = sum(text.count(p) for p in TRIGGER_PLACEHOLDERS)
    return placeholders + len(_phrase_re(trigger_word.strip()).findall(text))


def check_caption(
    item: CaptionItem, trigger_word: str, rules: RuleSet, style: Style, lora_type: LoraType
) -> list[Finding]:
    """Every deterministic finding for one caption (duplicates across images are `duplicate_findings`)."""
    if item.status == "missing":
        return [Finding("missing_caption", Severity.ERROR, "There is no caption file: AI-Toolkit trains it blank.")]
    if item.status == "not_utf8" or item.caption is None:
        return [Finding("unreadable_caption", Severity.ERROR, "The caption file is not valid UTF-8.")]
    text = item.caption.strip()
    if not text:
        return [Finding("empty_caption", Severity.ERROR, "The caption is empty: AI-Toolkit trains it blank.")]
    findings: list[Finding] = []
    triggers = count_trigger(text, trigger_word)
    if triggers == 0:
        findings.append(Finding("missing_trigger", Severity.ERROR, f"The trigger word {trigger_word!r} is missing."))
    elif triggers > 1:
        findings.append(
            Finding("repeated_trigger", Severity.WARNING, f"The trigger word occurs {triggers} times; use it once.")
        )
    tokens = estimate_tokens(text, rules)
    if tokens > rules.token_budget:
        findings.append(
            Finding(
                "over_token_budget",
                Severity.ERROR,
                f"About {tokens} tokens; Z-Image's Qwen3 encoder keeps {rules.token_budget} and drops the rest.",
            )
        )
    findings += _style_findings(text, style, rules)
    for code, severity, phrases, what in (
        ("meta_phrase", Severity.ERROR, rules.meta_phrases, "talks about the image instead of its content"),
        ("hedging", Severity.ERROR, rules.hedging, "hedges; state what is visible"),
        ("banned_word", Severity.ERROR, rules.banned_words, "is on the banned list"),
    ):
        for phrase in _found(phrases, text):
            findings.append(Finding(code, severity, f"{phrase!r} {what}."))
    if lora_type == LoraType.CHARACTER:
        for pattern in rules.identity_patterns:
            match = re.search(pattern, text, re.IGNORECASE)
            if match:
                findings.append(
                    Finding(
                        "identity_trait",
                        Severity.WARNING,
                        f"{match.group(0)!r} is a fixed trait of the character: leave it to the trigger word.",
                    )
                )
    return findings


def _style_findings(text: str, style: Style, rules: RuleSet) -> list[Finding]:
    limits = rules.style_limits.get(style.value, {})
    words = len(text.split())
    if words > limits.get("max_words", words):
        message = f"{words} words; {style.value} captions stay under {limits['max_words']}."
        return [Finding("too_long_for_style", Severity.WARNING, message)]
    if words < limits.get("min_words", words):
        message = f"{words} words; {style.value} captions have at least {limits['min_words']}."
        return [Finding("too_short_for_style", Severity.WARNING, message)]
    return []


def duplicate_findings(items: Sequence[CaptionItem]) -> dict[str, Finding]:
    """A finding for every image whose non-empty caption is identical (case and spacing aside) to another's."""
    groups: dict[str, list[str]] = defaultdict(list)
    for item in items:
        if item.caption and item.caption.strip():
            groups[" ".join(item.caption.lower().split())].append(item.image)
    out: dict[str, Finding] = {}
    for images in groups.values():
        if len(images) < 2:
            continue
        for image in images:
            others = [i for i in images if i != image]
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            out[image] = Finding("duplicate_caption", Severity.ERROR, f"Same caption as {shown}.")
    return out


def rules_verdict(findings: Sequence[Finding]) -> Verdict:
    """`fix` when any finding is an error."""
    return Verdict.FIX if any(f.severity == Severity.ERROR for f in findings) else Verdict.OK


def rules_suggestion(caption: str | None, trigger_word: str, rules: RuleSet) -> str | None:
    """A mechanical fix (leading meta phrase dropped, missing trigger word put first); None if nothing changes."""
    if not caption or not caption.strip():
        return None
    text = caption.strip()
    for phrase in sorted(rules.meta_phrases, key=len, reverse=True):
        match = re.match(rf"{re.escape(phrase)}(?!\w)[\s,:]*(an?\s+|the\s+)?", text, re.IGNORECASE)
        if match:
            text = text[match.end() :]
            break
    if count_trigger(text, trigger_word) == 0:
        text = f"{trigger_word}, {text}"
    return text if text != caption.strip() else None
