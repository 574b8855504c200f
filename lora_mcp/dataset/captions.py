"""Caption files as AI-Toolkit reads them: `<image path without extension>.<caption_ext>`, strict UTF-8."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Annotated, TypeVar

from pydantic import AfterValidator

from lora_mcp.dataset.scan import IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS
from lora_mcp.errors import InvalidInput

_P = TypeVar("_P", bound=PurePath)
DEFAULT_CAPTION_EXT = "txt"
TRIGGER_PLACEHOLDERS = ("[trigger]", "[name]")
"""AI-Toolkit replaces these with the trigger word (toolkit/prompt_utils.py inject_trigger_into_prompt)."""


class CaptionStatus(StrEnum):
    """The state of an image's caption file."""

    OK = "ok"
    MISSING = "missing"
    EMPTY = "empty"
    NOT_UTF8 = "not_utf8"
    """Not valid UTF-8, or not readable at all."""


@dataclass(frozen=True)
class CaptionRead:
    """What reading one caption file found (the text itself is not kept)."""

    status: CaptionStatus
    chars: int | None = None
    has_trigger: bool | None = None


CAPTION_EXT_RE = re.compile(r"[A-Za-z0-9]{1,10}")
"""A caption extension: 1-10 ASCII letters or digits (generate_training_config's `caption_ext` pattern too)."""

_NOT_CAPTION_EXTS = frozenset(
    {
        "yaml", "yml", "json", "jsonl", "toml", "ini", "cfg", "conf", "env", "py", "pyc", "pyw", "pyi", "sh",
        "bash", "zsh", "bat", "cmd", "ps1", "exe", "dll", "so", "dylib", "js", "mjs", "html", "htm", "xml",
        "safetensors", "ckpt", "pt", "pth", "bin", "gguf", "onnx", "pkl", "pickle", "npy", "npz", "h5", "zip",
        "tar", "gz", "tgz", "db", "sqlite", "tmp",
    }
)  # fmt: skip
"""Extensions that other programs load as configuration, code, weights or archives (or our temp files). Captions
are plain text written beside the images, so accepting one of these would let a caption write plant such a file."""


def normalize_caption_ext(caption_ext: str) -> str:
    """`.txt` or `txt` -> `txt`; refuse anything but a plain text extension (the one rule for every caption_ext).

    Refused: empty, more than one leading dot, path separators or other punctuation, over 10 characters, an image
    extension (the caption would replace or shadow an image), and extensions read as config, code or weights.
    """
    ext = caption_ext.strip().removeprefix(".")
    hint = "Pass 'txt' (what AI-Toolkit reads by default) or another plain extension such as 'caption'."
    if not CAPTION_EXT_RE.fullmatch(ext):
        raise InvalidInput(
            f"The caption extension {caption_ext!r} is not a plain file extension (1-10 letters or digits, "
            "an optional leading dot).",
            hint=hint,
            field="caption_ext",
        )
    lowered = f".{ext.lower()}"
    if lowered in IMAGE_EXTENSIONS or lowered in UNSUPPORTED_IMAGE_EXTENSIONS:
        raise InvalidInput(
            f"The caption extension {caption_ext!r} is an image extension: caption files would replace or shadow "
            "images.",
            hint=hint,
            field="caption_ext",
        )
    if ext.lower() in _NOT_CAPTION_EXTS:
        raise InvalidInput(
            f"The caption extension {caption_ext!r} is refused: captions are plain text, and {lowered} files are "
            "read by other programs as configuration, code, weights or archives.",
            hint=hint,
            field="caption_ext",
        )
    return ext


CaptionExt = Annotated[str, AfterValidator(normalize_caption_ext)]
"""A caption extension in a request model: normalised (`.txt` -> `txt`) and checked once, by the one rule."""


def caption_path(image: _P, caption_ext: str) -> _P:
    """The caption file AI-Toolkit reads for `image` (same folder, extension replaced, case-sensitive)."""
    return image.with_name(f"{image.stem}.{caption_ext}")


def contains_trigger(text: str, trigger_word: str) -> bool:
    """True if `text` holds `trigger_word` as a whole word (case-insensitive) or an AI-Toolkit placeholder."""
    if any(p in text for p in TRIGGER_PLACEHOLDERS):
        return True
    pattern = rf"(?<!\w){re.escape(trigger_word.strip())}(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def read_caption(path: Path, trigger_word: str | None = None) -> CaptionRead:
    """Read one caption file strictly as UTF-8; a missing, empty or undecodable file is a status, not an error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return CaptionRead(CaptionStatus.MISSING)
    except OSError:  # a folder or an unreadable file under the caption's name: AI-Toolkit fails on it too
        return CaptionRead(CaptionStatus.NOT_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return CaptionRead(CaptionStatus.NOT_UTF8)
    if not text.strip():
        return CaptionRead(CaptionStatus.EMPTY, chars=len(text))
    has_trigger = contains_trigger(text, trigger_word) if trigger_word else None
    return CaptionRead(CaptionStatus.OK, chars=len(text), has_trigger=has_trigger)
