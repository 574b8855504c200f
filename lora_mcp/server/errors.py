"""Translate domain errors into ToolErrors once, at the edge."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from mcp.server.mcpserver.exceptions import ToolError

from lora_mcp.errors import LoraMcpError

F = TypeVar("F", bound=Callable[..., Any])


def tool_errors(fn: F) -> F:
    """Wrap a tool so that a LoraMcpError reaches the agent as a ToolError carrying its full message and hint."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except LoraMcpError as exc:
                raise ToolError(str(exc)) from exc

        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LoraMcpError as exc:
            raise ToolError(str(exc)) from exc

    return cast(F, wrapper)
