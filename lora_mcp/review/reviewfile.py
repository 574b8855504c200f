"""The review file: YAML a person or agent edits (decisions), validated on the way back in with line numbers.

It lives in `<folder>/_reviews/review_<UTC time>.yaml`. The dataset scan skips `_reviews` (like AI-Toolkit's own
cache folders) and the file is created with a hard link from a temp file, so it appears whole and never replaces
an existing file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lora_mcp.dataset.captions import normalize_caption_ext
from lora_mcp.errors import InvalidInput, LoraMcpError, NotFound
from lora_mcp.review.models import Decision, LoraType, Severity, Style, Verdict

REVIEWS_DIR = "_reviews"
FORMAT_VERSION = 1
HEADER = """\
# Caption review written by lora-mcp. Nothing has been changed yet.
# For each image set `decision`: pending | approve (use suggested_caption) | reject (keep the caption) |
# edit (write edited_caption instead). Then call apply_caption_review (or `lora-mcp apply-review FILE`).
# approve="all" also applies every pending `fix` that has a suggested_caption.
"""


class FindingEntry(BaseModel):
    """A deterministic finding."""

    model_config = ConfigDict(extra="forbid")

    code: str
    severity: Severity
    message: str


class ImageReview(BaseModel):
    """The review of one image's caption."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Image path relative to the folder.")
    caption: str | None = Field(description="The caption when reviewed (null: no readable caption file).")
    caption_sha256: str | None = Field(description="sha256 of the caption file when reviewed; null: no file.")
    verdict: Verdict
    reviewed_by: Literal["llm", "rules"]
    findings: list[FindingEntry] = Field(default_factory=list)
    issues: list[str] = Field(default_factory=list, description="What the LLM reviewer found.")
    suggested_caption: str | None = None
    llm_error: str | None = None
    decision: Decision = Decision.PENDING
    edited_caption: str | None = None

    @model_validator(mode="after")
    def _edit_has_text(self) -> ImageReview:
        if self.decision == Decision.EDIT and not (self.edited_caption or "").strip():
            raise ValueError("decision is 'edit' but edited_caption is empty: write the caption to use")
        return self


class ReviewDocument(BaseModel):
    """A whole review file."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    folder: str
    caption_ext: str = "txt"
    created_at: str
    job_id: str | None = None
    model: str | None
    llm: str = Field(description="'used', or why the LLM part was skipped.")
    style: Style
    lora_type: LoraType
    trigger_word: str
    images: list[ImageReview]

    @field_validator("caption_ext")
    @classmethod
    def _plain_caption_ext(cls, value: str) -> str:
        """The rule caption_images and review_captions apply: a hand-edited `caption_ext: yaml` must not let
        apply_caption_review write `<image>.yaml` files beside the images."""
        try:
            return normalize_caption_ext(value)
        except LoraMcpError as exc:
            raise ValueError(f"{exc.message} {exc.hint or ''}".strip()) from None


def write_review(doc: ReviewDocument, folder: Path) -> Path:
    """Write `doc` as `<folder>/_reviews/review_<time>.yaml` atomically, never over an existing file."""
    directory = folder / REVIEWS_DIR
    directory.mkdir(exist_ok=True)
    stamp = re.sub(r"\D", "", doc.created_at)[:14] or "undated"
    body = yaml.safe_dump(doc.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=1_000_000)
    tmp = directory / f".review_{stamp}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(HEADER + body)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        for n in range(1000):
            final = directory / (f"review_{stamp}.yaml" if n == 0 else f"review_{stamp}_{n}.yaml")
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                continue
        raise FileExistsError(f"too many reviews named review_{stamp}*.yaml in {directory}")
    finally:
        tmp.unlink(missing_ok=True)


def load_review(path: Path) -> ReviewDocument:
    """Parse and validate a review file; any problem is an InvalidInput naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"No review file at {path}.", hint="Pass outputs.details.review_file of a review job.") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text (byte {exc.start}).", hint="Save it as UTF-8.") from None
    fix = "Fix that line of the review file (or review the folder again), then call apply_caption_review again."
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise InvalidInput(f"{path} is not valid YAML at {where}: {exc.problem or exc}.", hint=fix) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}.", hint=fix) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} does not hold a review (a mapping with version, folder, images).", hint=fix)
    try:
        return ReviewDocument.model_validate(data)
    except ValidationError as exc:
        root = yaml.compose(text)
        problems = [
            f"line {_line_of(root, err['loc'])}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()[:5]
        ]
        raise InvalidInput(f"{path} is not a valid review: " + "; ".join(problems) + ".", hint=fix) from None


def _line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int:
    """1-based line of the deepest node the pydantic error location reaches in the YAML node tree."""
    line = node.start_mark.line if node is not None else 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1
