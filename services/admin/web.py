"""HTTP plumbing of the admin API: errors, JSON bodies, query strings, ETags.

Every error the API answers is a :class:`~shared.errors.HttpProblem`, rendered by
:mod:`.problems` as an RFC 9457 problem document. Validation errors are 422 with one entry in ``errors`` per
failing field (``loc`` starts with ``body``, ``query`` or ``path``); the offending
values are never echoed, as they may be secrets.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from shared.entities import Entity
from shared.errors import (
    BodyTooLarge,
    FieldError,
    MalformedRequest,
    NotFound,
    UnsupportedMediaType,
    ValidationFailed,
    VersionConflict,
)

MAX_BODY_BYTES = 1024 * 1024

M = TypeVar("M", bound=BaseModel)


def not_found(what: str) -> NotFound:
    return NotFound(f"{what} does not exist")


def invalid(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> ValidationFailed:
    return ValidationFailed(
        "the request is not valid", errors=[{"loc": list(loc), "msg": msg, "type": type_}]
    )


def from_validation_error(exc: ValidationError, where: str) -> ValidationFailed:
    errors: list[FieldError] = [
        {
            "loc": [where, *(p for p in e["loc"] if p != "root" or where != "body")],
            "msg": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return ValidationFailed("the request is not valid", errors=errors)


def json_response(
    content: Any, status: int = 200, *, headers: Mapping[str, str] | None = None
) -> Response:
    payload = orjson.dumps(content)
    return Response(payload, status_code=status, headers=headers, media_type="application/json")


def model_response(
    model: BaseModel,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    drop_none: Sequence[str] = ("secret",),
) -> Response:
    data = model.model_dump(mode="json", by_alias=True)
    for name in drop_none:
        if data.get(name, 0) is None:
            del data[name]
    return json_response(data, status, headers=headers)


# -- request pieces --------------------------------------------------------------------------

_JSON_TYPES = ("application/json", "application/merge-patch+json")


async def read_json(request: Request) -> Any:
    """The request's JSON body: 413 past the limit, 415 for another type, 400 malformed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type and not (content_type in _JSON_TYPES or content_type.endswith("+json")):
        raise UnsupportedMediaType("send the body as application/json")
    if not raw.strip():
        raise ValidationFailed(
            "a JSON body is required",
            errors=[{"loc": ["body"], "msg": "a JSON body is required", "type": "missing"}],
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not JSON: {exc.msg}") from exc


def parse(model: type[M], data: Any, where: str, context: Mapping[str, Any] | None = None) -> M:
    """Validate ``data``; a body strictly as JSON (``0`` is not ``false``), a query laxly."""
    try:
        if where == "body":
            return model.model_validate_json(
                orjson.dumps(data), strict=True, context=dict(context or {})
            )
        return model.model_validate(data, context=dict(context or {}))
    except ValidationError as exc:
        raise from_validation_error(exc, where) from exc


def parse_query(request: Request, model: type[M]) -> M:
    params = request.query_params
    data: dict[str, Any] = {}
    for name in params:
        values = params.getlist(name)
        if len(values) > 1:
            raise invalid(["query", name], "given more than once")
        data[name] = values[0]
    return parse(model, data, "query")


# -- ETags and cursors -----------------------------------------------------------------------


def etag(entity: Entity) -> str:
    return f'"{entity.version}"'


def entity_headers(entity: Entity, **extra: str) -> dict[str, str]:
    return {"ETag": etag(entity), **extra}


def check_if_match(request: Request, current: Entity | None) -> None:
    """412 unless ``If-Match`` (when given) names the current version."""
    header = request.headers.get("if-match")
    if header is None or not header.strip():
        return
    tags = [t.strip() for t in header.split(",") if t.strip()]
    if current is None:
        raise VersionConflict("If-Match given, but the entity does not exist")
    for tag in tags:
        if tag == "*":
            return
        bare = tag.removeprefix("W/").strip('"')
        if bare == str(current.version):
            return
    raise VersionConflict(
        f"the entity is at version {current.version}; If-Match named {header[:100]!r}",
        headers={"ETag": etag(current)},
    )


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise invalid(["query", "cursor"], "not a cursor this API gave") from exc
