"""Read and decide a caption review without file tools: a page of its items with the images, and decisions written
back into the review file atomically (apply_caption_review then writes the captions).

The decisions are the review file's own vocabulary (`Decision`); an `edit` caption must pass the review's
deterministic rules at error level (trigger word present, token budget, no meta phrase, hedging or banned word),
the same bar a suggestion had to clear.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from lora_mcp.dataset.view import check_page, image_in_folder
from lora_mcp.errors import InvalidInput, OperationFailed
from lora_mcp.fsutil import write_text_atomic
from lora_mcp.paths import confine_existing_dir
from lora_mcp.review.models import CaptionItem, Decision, Severity
from lora_mcp.review.reviewfile import HEADER, ImageReview, ReviewDocument, load_review
from lora_mcp.review.rules import RuleSet, check_caption, load_rules

StatusFilter = Literal["pending", "approve", "reject", "edit", "undecided", "decided"]
"""A decision value, or `undecided` (= pending) / `decided` (approve, reject or edit)."""


class ReviewItem(BaseModel):
    """One reviewed image; `index` is its 1-based position in the review file, drawn on its tile."""

    index: int
    image: str = Field(description="Image path relative to the folder: the name decide_captions takes.")
    caption: str | None = Field(description="The caption when it was reviewed.")
    suggested_caption: str | None
    verdict: str = Field(description="ok or fix.")
    findings: list[str] = Field(description="Codes of the rules that fired (missing_trigger, meta_phrase, ...).")
    issues: list[str] = Field(description="What the LLM reviewer found.")
    decision: Decision
    edited_caption: str | None


class ReviewPage(BaseModel):
    """A page of a review's items (after the status filter), with the counts of every decision in the file."""

    review_file: str
    folder: str
    trigger_word: str
    status: StatusFilter | None
    page: int
    page_size: int
    total_items: int = Field(description="Items matching the status filter.")
    total_pages: int
    counts: dict[str, int] = Field(description="Items per decision in the whole review file.")
    items: list[ReviewItem]


def _matches(decision: Decision, status: StatusFilter | None) -> bool:
    if status is None:
        return True
    if status == "undecided":
        return decision == Decision.PENDING
    if status == "decided":
        return decision != Decision.PENDING
    return decision.value == status


def _counts(doc: ReviewDocument) -> dict[str, int]:
    found = Counter(entry.decision.value for entry in doc.images)
    return {d.value: found.get(d.value, 0) for d in Decision}


def review_page(
    review_file: Path,
    roots: Sequence[Path],
    page: int = 1,
    page_size: int = 16,
    status: StatusFilter | None = None,
) -> tuple[ReviewPage, bytes | None]:
    """A page of the review's items and a contact sheet of their images (the review's folder must be in `roots`)."""
    from lora_mcp.render import labelled_sheet

    doc = load_review(review_file)
    folder = confine_existing_dir(doc.folder, roots)
    chosen = [(i, e) for i, e in enumerate(doc.images, start=1) if _matches(e.decision, status)]
    pages = check_page(page, page_size, len(chosen))
    shown = chosen[(page - 1) * page_size : page * page_size]
    items = [
        ReviewItem(
            index=i,
            image=e.image,
            caption=e.caption,
            suggested_caption=e.suggested_caption,
            verdict=e.verdict.value,
            findings=[f.code for f in e.findings],
            issues=e.issues,
            decision=e.decision,
            edited_caption=e.edited_caption,
        )
        for i, e in shown
    ]
    tiles = []
    for item in items:
        try:
            path: Path | None = image_in_folder(folder, item.image)
        except InvalidInput:  # a hand-edited name leading out of the folder is listed, never opened
            path = None
        tiles.append((path, f"#{item.index}  {item.image}"))
    result = ReviewPage(
        review_file=str(review_file),
        folder=str(folder),
        trigger_word=doc.trigger_word,
        status=status,
        page=page,
        page_size=page_size,
        total_items=len(chosen),
        total_pages=pages,
        counts=_counts(doc),
        items=items,
    )
    return result, labelled_sheet(tiles)


class CaptionDecision(BaseModel):
    """One decision for decide_captions."""

    image: str = Field(description="Image name as the review lists it (get_caption_review's `image`).")
    decision: Literal["approve", "reject", "edit"] = Field(
        description="approve: write suggested_caption; reject: keep the current caption; edit: write `caption`."
    )
    caption: str | None = Field(None, description="The caption to write; required for edit, not allowed otherwise.")


class DecideResult(BaseModel):
    """What decide_captions recorded."""

    review_file: str
    updated: int = Field(description="Decisions written in this call.")
    counts: dict[str, int] = Field(description="Items per decision in the whole review file, after this call.")
    next_step: str


def record_decisions(review_file: Path, decisions: list[CaptionDecision]) -> DecideResult:
    """Record decisions in the review file (one atomic write); any bad decision refuses them all, writing nothing."""
    before = review_file.read_bytes()
    doc = load_review(review_file)
    entries = {entry.image: entry for entry in doc.images}
    _check_names(decisions, entries)
    rules = load_rules()
    for decision in decisions:
        entry = entries[decision.image]
        entry.decision = Decision(decision.decision)
        entry.edited_caption = _edited_text(decision, entry, doc, rules) if decision.decision == "edit" else None
    checked = ReviewDocument.model_validate(doc.model_dump(mode="json"))  # the file's own rules, before writing
    body = yaml.safe_dump(checked.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=1_000_000)
    if review_file.read_bytes() != before:
        raise OperationFailed(
            f"{review_file} changed while the decisions were being recorded.", hint="Call decide_captions again."
        )
    write_text_atomic(review_file, HEADER + body)
    return DecideResult(
        review_file=str(review_file),
        updated=len(decisions),
        counts=_counts(checked),
        next_step="Call apply_caption_review(review_file, approve='decided') to write the approved and edited "
        "captions (old ones are backed up).",
    )


def _check_names(decisions: list[CaptionDecision], entries: dict[str, ImageReview]) -> None:
    unknown = sorted({d.image for d in decisions} - entries.keys())
    if unknown:
        listed = ", ".join(list(entries)[:10])
        raise InvalidInput(
            f"Not in the review: {', '.join(unknown)}. Nothing was written.",
            hint=f"Name images as get_caption_review lists them, e.g. {listed}.",
            field="decisions",
        )
    repeated = sorted(name for name, n in Counter(d.image for d in decisions).items() if n > 1)
    if repeated:
        raise InvalidInput(
            f"More than one decision for {', '.join(repeated)}. Nothing was written.",
            hint="Give each image one decision.",
            field="decisions",
        )
    for d in decisions:
        if d.decision != "edit" and d.caption is not None:
            raise InvalidInput(
                f"{d.image}: a caption was given with decision {d.decision!r}. Nothing was written.",
                hint="Use decision 'edit' to write your own caption, or drop the caption.",
                field="decisions",
            )
        if d.decision == "approve" and not (entries[d.image].suggested_caption or "").strip():
            raise InvalidInput(
                f"{d.image} has no suggested_caption to approve. Nothing was written.",
                hint="Use decision 'edit' with the caption to write, or 'reject' to keep the current one.",
                field="decisions",
            )


def _edited_text(decision: CaptionDecision, entry: ImageReview, doc: ReviewDocument, rules: RuleSet) -> str:
    """The edit's caption, stripped, refused when empty or when a review rule finds an error in it."""
    text = (decision.caption or "").strip()
    if not text:
        raise InvalidInput(
            f"{decision.image}: decision 'edit' needs a caption. Nothing was written.",
            hint="Pass caption with the full text to write.",
            field="decisions",
        )
    item = CaptionItem(image=entry.image, caption=text, sha256=None, status="ok")
    findings = check_caption(item, doc.trigger_word, rules, doc.style, doc.lora_type)
    errors = [f for f in findings if f.severity == Severity.ERROR]
    if errors:
        found = "; ".join(f"{f.code}: {f.message}" for f in errors)
        raise InvalidInput(
            f"{decision.image}: the edited caption breaks the review's rules ({found}). Nothing was written.",
            hint=f"Fix the caption (it must hold the trigger word {doc.trigger_word!r} once), then call again.",
            field="decisions",
        )
    return text
