"""Confinement of every agent-supplied path to the configured roots.

A path is accepted only when, after resolving `..` and every symlink, it lies inside one of the roots. Relative
paths are taken relative to the first root. Nothing here touches a file outside the roots: resolution uses
`os.path.realpath`, which only reads link targets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from lora_mcp.errors import InvalidInput, NotFound, PathNotAllowed

NAME_MAX = 255
"""Longest file or folder name, in bytes (Linux NAME_MAX; macOS and Windows allow 255 characters)."""
PATH_MAX = 4096
"""Longest whole path, in bytes (Linux PATH_MAX)."""


def _roots_text(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def _dash_refusal(text: str, part: str, what: str) -> PathNotAllowed:
    return PathNotAllowed(
        f"The {what} {text!r} has a component {part!r} starting with '-', which tools could read as an option.",
        hint="Rename the file or folder so no part of its path starts with '-'.",
        field=what,
    )


def _shorten(text: str, keep: int = 24) -> str:
    """`text`, or its head and tail around an ellipsis when it is long (error messages stay readable)."""
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}...{text[-keep:]}"


def _check_lengths(text: str, candidate: Path, what: str) -> None:
    """Refuse names the file system would refuse (ENAMETOOLONG) or cannot encode, before anything touches them."""
    try:
        encoded = [(part, len(part.encode("utf-8", "surrogateescape"))) for part in candidate.parts]
    except UnicodeEncodeError:
        raise PathNotAllowed(
            f"The {what} {_shorten(text)!r} holds characters that cannot be encoded as a file name "
            "(a lone UTF-16 surrogate).",
            hint="Pass the path as plain UTF-8 text.",
            field=what,
        ) from None
    for part, size in encoded:
        if size > NAME_MAX:
            raise PathNotAllowed(
                f"The {what} has a component {_shorten(part)!r} of {size} bytes; a file or folder name may be at "
                f"most {NAME_MAX} bytes (UTF-8).",
                hint=f"Shorten that name to {NAME_MAX} bytes or fewer (accented and non-Latin letters take 2-4 "
                "bytes each), then call again.",
                field=what,
            )
    total = len(str(candidate).encode("utf-8", "surrogateescape"))
    if total > PATH_MAX:
        raise PathNotAllowed(
            f"The {what} {_shorten(text)!r} is {total} bytes long; a whole path may be at most {PATH_MAX} bytes.",
            hint="Use a shorter path (fewer or shorter folder names), then call again.",
            field=what,
        )


class Roots(list[Path]):
    """The folders an agent may use, and the folders inside them it may not (`excluded`: lora-mcp's state folder).

    An operator may list a parent of LORA_MCP_HOME as a root (LORA_MCP_ROOTS=$HOME with the default home under
    ~/.local/state). The state folder (jobs.db, notify.db, each job's frozen config and launch record) then lies in a
    root, yet no agent's tool may reach it; a root inside it (the default workspace) stays usable.
    """

    def __init__(self, roots: Iterable[Path] = (), excluded: Iterable[Path] = ()) -> None:
        super().__init__(roots)
        self.excluded = tuple(excluded)


def fenced(resolved: Path, roots: Sequence[Path]) -> Path | None:
    """The excluded folder of `roots` that `resolved` lies in (and no root inside that folder holds it), or None."""
    for fence in getattr(roots, "excluded", ()):
        real_fence = Path(os.path.realpath(fence))
        if not resolved.is_relative_to(real_fence):
            continue
        inner = (Path(os.path.realpath(r)) for r in roots)
        if not any(r != real_fence and r.is_relative_to(real_fence) and resolved.is_relative_to(r) for r in inner):
            return real_fence
    return None


def confine(raw: str | os.PathLike[str], roots: Sequence[Path], *, what: str = "path") -> Path:
    """Resolve `raw` and return it if it lies inside one of `roots`; raise PathNotAllowed otherwise."""
    text = os.fspath(raw)
    if not isinstance(text, str) or not text.strip():
        raise PathNotAllowed(
            f"The {what} is empty.", hint="Pass a folder or file inside the allowed roots.", field=what
        )
    if "\x00" in text:
        raise PathNotAllowed(f"The {what} contains a NUL byte.", hint="Pass a plain path.", field=what)
    if not roots:
        raise PathNotAllowed("No roots are configured.", hint="Set LORA_MCP_ROOTS.", field=what)
    candidate = Path(text).expanduser()
    _check_lengths(text, candidate if candidate.is_absolute() else roots[0] / candidate, what)
    if not candidate.is_absolute():
        # Only the agent's own part is checked for '-': a root such as /data/-old is the operator's choice.
        for part in candidate.parts:
            if part.startswith("-"):
                raise _dash_refusal(text, part, what)
        candidate = roots[0] / candidate
    resolved = Path(os.path.realpath(candidate))
    if (fence := fenced(resolved, roots)) is not None:
        raise PathNotAllowed(
            f"The {what} {text!r} is refused: it lies in lora-mcp's state folder ({fence}), which holds the job "
            "database and every job's frozen config.",
            hint="Use a path elsewhere in the roots. An operator who lists a parent of the state folder as a root "
            "can move LORA_MCP_HOME out of LORA_MCP_ROOTS; the state folder stays closed to agents either way.",
            field=what,
        )
    dashed: list[str] = []
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if resolved.is_relative_to(real_root):
            dashed = [part for part in resolved.relative_to(real_root).parts if part.startswith("-")]
            if not dashed:
                return resolved
    if dashed:
        raise _dash_refusal(text, dashed[0], what)
    lexical = Path(os.path.normpath(candidate))
    inside_lexically = any(lexical.is_relative_to(Path(os.path.normpath(r))) for r in roots)
    reason = "a symlink in it points outside" if inside_lexically else "it lies outside"
    raise PathNotAllowed(
        f"The {what} {text!r} is refused: {reason} the allowed roots ({_roots_text(roots)}).",
        hint="Use a path inside one of the roots, or ask the operator to add a root with LORA_MCP_ROOTS.",
        field=what,
    )


def confine_existing_dir(raw: str | os.PathLike[str], roots: Sequence[Path], *, what: str = "folder") -> Path:
    """Like `confine`, and the result must be an existing directory."""
    path = confine(raw, roots, what=what)
    if not path.exists():
        raise NotFound(
            f"The {what} {os.fspath(raw)!r} does not exist ({path}).",
            hint="Check the spelling, or call inspect_dataset on a parent folder.",
            field=what,
        )
    if not path.is_dir():
        raise PathNotAllowed(
            f"The {what} {os.fspath(raw)!r} is a file, not a folder.",
            hint="Pass the folder that holds the images.",
            field=what,
        )
    return path


def confine_existing_file(raw: str | os.PathLike[str], roots: Sequence[Path], *, what: str = "file") -> Path:
    """Like `confine`, and the result must be an existing regular file."""
    path = confine(raw, roots, what=what)
    if not path.is_file():
        raise NotFound(
            f"The {what} {os.fspath(raw)!r} does not exist or is not a file ({path}).",
            hint="Check the path; generated configs are returned as config_path.",
            field=what,
        )
    return path


def local_folder(raw: str) -> Path:
    """A folder a person named on the command line, resolved; InvalidInput if it is not a folder.

    Not confined: a person at their own terminal may point at any folder they can read.
    """
    folder = Path(raw).expanduser().resolve()
    if not folder.is_dir():
        raise InvalidInput(f"{raw} is not a folder.", hint="Pass the folder that holds the images.", field="folder")
    return folder
