"""Typed errors. Each carries a message that names the bad value and the rule, and a hint saying what to do next.

Two families, kept apart on purpose (like pydantic-ai's ModelRetry vs. a failure):
- `InvalidInput`: the caller's arguments are wrong; fix them and call again.
- `OperationFailed`: the arguments were fine but the work could not be done; adapt (free disk, install, wait).
The server translates both into MCP tool errors once, at the edge (`lora_mcp.server.errors`): the text (message and
"Next:" hint) plus a structured error object `{"code", "retryable", "field", "hint", "message"}`.

`retryable` answers "may the very same call succeed later, without changing its arguments?": False for every
`InvalidInput` (fix the arguments first), True for `OperationFailed` and `StoreUnavailable` (the cause lies outside
the arguments: wait, free disk, install or configure something, then call again unchanged).
"""

from __future__ import annotations


class LoraMcpError(Exception):
    """Base of every error lora-mcp raises on purpose."""

    code: str = "error"
    """Machine-readable kind of error, the `code` of the structured tool error."""
    retryable: bool = False
    """Whether the same call, arguments unchanged, may succeed later (see the module docstring)."""

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


class PreconditionFailed(InvalidInput):
    """The arguments are well-formed, but the thing they name is in the wrong state (a job still running, a job
    already succeeded). `retryable` says whether waiting can change that state."""

    code = "precondition_failed"

    def __init__(self, message: str, *, retryable: bool, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message, hint=hint, field=field)
        self.retryable = retryable


class OperationFailed(LoraMcpError):
    """The work could not be done for a reason other than the arguments."""

    code = "operation_failed"
    retryable = True


class StoreUnavailable(OperationFailed):
    """The job database cannot be opened or rebuilt (read-only state folder, a folder in its place, ...)."""

    code = "store_unavailable"
