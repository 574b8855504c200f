"""Translate domain errors into ToolErrors once, at the edge.

A LoraMcpError carries its own message and hint. An OSError that the domain code did not anticipate (a name the
file system refuses, a caption path that is a folder, a full disk) would otherwise reach the agent as the SDK's bare
"Error executing tool": it becomes an OperationFailed-style message naming the errno, the path and what to do. The
traceback goes to the server log only.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from mcp.server.mcpserver.exceptions import ToolError

from lora_mcp.errors import LoraMcpError, OperationFailed

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)

_HINTS_BY_NAME = {
    "ENAMETOOLONG": "Shorten the file or folder names (at most 255 bytes per name, 4096 per path), then call again.",
    "EACCES": "lora-mcp's user may not access this path: fix its permissions (or move it out of the folder), then "
    "call again.",
    "EPERM": "lora-mcp's user may not change this path: fix its permissions or ownership, then call again.",
    "EROFS": "The file system is read-only: copy the dataset to a writable folder inside the roots.",
    "ENOSPC": "The disk is full: free space (system_check shows free disk), then call again.",
    "EDQUOT": "The disk quota is used up: free space, then call again.",
    "ENOENT": "A file vanished while the tool ran (did another program move it?): check the folder, then call again.",
    "EISDIR": "A folder sits where a file is expected: rename or remove that folder, then call again.",
    "ENOTDIR": "A file sits where a folder is expected: rename or remove that file, then call again.",
    "ELOOP": "A symlink loop is in the way: remove the looping symlink, then call again.",
    "EIO": "The disk reported an I/O error: check the disk (dmesg), then call again.",
}
_OS_HINTS = {getattr(errno, name): hint for name, hint in _HINTS_BY_NAME.items() if hasattr(errno, name)}
_DEFAULT_HINT = "Check the files involved (permissions, free disk, another program using them), then call again."


def _shorten(name: str, keep: int = 120) -> str:
    return name if len(name) <= 2 * keep + 3 else f"{name[:keep]}...{name[-keep:]}"


def os_error_text(exc: OSError) -> str:
    """An agent-readable message for an OSError: the errno name and text, the path, and what to do."""
    code = errno.errorcode.get(exc.errno, "") if isinstance(exc.errno, int) else ""
    reason = f"{code} ({exc.strerror})" if code else _shorten(f"{type(exc).__name__}: {exc}".rstrip(": "))
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if isinstance(p, str | bytes | os.PathLike)]
    where = f" on {' -> '.join(repr(_shorten(p)) for p in paths)}" if paths else ""
    hint = _OS_HINTS.get(exc.errno, _DEFAULT_HINT) if isinstance(exc.errno, int) else _DEFAULT_HINT
    return str(OperationFailed(f"An operating-system error stopped the tool: {reason}{where}.", hint=hint))


def _translate(fn_name: str, exc: LoraMcpError | OSError) -> ToolError:
    if isinstance(exc, LoraMcpError):
        return ToolError(str(exc))
    log.warning("tool %s: unanticipated %r", fn_name, exc, exc_info=exc)  # the traceback stays in the server log
    return ToolError(os_error_text(exc))


def tool_errors(fn: F) -> F:
    """Wrap a tool so that a LoraMcpError (message and hint) or an OSError (errno, path, hint) reaches the agent
    as a ToolError instead of a bare "Error executing tool"."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (LoraMcpError, OSError) as exc:
                raise _translate(fn.__name__, exc) from exc

        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LoraMcpError, OSError) as exc:
            raise _translate(fn.__name__, exc) from exc

    return cast(F, wrapper)
