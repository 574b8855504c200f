"""Typed errors. Each carries a message that names the bad value and the rule, and a hint saying what to do next.

Two families, kept apart on purpose (like pydantic-ai's ModelRetry vs. a failure):
- `InvalidInput`: the caller's arguments are wrong; fix them and call again.
- `OperationFailed`: the arguments were fine but the work could not be done; adapt (free disk, install, wait).
The server translates both into MCP ToolErrors once, at the edge (`lora_mcp.server`).
"""

from __future__ import annotations


class LoraMcpError(Exception):
    """Base of every error lora-mcp raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.field = field

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} Next: {self.hint}"
        return self.message


class InvalidInput(LoraMcpError):
    """The arguments are wrong: fix them and retry."""

    code = "invalid_input"


class PathNotAllowed(InvalidInput):
    """A path lies outside the configured roots or is malformed."""

    code = "path_not_allowed"


class NotFound(InvalidInput):
    """A file, folder or job that the caller named does not exist."""

    code = "not_found"


class OperationFailed(LoraMcpError):
    """The work could not be done for a reason other than the arguments."""

    code = "operation_failed"


class StoreUnavailable(OperationFailed):
    """The job database cannot be opened or rebuilt (read-only state folder, a folder in its place, ...)."""

    code = "store_unavailable"
