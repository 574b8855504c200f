"""The OpenAPI 3.1 document of the REST API, generated from the operation table and its pydantic models."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lora_mcp import __version__
from lora_mcp.server.rest.models import PREFIX, EventRecord
from lora_mcp.server.rest.problems import PROBLEM_MEDIA_TYPE, ProblemDetails
from lora_mcp.server.rest.routes import Operation

REF = "#/components/schemas/{model}"


def _models(operations: Sequence[Operation]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ProblemDetails": ProblemDetails, "EventRecord": EventRecord}
    for op in operations:
        for model in (op.body, op.response):
            if model is not None:
                found.setdefault(model.__name__, model)
    return list(found.values())


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)(?::\w+)?}", op.path)
    ]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=REF)
        for name, prop in schema.get("properties", {}).items():
            entry = {"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
            if "description" in prop:
                entry["description"] = prop["description"]
            params.append(entry)
    if op.response is None and op.media_type == "text/event-stream":
        params.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "Resume after this event seq (wins over `after`).",
                "schema": {"type": "string"},
            }
        )
    return params


def _operation(op: Operation) -> dict[str, Any]:
    summary, _, description = op.summary.partition("\n")
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF.format(model="ProblemDetails")}}}
    if op.response is not None:
        ok: dict[str, Any] = {op.media_type: {"schema": {"$ref": REF.format(model=op.response.__name__)}}}
    elif op.media_type == "text/event-stream":
        ok = {op.media_type: {"schema": {"$ref": REF.format(model="EventRecord")}}}
    else:
        ok = {op.media_type: {"schema": {"type": "string", "format": "binary"}}}
    spec: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": summary.strip(),
        "parameters": _parameters(op),
        "responses": {
            "200": {"description": "OK", "content": ok},
            "default": {"description": "A problem", "content": problem},
        },
    }
    if description.strip():
        spec["description"] = description.strip()
    if op.body is not None:
        body_ref = {"$ref": REF.format(model=op.body.__name__)}
        spec["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_ref}}}
    return spec


def openapi_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `operations`."""
    _, defs = models_json_schema([(model, "validation") for model in _models(operations)], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = PREFIX + re.sub(r"{(\w+):\w+}", r"{\1}", op.path)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lora-mcp REST API",
            "version": __version__,
            "description": "The MCP server's operations over plain HTTP; errors are RFC 9457 problem details.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
