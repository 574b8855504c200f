"""Prompt catalog, caption clean-up, trigger placement, caption files (atomic writes, backups)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lora_mcp.captioning.files import OverwritePolicy, backup_caption, backup_folder, plan_captions
from lora_mcp.captioning.prompts import (
    build_prompt,
    catalog,
    resolve_caption_type,
    template_caption,
)
from lora_mcp.captioning.text import clean_caption, finish_caption, place_trigger
from lora_mcp.dataset.scan import scan_folder
from lora_mcp.errors import InvalidInput
from lora_mcp.fsutil import write_text_atomic

JOYCAPTION_TYPES = {
    "Descriptive",
    "Descriptive (Casual)",
    "Straightforward",
    "Stable Diffusion Prompt",
    "MidJourney",
    "Danbooru tag list",
    "e621 tag list",
    "Rule34 tag list",
    "Booru-like tag list",
    "Art Critic",
    "Product Listing",
    "Social Media Post",
}


def test_catalog_has_every_joycaption_type_length_and_option() -> None:
    cat = catalog()
    assert {t.label for t in cat.caption_types.values()} >= JOYCAPTION_TYPES
    assert cat.lengths == ["any", "very short", "short", "medium-length", "long", "very long"]
    assert len(cat.extra_options) >= 25 and "{name}" in cat.extra_options["name"]
    for type_id, templates in cat.caption_types.items():
        assert "{word_count}" in templates.words, type_id
        assert "{length}" in templates.length, type_id
        for length in ["any", "short", "very long", 40]:
            prompt = build_prompt(type_id, length, [])
            assert "{" not in prompt and prompt, (type_id, length)


@pytest.mark.parametrize(
    ("style", "expected"),
    [("descriptive", "descriptive"), ("sd-prompt", "stable-diffusion-prompt"), ("midjourney", "midjourney")],
)
def test_original_styles_map_onto_joycaption_types(style: str, expected: str) -> None:
    assert resolve_caption_type(style) == expected
    assert resolve_caption_type("Stable Diffusion Prompt") == "stable-diffusion-prompt"


def test_prompt_forms_and_options() -> None:
    assert build_prompt("descriptive", "any", []) == "Write a detailed description for this image."
    assert build_prompt("descriptive", 50, []) == "Write a detailed description for this image in 50 words or less."
    prompt = build_prompt("descriptive", "long", ["name", "Include information about lighting."], name="ohwx")
    assert prompt == (
        "Write a long detailed description for this image. If there is a person/character in the image you must "
        "refer to them as ohwx. Include information about lighting."
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("poem", "long", []), "caption_type"),
        (("descriptive", "enormous", []), "length"),
        (("descriptive", "long", ["be nice"]), "extra_options"),
        (("descriptive", "long", ["name"]), "extra_options"),  # name option without a name
    ],
)
def test_bad_prompt_arguments_name_the_field(args: tuple[str, str, list[str]], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build_prompt(*args)
    assert info.value.field == field and info.value.hint


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("This image shows a red fox in snow.", "A red fox in snow."),
        ("The image depicts an old man reading.", "An old man reading."),
        ("This is a photograph of two dogs.", "Two dogs."),
        ("In this image, a woman walks.", "A woman walks."),
        ("Caption: This picture features a castle.", "A castle."),
        ('"A quoted caption."', "A quoted caption."),
        ("A   tidy\n\ncaption\x07 here.", "A tidy caption here."),
        ("The image of the moon is famous.", "The image of the moon is famous."),  # not a meta phrase
    ],
)
def test_meta_phrases_are_removed(raw: str, clean: str) -> None:
    assert clean_caption(raw) == clean


def test_trigger_is_placed_exactly_once() -> None:
    assert place_trigger("A cat.", "ohwx") == "ohwx, A cat."
    assert place_trigger("ohwx sits on a chair.", "ohwx") == "ohwx sits on a chair."  # via the name option
    assert place_trigger("A portrait of OHWX.", "ohwx") == "A portrait of OHWX."
    assert place_trigger("A cat.", None) == "A cat."
    caption = finish_caption("This image shows a man.", "ohwx")
    assert caption == "ohwx, A man." and caption.count("ohwx") == 1
    assert finish_caption(finish_caption("The photo shows a dog.", "ohwx"), "ohwx").count("ohwx") == 1


def test_template_caption() -> None:
    assert template_caption("ohwx") == "a photo of ohwx"
    assert template_caption(None) == "a photo"


def test_plan_skip_and_backup(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a.txt").write_text("old caption", encoding="utf-8")
    (tmp_path / "b.txt").write_text("  \n", encoding="utf-8")  # empty: counts as missing
    skip = plan_captions(tmp_path, "txt", OverwritePolicy.SKIP)
    assert skip.todo == ["b.png", "c.png"] and skip.skipped == ["a.png"]
    assert plan_captions(tmp_path, "txt", OverwritePolicy.BACKUP).todo == ["a.png", "b.png", "c.png"]

    root = backup_folder(tmp_path, now=0)
    saved = backup_caption(tmp_path, tmp_path / "a.txt", root)
    assert saved is not None and saved.read_text(encoding="utf-8") == "old caption"
    assert backup_caption(tmp_path, tmp_path / "b.txt", root) is None
    # Inspection and AI-Toolkit-style scans never see the backups.
    assert scan_folder(tmp_path, "txt").captions == ["a.txt", "b.txt"]


def test_atomic_write_leaves_old_text_or_new_never_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "captions"
    folder.mkdir()
    target = folder / "a.txt"
    write_text_atomic(target, "première légende")
    assert target.read_bytes() == "première légende".encode()

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(target, "second caption")
    assert target.read_text(encoding="utf-8") == "première légende"
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt"]
