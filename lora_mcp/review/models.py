"""The vocabulary of a caption review, shared by the rules, the reviewer, the workflow and the review file."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """Whether a caption can stay as it is."""

    OK = "ok"
    FIX = "fix"


class Decision(StrEnum):
    """What a person or agent decided about a suggestion (filled into the review file)."""

    PENDING = "pending"
    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"


class Severity(StrEnum):
    """An error makes the verdict `fix`; a warning is worth a look."""

    ERROR = "error"
    WARNING = "warning"


class Style(StrEnum):
    """Caption style the reviewer asks for."""

    TERSE = "terse"
    DESCRIPTIVE = "descriptive"


class LoraType(StrEnum):
    """What the LoRA teaches; identity-trait checks only apply to characters."""

    CHARACTER = "character"
    STYLE = "style"
    CONCEPT = "concept"


@dataclass(frozen=True)
class Finding:
    """One problem a deterministic rule found in a caption."""

    code: str
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity.value}


@dataclass(frozen=True)
class CaptionItem:
    """One image and its caption as read when the review started."""

    image: str
    """Path of the image relative to the folder (POSIX separators)."""
    caption: str | None
    """The caption text; None when the file is missing or not UTF-8."""
    sha256: str | None
    """sha256 of the caption file's bytes; None when there is no caption file."""
    status: str
    """ok | missing | empty | not_utf8 (lora_mcp.dataset.captions.CaptionStatus)."""
