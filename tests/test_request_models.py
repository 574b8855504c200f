"""One request model per operation: the caption_images / review_captions tools and `lora-mcp caption` / `lora-mcp
review` build the same CaptionRequest / ReviewParams, so the same inputs give the same job params and the same
review fingerprint. Also the CLI's parsers: no abbreviated options, choices listed for enumerated ones."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from caption_fixtures import make_dataset
from mcp import Client

from lora_mcp.captioning.cli import caption_request
from lora_mcp.captioning.params import CaptionRequest, CaptionType, ExtraOption, NamedLength
from lora_mcp.captioning.prompts import catalog
from lora_mcp.captioning.service import job_params
from lora_mcp.cli import build_parser, main
from lora_mcp.jobs.store import JobStore
from lora_mcp.review.cli import review_params
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The in-memory client runs on asyncio."""
    return "asyncio"


async def job_params_of(settings: Settings, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a job tool through the in-memory client; return the params its job was queued with."""
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    store = JobStore(settings.db_path, settings.jobs_dir)
    try:
        job = store.get((result.structured_content or {})["job_id"])
    finally:
        store.close()
    assert job is not None
    return dict(job.params)


def test_literals_match_the_prompt_catalog() -> None:
    cat = catalog()
    assert set(typing.get_args(CaptionType)) == {*cat.caption_types, *cat.styles}
    assert list(typing.get_args(NamedLength)) == cat.lengths
    assert set(typing.get_args(ExtraOption)) == set(cat.extra_options)


def test_caption_request_normalises_once(tmp_path: Path) -> None:
    request = CaptionRequest(
        folder=tmp_path,
        trigger_word="  ",
        caption_type=" SD-Prompt ",  # type: ignore[arg-type]
        length=" 60 ",  # type: ignore[arg-type]
        extra_options=["lighting", "lighting"],
        caption_ext=".txt",
        model=" ",
    )
    assert request.trigger_word is None and request.model is None
    assert request.caption_type == "stable-diffusion-prompt" and request.length == 60
    assert request.extra_options == ["lighting"] and request.caption_ext == "txt"


async def test_caption_tool_and_cli_queue_the_same_params(settings: Settings, shared_images: Path) -> None:
    folder = make_dataset(settings.roots[0], shared_images)
    inputs = {"trigger_word": " ohwx ", "caption_type": "sd-prompt", "length": "short", "caption_ext": ".txt"}
    tool = await job_params_of(
        settings,
        "caption_images",
        {"folder": str(folder), **inputs, "extra_options": ["lighting", "name"], "backend": "template"},
    )
    argv = ["caption", str(folder), "--trigger-word", " ohwx ", "--type", "sd-prompt", "--length", "short"]
    argv += ["--caption-ext", ".txt", "--extra", "lighting", "--extra", "name", "--backend", "template"]
    cli = job_params(caption_request(build_parser().parse_args(argv)), settings).model_dump(mode="json")
    assert {key: tool[key] for key in cli} == cli
    assert cli["trigger_word"] == "ohwx" and cli["caption_type"] == "stable-diffusion-prompt"
    assert cli["caption_ext"] == "txt" and "ohwx" in cli["prompt"]


async def test_review_tool_and_cli_give_the_same_fingerprint(settings: Settings, shared_images: Path) -> None:
    folder = make_dataset(settings.roots[0], shared_images)
    tool = await job_params_of(
        settings,
        "review_captions",
        {"folder": str(folder), "trigger_word": " ohwx ", "caption_ext": ".txt", "banned_words": ["ugly ", "ugly"]},
    )
    argv = ["review", str(folder), "--trigger-word", " ohwx ", "--caption-ext", ".txt"]
    cli = review_params(build_parser().parse_args([*argv, "--banned-word", "ugly ", "--banned-word", "ugly"]))
    assert tool["fingerprint"] == cli.fingerprint()
    assert cli.trigger_word == "ohwx" and cli.caption_ext == "txt" and cli.banned_words == ["ugly"]
    assert tool["model"] == cli.model == settings.review_model


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """A parser and every subparser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from all_parsers(child)


def test_every_parser_refuses_abbreviations() -> None:
    parsers = list(all_parsers(build_parser()))
    assert len(parsers) > 10
    assert all(not p.allow_abbrev for p in parsers), [p.prog for p in parsers if p.allow_abbrev]


def test_abbreviated_option_is_an_error(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    argv = ["config", "--name", "a", "--dataset-folder", str(root), "--trigger-word", "ohwx"]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--model", "zimage-deturbo"])  # once silently read as --model-path
    assert exited.value.code == 2 and "unrecognized arguments: --model zimage-deturbo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["jobs", "list", "--st", "queued"])


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("config", "{zimage-turbo,zimage-deturbo,zimage}"),
        ("config", "{adamw8bit,adamw,adafactor}"),
        ("caption", "sd-prompt"),
        ("caption", "{name,no-immutable-traits,"),
        ("review", "{terse,descriptive}"),
    ],
)
def test_choices_are_shown(capsys: pytest.CaptureFixture[str], command: str, shown: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert shown in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["config", "--name", "a", "--dataset-folder", ".", "--trigger-word", "t", "--variant", "sdxl"],
        ["caption", ".", "--type", "limerick"],
        ["caption", ".", "--length", "huge"],
        ["caption", ".", "--length", "0"],
    ],
)
def test_values_outside_the_choices_are_refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2 and argv[-1] in capsys.readouterr().err
