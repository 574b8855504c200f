"""An OSError a tool did not anticipate reaches the agent as a clear tool error (errno, path, next step), never as
the SDK's bare "Error executing tool" and never with a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import yaml
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError
from test_review_apply import make_review
from training_fixtures import TRIGGER, make_dataset
from unprivileged import unprivileged_server

from lora_mcp.server.app import build_server
from lora_mcp.server.errors import os_error_text, tool_errors
from lora_mcp.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def server_env(settings: Settings) -> dict[str, str]:
    """A stdio server's environment: this test's state dir and roots."""
    roots = os.pathsep.join(map(str, settings.roots))
    return {**os.environ, "LORA_MCP_HOME": str(settings.home), "LORA_MCP_ROOTS": roots}


def error_text(result: object) -> str:
    assert getattr(result, "is_error", False), f"not an error: {result}"
    text: str = result.content[0].text  # type: ignore[attr-defined]
    assert "Traceback" not in text and 'File "' not in text, text
    assert "Next:" in text, f"no next step for the agent: {text}"
    return text


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for folders): to prove nothing changed."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(folder.rglob("*"))
    }


async def test_apply_review_onto_a_caption_that_is_a_folder(settings: Settings, root: Path) -> None:
    folder, review = make_review(root)
    (folder / "a.txt").unlink()
    (folder / "a.txt").mkdir()  # the caption's name is taken by a folder: reading it is EISDIR
    async with Client(build_server(settings), mode="legacy") as client:
        text = error_text(await client.call_tool("apply_caption_review", {"review_file": str(review)}))
    assert "EISDIR" in text and str(folder / "a.txt") in text and "A folder sits where a file is expected" in text
    assert (folder / "a.txt").is_dir()


async def test_apply_review_naming_an_image_too_long_for_the_file_system(settings: Settings, root: Path) -> None:
    folder, review = make_review(root)
    data = yaml.safe_load(review.read_text())
    data["images"][0]["image"] = "x" * 300 + ".png"
    review.write_text(yaml.safe_dump(data, sort_keys=False))
    before = tree(folder)
    async with Client(build_server(settings), mode="legacy") as client:
        text = error_text(await client.call_tool("apply_caption_review", {"review_file": str(review)}))
    assert "ENAMETOOLONG" in text and "Shorten the file or folder names" in text
    assert "..." in text and len(text) < 800, "the long path is shortened"
    assert tree(folder) == before, "the failing image comes first: nothing was written"


async def test_generate_config_onto_a_folder_named_like_the_config(
    settings: Settings, root: Path, shared_images: Path
) -> None:
    dataset = make_dataset(root, shared_images)
    blocker = root / "lora-mcp" / "configs" / "tool_lora.yaml"
    blocker.mkdir(parents=True)
    args = {"name": "tool_lora", "dataset_folder": str(dataset), "trigger_word": TRIGGER, "vram_gb": 16}
    async with Client(build_server(settings), mode="legacy") as client:
        text = error_text(await client.call_tool("generate_training_config", args))
    assert "EISDIR" in text and str(blocker) in text
    assert blocker.is_dir() and not list(blocker.iterdir())


async def test_unreadable_caption_through_apply(settings: Settings, root: Path) -> None:
    folder, review = make_review(root)
    (folder / "a.txt").chmod(0)
    try:
        async with Client(unprivileged_server(server_env(settings)), mode="legacy") as client:
            text = error_text(await client.call_tool("apply_caption_review", {"review_file": str(review)}))
    finally:
        (folder / "a.txt").chmod(0o644)
    assert "EACCES" in text and str(folder / "a.txt") in text and "permissions" in text


async def test_unreadable_review_file(settings: Settings, root: Path) -> None:
    _, review = make_review(root)
    review.chmod(0)
    try:
        async with Client(unprivileged_server(server_env(settings)), mode="legacy") as client:
            text = error_text(await client.call_tool("apply_caption_review", {"review_file": str(review)}))
    finally:
        review.chmod(0o644)
    assert "EACCES" in text and str(review) in text


def test_os_error_text_names_errno_path_and_next_step() -> None:
    text = os_error_text(PermissionError(errno.EACCES, "Permission denied", "/data/set/a.txt"))
    assert text.startswith("An operating-system error stopped the tool: EACCES (Permission denied) on ")
    assert "'/data/set/a.txt'" in text and "Next: lora-mcp's user may not access" in text
    moved = os_error_text(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"))
    assert "EXDEV" in moved and "'/a' -> '/b'" in moved and "Next: Check the files involved" in moved
    assert "Next:" in os_error_text(TimeoutError()) and "TimeoutError" in os_error_text(TimeoutError())
    long = os_error_text(OSError(errno.ENAMETOOLONG, "File name too long", "/r/" + "y" * 5000))
    assert len(long) < 600 and "ENAMETOOLONG" in long
    assert "b'" not in os_error_text(FileNotFoundError(errno.ENOENT, "No such file", b"/r/\xff"))


def test_sync_and_async_tools_both_translate() -> None:
    @tool_errors
    def sync_tool() -> None:
        raise IsADirectoryError(errno.EISDIR, "Is a directory", "/r/x.txt")

    with pytest.raises(ToolError, match=r"EISDIR .* on '/r/x.txt'") as info:
        sync_tool()
    assert isinstance(info.value.__cause__, IsADirectoryError)


async def test_async_tool_translates_and_other_errors_stay_crashes() -> None:
    @tool_errors
    async def async_tool(kind: str) -> None:
        if kind == "os":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/r/gone.png")
        raise RuntimeError("a bug")

    with pytest.raises(ToolError, match=r"ENOENT .*A file vanished"):
        await async_tool("os")
    with pytest.raises(RuntimeError):  # not an OSError: the SDK reports a crash, its text stays on the server
        await async_tool("bug")
