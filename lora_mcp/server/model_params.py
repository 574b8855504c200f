"""Tool parameters generated from a pydantic model, so a tool's schema and its domain model cannot drift apart."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, WithJsonSchema

F = TypeVar("F", bound=Callable[..., Any])


def with_model_parameters(model: type[BaseModel]) -> Callable[[F], F]:
    """Replace a tool's `**fields` with `model`'s fields as keyword parameters, schema copied from the model.

    The MCP SDK builds the tool's input schema from the signature. Each field's published schema is the model's
    own (description, range, pattern, default); the SDK checks only the types, so range and rule violations reach
    the model's validation and come back as InvalidInput with a fix, not as a bare pydantic error.
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p.replace(kind=p.KEYWORD_ONLY) for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        properties = model.model_json_schema()["properties"]
        fields = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if info.is_required() else info.default,
                annotation=Annotated[info.annotation, WithJsonSchema(properties[name])],
            )
            for name, info in model.model_fields.items()
        ]
        fn.__signature__ = sig.replace(parameters=[*fields, *own])  # type: ignore[attr-defined]
        return fn

    return decorate
