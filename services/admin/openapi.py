"""The OpenAPI 3.1 document, generated from the operation table and its pydantic models."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .models import ID_PATTERN, Health
from .problems import Problem
from .routes import Operation

REF = "#/components/schemas/{model}"
HEADER_DOCS = {
    "ETag": "The entity's version, quoted; send it back in `If-Match`.",
    "Location": "The new entity's URL.",
    "Hookline-Result": "`created`, `updated` or `unchanged`.",
    "Hookline-Changed-Fields": "The fields that changed, comma-separated.",
    "Retry-After": "Seconds to wait before trying again.",
    "WWW-Authenticate": "`Bearer`.",
}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        prop.pop("default", None) if prop.get("default") is None else None
        options = prop.pop("anyOf", None)
        if options is not None:  # "x or null": a query parameter is simply left out instead
            options = [o for o in options if o.get("type") != "null"]
            prop = {**prop, **options[0]} if len(options) == 1 else {**prop, "anyOf": options}
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        out.append(param)
    return out


def _patch_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of ``schema``: every field optional, and null (back to the default)."""
    patched = copy.deepcopy(schema)
    patched.pop("required", None)
    for name, prop in list(patched.get("properties", {}).items()):
        options = prop.get("anyOf")
        if options is not None and any(o.get("type") == "null" for o in options):
            continue
        meta = {k: prop.pop(k) for k in ("title", "description", "default") if k in prop}
        patched["properties"][name] = {"anyOf": [prop, {"type": "null"}], **meta}
    patched["description"] = (
        "A merge patch at the top level: a present field replaces the current value "
        "(objects whole), null resets it to the default, an absent field stays."
    )
    return patched


def openapi_document(ops: Sequence[Operation], *, version: str) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (Problem, "serialization"),
        (Health, "serialization"),
    ]
    for op in ops:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        wanted.extend(
            (answer.model, "serialization")
            for answer in op.all_answers().values()
            if answer.model is not None
        )
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(refs[(model, mode)])

    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
        }
        parameters: list[dict[str, Any]] = []
        if "{id}" in op.path:
            id_schema: dict[str, Any] = {"type": "string", "minLength": 1}
            if not op.path.startswith("/v1/deliveries"):
                id_schema = {"type": "string", "pattern": ID_PATTERN, "maxLength": 128}
            parameters.append({"name": "id", "in": "path", "required": True, "schema": id_schema})
        if op.query is not None:
            parameters += _query_parameters(op.query)
        if op.if_match:
            parameters.append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": "The version (`ETag`) the change is based on; 412 when stale.",
                    "schema": {"type": "string"},
                }
            )
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            body_schema = ref(op.body, "validation")
            media = ["application/json"]
            if op.merge_patch:
                name = body_schema["$ref"].rsplit("/", 1)[-1]
                schemas[f"{name}Patch"] = _patch_schema(schemas[name])
                body_schema = {"$ref": REF.format(model=f"{name}Patch")}
                media = ["application/merge-patch+json", "application/json"]
            entry["requestBody"] = {
                "required": op.body_required,
                "content": {m: {"schema": body_schema} for m in media},
            }
        responses: dict[str, Any] = {}
        for status, answer in sorted(op.all_answers().items()):
            item: dict[str, Any] = {"description": answer.description}
            if links := _links(op, status, ops):
                item["links"] = links
            if answer.model is not None:
                item["content"] = {answer.media: {"schema": ref(answer.model, "serialization")}}
            if answer.headers:
                item["headers"] = {
                    h: {"description": HEADER_DOCS.get(h, h), "schema": {"type": "string"}}
                    for h in answer.headers
                }
            responses[str(status)] = item
        entry["responses"] = responses
        paths.setdefault(op.path, {})[op.method.lower()] = entry

    health = {"$ref": REF.format(model="Health")}
    open_ops: dict[str, tuple[str, dict[str, Any]]] = {
        "/healthz": ("The process answers.", {"200": _json("Alive.", health)}),
        "/readyz": (
            "The config view is caught up and Kafka answers.",
            {"200": _json("Ready.", health), "503": _json("Not ready.", health)},
        ),
        "/metrics": (
            "Prometheus metrics.",
            {
                "200": {
                    "description": "The text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
    }
    for path, (summary, answers) in open_ops.items():
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "summary": summary,
                "tags": ["health"],
                "security": [],
                "responses": answers,
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookline admin API",
            "version": version,
            "description": (
                "Webhooks (inbound), subscriptions (outbound) and workflows, kept as events on "
                "the compacted config topic; deliveries, inbound events and dead letters from an "
                "embedded view of the topics; replays, recoveries, subscription health; "
                "lifecycle events over HTTP. "
                "Every write answers once this process's view holds it."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _links(op: Operation, status: int, ops: Sequence[Operation]) -> dict[str, Any]:
    """OpenAPI links from an answer that names an id to the operations that take it."""
    if status == 201:
        item_path = op.path if op.path.endswith("{id}") else f"{op.path}/{{id}}"
        expression = "$response.body#/id"
    elif status == 200 and op.method == "GET" and not op.path.endswith("}"):
        item_path = f"{op.path}/{{id}}"
        expression = "$response.body#/items/0/id"
    else:
        return {}
    return {
        other.operation_id: {
            "operationId": other.operation_id,
            "parameters": {"id": expression},
        }
        for other in ops
        if other.path.startswith(item_path) and other is not op
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


Mode = Literal["validation", "serialization"]
