"""Path confinement: hostile input is refused with a message that names the path and the roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client

from lora_mcp.errors import NotFound, PathNotAllowed
from lora_mcp.paths import confine, confine_existing_dir, confine_existing_file
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the root, holding a secret file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret")
    return folder


@pytest.fixture
def inside(root: Path) -> Path:
    """A dataset folder inside the root, with one file."""
    folder = root / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    return folder


def refused(raw: str | os.PathLike[str], roots: list[Path]) -> str:
    with pytest.raises(PathNotAllowed) as info:
        confine(raw, roots)
    return str(info.value)


# --- accepted ----------------------------------------------------------------------------------------------------


def test_relative_path_is_resolved_against_the_first_root(root: Path, inside: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    assert confine("data", [root, second]) == inside
    assert confine("data/a.txt", [root]) == inside / "a.txt"
    assert confine(".", [root]) == root


def test_absolute_path_inside_and_the_root_itself(root: Path, inside: Path) -> None:
    assert confine(str(inside), [root]) == inside
    assert confine(str(root), [root]) == root


def test_dotdot_that_stays_inside_is_normalised(root: Path, inside: Path) -> None:
    assert confine("data/../data/./a.txt", [root]) == inside / "a.txt"


def test_nonexistent_path_inside_is_confined_but_not_found(root: Path) -> None:
    assert confine("new/folder", [root]) == root / "new" / "folder"
    with pytest.raises(NotFound, match="does not exist"):
        confine_existing_dir("new/folder", [root])


def test_symlink_inside_pointing_inside_is_followed(root: Path, inside: Path) -> None:
    (root / "alias").symlink_to(inside)
    assert confine("alias/a.txt", [root]) == inside / "a.txt"


def test_root_that_is_itself_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    (real / "data").mkdir(parents=True)
    link = tmp_path / "link-root"
    link.symlink_to(real)
    # Given the link as root, paths through the link and through the target are both inside.
    assert confine(str(link / "data"), [link]) == real / "data"
    assert confine(str(real / "data"), [link]) == real / "data"
    assert confine("data", [link]) == real / "data"
    # Settings resolve a symlinked root once, at start-up.
    assert Settings(roots=[link]).roots == [real]


def test_multiple_roots(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "x").mkdir(parents=True)
    (b / "y").mkdir(parents=True)
    assert confine(str(b / "y"), [a, b]) == b / "y"
    assert confine(str(a / "x"), [a, b]) == a / "x"
    assert confine("x", [a, b]) == a / "x"  # relative: against the first root only
    message = refused(str(tmp_path / "c"), [a, b])
    assert str(a) in message and str(b) in message


def test_operator_root_with_a_dash_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "-datasets"
    (root / "cats").mkdir(parents=True)
    assert confine(str(root / "cats"), [root]) == root / "cats"
    assert confine("cats", [root]) == root / "cats"


# --- refused -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["..", "../outside", "data/../../outside/secret.txt", "./../../..", "../root-x"])
def test_dotdot_escapes(root: Path, outside: Path, raw: str) -> None:
    message = refused(raw, [root])
    assert repr(raw) in message
    assert str(root) in message
    assert "LORA_MCP_ROOTS" in message


@pytest.mark.parametrize("raw", ["/", "/etc", "/etc/passwd", "~", "~/.ssh"])
def test_absolute_paths_elsewhere(root: Path, raw: str) -> None:
    assert "lies outside" in refused(raw, [root])


def test_sibling_with_root_as_prefix_is_outside(root: Path) -> None:
    sibling = Path(str(root) + "-evil")
    sibling.mkdir()
    refused(str(sibling), [root])


def test_symlinked_file_pointing_out(root: Path, outside: Path) -> None:
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    message = refused("leak.txt", [root])
    assert "symlink" in message
    with pytest.raises(PathNotAllowed):
        confine_existing_file("leak.txt", [root])


def test_symlinked_dir_pointing_out(root: Path, outside: Path) -> None:
    (root / "escape").symlink_to(outside)
    assert "symlink" in refused("escape", [root])
    assert "symlink" in refused("escape/secret.txt", [root])
    assert "symlink" in refused(str(root / "escape" / "secret.txt"), [root])
    with pytest.raises(PathNotAllowed):
        confine_existing_dir("escape", [root])


def test_relative_symlink_pointing_out(root: Path, outside: Path) -> None:
    (root / "up").symlink_to("../outside")
    refused("up/secret.txt", [root])


def test_symlink_loop_is_not_an_escape_and_not_found(root: Path) -> None:
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    try:
        path = confine("loop-a", [root])
    except PathNotAllowed:
        return  # refusing a loop outright is fine too
    assert path.is_relative_to(root)
    with pytest.raises((NotFound, PathNotAllowed)):
        confine_existing_dir("loop-a", [root])
    with pytest.raises((NotFound, PathNotAllowed)):
        confine_existing_file("loop-a", [root])


def test_self_loop(root: Path) -> None:
    (root / "self").symlink_to(root / "self")
    with pytest.raises((NotFound, PathNotAllowed)):
        confine_existing_dir("self", [root])


def test_nul_byte(root: Path) -> None:
    assert "NUL" in refused("data\x00/../../etc", [root])


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty(root: Path, raw: str) -> None:
    assert "empty" in refused(raw, [root])


@pytest.mark.parametrize("raw", ["-rf", "--output=x", "data/-x", "./-v"])
def test_names_starting_with_dash(root: Path, raw: str) -> None:
    assert "starting with '-'" in refused(raw, [root])


def test_absolute_path_through_a_dash_folder_inside(root: Path) -> None:
    (root / "-opt").mkdir()
    assert "starting with '-'" in refused(str(root / "-opt"), [root])


def test_no_roots() -> None:
    assert "LORA_MCP_ROOTS" in refused("data", [])


def test_existing_dir_and_file_checks(root: Path, inside: Path) -> None:
    assert confine_existing_dir("data", [root]) == inside
    assert confine_existing_file("data/a.txt", [root]) == inside / "a.txt"
    with pytest.raises(PathNotAllowed, match="is a file, not a folder"):
        confine_existing_dir("data/a.txt", [root])
    with pytest.raises(NotFound):
        confine_existing_file("data", [root])


def test_nothing_outside_the_roots_is_opened(root: Path, outside: Path) -> None:
    """A FIFO blocks whoever opens it: if confinement opened the path outside, this test would hang."""
    fifo = outside / "pipe"
    os.mkfifo(fifo)
    (root / "pipe-link").symlink_to(fifo)
    for raw in (str(fifo), "pipe-link", "../outside/pipe"):
        with pytest.raises(PathNotAllowed):
            confine_existing_file(raw, [root])
        with pytest.raises(PathNotAllowed):
            confine_existing_dir(raw, [root])


def test_unreadable_folder_outside_is_refused_not_crashed(root: Path, outside: Path) -> None:
    locked = outside / "locked"
    locked.mkdir()
    (locked / "x").write_text("x")
    locked.chmod(0)
    try:
        refused(str(locked / "x"), [root])
    finally:
        locked.chmod(0o755)


# --- through the MCP tool ----------------------------------------------------------------------------------------

ESCAPES = [
    "..",
    "../outside",
    "/etc",
    "/",
    "~",
    "escape",
    "escape/",
    "loop",
    "data\x00",
    "",
    "-rf",
    "data/../../outside",
    "leak.txt",
]


@pytest.mark.anyio
async def test_inspect_dataset_refuses_every_escape(settings: Settings, root: Path, outside: Path) -> None:
    (root / "escape").symlink_to(outside)
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "loop").symlink_to(root / "loop")
    async with Client(build_server(settings), mode="legacy") as client:
        for raw in ESCAPES:
            result = await client.call_tool("inspect_dataset", {"folder": raw})
            assert result.is_error, f"{raw!r} was not refused: {result.structured_content}"
            text = result.content[0].text  # type: ignore[union-attr]
            assert "Next:" in text, f"{raw!r}: the error gives the agent no next step: {text}"
            assert "secret" not in text.replace("secret.txt", ""), text


# --- names and paths the file system would refuse ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a" * 256, "256 bytes"),
        ("data/" + "b" * 300 + "/x", "300 bytes"),
        ("\u00e9" * 128, "256 bytes"),  # 128 characters, but 2 bytes each in UTF-8
        ("\U0001f600" * 64, "256 bytes"),
    ],
)
def test_component_over_name_max_is_refused_with_the_name_shortened(root: Path, raw: str, expected: str) -> None:
    message = refused(raw, [root])
    assert expected in message and "at most 255 bytes" in message and "Shorten that name" in message
    assert len(message) < 400, "the refused name is shortened, not repeated whole"


def test_component_of_exactly_name_max_is_fine(root: Path) -> None:
    assert confine("c" * 255, [root]) == root / ("c" * 255)
    assert confine("\u00e9" * 127, [root]) == root / ("\u00e9" * 127)


def test_absolute_path_with_a_long_component_is_refused(root: Path) -> None:
    assert "256 bytes" in refused(str(root / ("d" * 256)), [root])


def test_whole_path_over_path_max_is_refused(root: Path) -> None:
    deep = "/".join(["e" * 200] * 21)  # every name is fine, the whole is over 4096 bytes
    message = refused(deep, [root])
    assert "at most 4096 bytes" in message and "shorter path" in message
    assert len(message) < 400


def test_lone_surrogate_is_refused(root: Path) -> None:
    assert "cannot be encoded" in refused("data/\ud800", [root])


def test_long_names_refused_before_the_file_system_is_asked(root: Path) -> None:
    with pytest.raises(PathNotAllowed, match="255 bytes"):
        confine_existing_dir("f" * 1000, [root])
    with pytest.raises(PathNotAllowed, match="255 bytes"):
        confine_existing_file("g" * 1000, [root])


LONG_NAMES = ["a" * 256, "data/" + "\u00e9" * 200, "/".join(["h" * 250] * 20), "x\ud800"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "argument", "extra"),
    [
        ("inspect_dataset", "folder", {}),
        ("conform_filenames", "folder", {"dry_run": False}),
        ("caption_images", "folder", {"backend": "template"}),
        ("review_captions", "folder", {"trigger_word": "ohwx"}),
        ("apply_caption_review", "review_file", {}),
        ("generate_training_config", "dataset_folder", {"name": "n", "trigger_word": "ohwx", "vram_gb": 16}),
    ],
)
async def test_every_path_tool_refuses_long_names_with_a_next_step(
    settings: Settings, root: Path, tool: str, argument: str, extra: dict[str, object]
) -> None:
    async with Client(build_server(settings), mode="legacy") as client:
        for raw in LONG_NAMES:
            result = await client.call_tool(tool, {argument: raw, **extra})
            text = result.content[0].text  # type: ignore[union-attr]
            assert result.is_error, f"{tool}: {raw[:20]!r} was accepted"
            assert "Next:" in text and text != f"Error executing tool {tool}", f"{tool}: bare error: {text}"
            assert "bytes" in text or "cannot be encoded" in text, text
            assert "Traceback" not in text
    assert sorted(p.name for p in root.iterdir()) == [], "nothing was created"
