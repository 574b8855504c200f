"""Turning a VLM's reply into a training caption: drop meta phrases, tidy whitespace, place the trigger word once."""

from __future__ import annotations

import re
import unicodedata

from lora_mcp.dataset.captions import contains_trigger

_SUBJECT = r"(?:image|picture|photo|photograph|illustration|artwork|painting|drawing|render(?:ing)?|scene|shot)"
_VERB = (
    r"(?:shows|depicts|features|displays|presents|captures|portrays|showcases|illustrates|contains|is\s+of|"
    r"appears\s+to\s+(?:show|depict|be))"
)
META_PATTERNS = [
    # "This image shows ...", "The photograph depicts ...", "This is an image of ..."
    re.compile(rf"^(?:this|the)\s+{_SUBJECT}\s+{_VERB}\s+", re.IGNORECASE),
    re.compile(rf"^(?:this|here)\s+is\s+(?:an?\s+|the\s+)?{_SUBJECT}\s+(?:of|showing|depicting|that\s+shows)\s+", re.I),
    re.compile(rf"^in\s+(?:this|the)\s+{_SUBJECT}\s*,?\s*(?:we\s+(?:can\s+)?see\s+)?", re.IGNORECASE),
    re.compile(r"^(?:you\s+are\s+looking\s+at|we\s+(?:can\s+)?see)\s+", re.IGNORECASE),
    re.compile(r"^(?:caption|description|prompt)\s*:\s*", re.IGNORECASE),
]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")


def clean_caption(text: str) -> str:
    """Strip meta phrases ("This image shows ..."), quotes, control characters and runs of whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = " ".join(text.split())
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    original = text
    for _ in range(3):  # "Caption: This image shows ..." needs two passes
        before = text
        for pattern in META_PATTERNS:
            text = pattern.sub("", text, count=1)
        if text == before:
            break
    if text[:1].islower() and text != original:
        text = text[0].upper() + text[1:]
    return text.strip()


def place_trigger(caption: str, trigger_word: str | None) -> str:
    """Prefix `trigger_word` unless the caption already holds it (e.g. through the name option): it appears once."""
    trigger = (trigger_word or "").strip()
    if not trigger or contains_trigger(caption, trigger):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def finish_caption(raw: str, trigger_word: str | None) -> str:
    """The text written to the caption file."""
    return place_trigger(clean_caption(raw), trigger_word)
