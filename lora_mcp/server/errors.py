"""Translate domain errors into MCP tool errors once, at the edge.

A LoraMcpError carries its own message and hint. An OSError that the domain code did not anticipate (a name the
file system refuses, a caption path that is a folder, a full disk) would otherwise reach the agent as the SDK's bare
"Error executing tool": it becomes an OperationFailed naming the errno, the path and what to do. The traceback goes
to the server log only.

Two layers: `tool_errors` (on every tool) raises a `StructuredToolError`, a ToolError that also holds the structured
error object; `structured_tool_errors(server)` (once, on the server) turns it into the result the agent gets: the
SDK's text unchanged ("Error executing tool NAME: message Next: hint"), `isError: true`, and
`_meta["lora-mcp/error"] = {"code", "retryable", "field", "hint", "message"}`. Without the second layer the SDK
still reports the ToolError as text.

Why `_meta` and not `structuredContent`: every tool declares an outputSchema, and the TypeScript SDK's client (so
the MCP Inspector, and other TS-based clients) validates `structuredContent` against it even when `isError` is true
(modelcontextprotocol/typescript-sdk#1943): a structured error turns into the protocol error "-32602 Structured
content does not match the tool's output schema" and the agent loses the message. The Python SDK skips that
validation for error results on both ends; once the TS clients in use do too, moving the object into
`structuredContent` is one line in `error_result`.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, TextContent
from pydantic import BaseModel, Field

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


ERROR_META_KEY = "lora-mcp/error"
"""The `_meta` key of a tool error's structured error object."""


class ToolErrorInfo(BaseModel):
    """The structured error object of a tool error."""

    code: str = Field(description="invalid_input, path_not_allowed, not_found, operation_failed, ...")
    retryable: bool = Field(description="True: the same call may succeed later unchanged; false: fix the arguments.")
    field: str | None = Field(default=None, description="The argument at fault, when one is.")
    hint: str | None = Field(default=None, description="What to do next.")
    message: str = Field(description="What went wrong, naming the bad value and the rule.")


def os_error(exc: OSError) -> OperationFailed:
    """An OSError as an OperationFailed: the errno name and text, the path, and what to do."""
    code = errno.errorcode.get(exc.errno, "") if isinstance(exc.errno, int) else ""
    reason = f"{code} ({exc.strerror})" if code else _shorten(f"{type(exc).__name__}: {exc}".rstrip(": "))
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if isinstance(p, str | bytes | os.PathLike)]
    where = f" on {' -> '.join(repr(_shorten(p)) for p in paths)}" if paths else ""
    hint = _OS_HINTS.get(exc.errno, _DEFAULT_HINT) if isinstance(exc.errno, int) else _DEFAULT_HINT
    return OperationFailed(f"An operating-system error stopped the tool: {reason}{where}.", hint=hint)


def os_error_text(exc: OSError) -> str:
    """An agent-readable message for an OSError: the errno name and text, the path, and what to do."""
    return str(os_error(exc))


class StructuredToolError(ToolError):
    """A ToolError that also holds the structured error object (see the module docstring)."""

    def __init__(self, error: LoraMcpError) -> None:
        super().__init__(str(error))
        self.info = ToolErrorInfo(
            code=error.code, retryable=error.retryable, field=error.field, hint=error.hint, message=error.message
        )


def missing_module(exc: ModuleNotFoundError) -> OperationFailed:
    """A library the tool needs is not installed: name it and the install command."""
    return OperationFailed(
        f"lora-mcp cannot run this tool: the Python package {exc.name or 'it needs'!r} is not installed.",
        hint="Install lora-mcp with its extras into the server's environment (pip install -e '.[all]' in the "
        "lora-mcp folder, or the package that provides that module) and restart the server.",
    )


def translate(fn_name: str, exc: LoraMcpError | OSError | ModuleNotFoundError) -> StructuredToolError:
    """A domain error, an OS error or a missing library as the tool error an agent reads (REST problems use it too)."""
    if isinstance(exc, LoraMcpError):
        return StructuredToolError(exc)
    if isinstance(exc, ModuleNotFoundError):
        log.warning("tool %s: missing module %r", fn_name, exc.name, exc_info=exc)
        return StructuredToolError(missing_module(exc))
    log.warning("tool %s: unanticipated %r", fn_name, exc, exc_info=exc)  # the traceback stays in the server log
    return StructuredToolError(os_error(exc))


def error_result(exc: ToolError, info: ToolErrorInfo) -> CallToolResult:
    """The tool error an agent reads: the SDK's text and `isError`, plus `_meta[ERROR_META_KEY]`."""
    return CallToolResult(
        content=[TextContent(type="text", text=str(exc))],
        is_error=True,
        _meta={ERROR_META_KEY: info.model_dump(mode="json")},
    )


def structured_tool_errors(server: MCPServer) -> MCPServer:
    """Make `server` answer a StructuredToolError with `error_result` (the SDK would send its text only).

    MCPServer's tools/call handler calls `self.call_tool` and turns a ToolError into a text-only error result;
    this wraps that method on the instance, so every tool, and every transport, gets the structured error."""
    if getattr(server, "_structured_tool_errors", False):
        return server
    call_tool = server.call_tool

    async def call_tool_with_errors(
        name: str, arguments: dict[str, Any], context: Any = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, StructuredToolError):
                log.info("tool %r failed: %r", name, str(exc))
                return error_result(exc, exc.__cause__.info)
            raise

    server.call_tool = call_tool_with_errors  # type: ignore[method-assign]
    server._structured_tool_errors = True  # type: ignore[attr-defined]
    return server


def description(doc: str | None) -> str | None:
    """A docstring as a tool description: indentation removed, each paragraph on one line (the SDK sends
    `__doc__` as it is, so a wrapped docstring would reach the agent with a newline and eight spaces)."""
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def tool_errors(fn: F) -> F:
    """Wrap a tool so that a LoraMcpError (message and hint) or an OSError (errno, path, hint) reaches the agent
    as a StructuredToolError instead of a bare "Error executing tool"; the wrapper's
    docstring, which the SDK publishes as the description, is dedented."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (LoraMcpError, OSError, ModuleNotFoundError) as exc:
                raise translate(fn.__name__, exc) from exc

        async_wrapper.__doc__ = description(fn.__doc__)
        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LoraMcpError, OSError, ModuleNotFoundError) as exc:
            raise translate(fn.__name__, exc) from exc

    wrapper.__doc__ = description(fn.__doc__)
    return cast(F, wrapper)
