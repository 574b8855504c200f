"""Caption instructions from the data file `lora_mcp/prompts/caption/joycaption.yaml` (validated with pydantic)."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import yaml
from pydantic import BaseModel, ConfigDict

from lora_mcp.errors import InvalidInput

NAME_OPTION = "name"


class CaptionTypeTemplates(BaseModel):
    """One caption type's three instruction forms."""

    model_config = ConfigDict(frozen=True)

    label: str
    any: str
    """Used when the length is `any`."""
    words: str
    """Holds `{word_count}`: used when the length is a number of words."""
    length: str
    """Holds `{length}`: used for very short ... very long."""


class TemplateCaption(BaseModel):
    """The no-model caption of backend `template`."""

    model_config = ConfigDict(frozen=True)

    with_trigger: str
    without_trigger: str


class PromptCatalog(BaseModel):
    """Everything in the prompt data file."""

    model_config = ConfigDict(frozen=True)

    system_prompt: str
    lengths: list[str]
    caption_types: dict[str, CaptionTypeTemplates]
    styles: dict[str, str]
    extra_options: dict[str, str]
    template_caption: TemplateCaption


@lru_cache(maxsize=1)
def catalog() -> PromptCatalog:
    """The prompt catalog shipped inside the package."""
    text = (files("lora_mcp") / "prompts" / "caption" / "joycaption.yaml").read_text(encoding="utf-8")
    return PromptCatalog.model_validate(yaml.safe_load(text))


def resolve_caption_type(caption_type: str) -> str:
    """A caption type id from an id, a style alias (`sd-prompt`) or a label (`Stable Diffusion Prompt`)."""
    cat = catalog()
    key = caption_type.strip().lower()
    if key in cat.caption_types:
        return key
    if key in cat.styles:
        return cat.styles[key]
    for type_id, templates in cat.caption_types.items():
        if templates.label.lower() == key:
            return type_id
    raise InvalidInput(
        f"Unknown caption_type {caption_type!r}.",
        hint=f"Use one of: {', '.join([*cat.caption_types, *cat.styles])}.",
        field="caption_type",
    )


def resolve_length(length: str | int) -> str:
    """`any`, a named length or a positive word count (as text)."""
    text = str(length).strip().lower()
    if text in catalog().lengths or (text.isdigit() and 0 < int(text) <= 1000):
        return text
    raise InvalidInput(
        f"Unknown length {length!r}.",
        hint=f"Use one of {', '.join(catalog().lengths)}, or a number of words such as 60.",
        field="length",
    )


def resolve_extra_options(options: list[str]) -> list[str]:
    """Option ids from ids or the full sentences; unknown ones are refused."""
    cat = catalog()
    by_sentence = {sentence.strip().lower(): key for key, sentence in cat.extra_options.items()}
    resolved: list[str] = []
    for option in options:
        key = option.strip().lower()
        key = key if key in cat.extra_options else by_sentence.get(key, "")
        if not key:
            raise InvalidInput(
                f"Unknown extra option {option!r}.",
                hint=f"Use option ids: {', '.join(cat.extra_options)}.",
                field="extra_options",
            )
        if key not in resolved:
            resolved.append(key)
    return resolved


def build_prompt(caption_type: str, length: str | int, extra_options: list[str], name: str | None = None) -> str:
    """The user instruction for a caption type, length and extra options; `name` fills the name option."""
    cat = catalog()
    templates = cat.caption_types[resolve_caption_type(caption_type)]
    size = resolve_length(length)
    options = resolve_extra_options(extra_options)
    if NAME_OPTION in options and not (name and name.strip()):
        raise InvalidInput(
            "The extra option 'name' needs a name to refer to the person/character by.",
            hint="Pass trigger_word (it becomes the name), or drop the 'name' option.",
            field="extra_options",
        )
    if size == "any":
        prompt = templates.any
    elif size.isdigit():
        prompt = templates.words.replace("{word_count}", size)
    else:
        prompt = templates.length.replace("{length}", size)
    sentences = [cat.extra_options[o].replace("{name}", (name or "").strip()) for o in options]
    return " ".join([prompt.strip(), *sentences])


def template_caption(trigger_word: str | None) -> str:
    """The caption backend `template` writes for every image."""
    t = catalog().template_caption
    return t.with_trigger.replace("{trigger}", trigger_word.strip()) if trigger_word else t.without_trigger
