"""Reading the body under a size cap, and parsing it by content type.

The cap is enforced while reading: a declared ``Content-Length`` over the
limit is refused before a byte is read, and a chunked body is refused as soon
as the running total passes the limit, so nothing past the cap is buffered.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive

from shared.errors import (
    BodyTooLarge,
    ClientDisconnected,
    MalformedRequest,
    UnsupportedMediaType,
)
from shared.messages import PayloadEncoding

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 1000

# What each provider route accepts; the generic route takes anything.
PROVIDER_MEDIA_TYPES: dict[str, frozenset[str]] = {
    "github": frozenset({JSON, FORM}),
    "gitlab": frozenset({JSON}),
    "slack": frozenset({JSON, FORM}),
}


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(kind: str) -> bool:
    return kind == JSON or (kind.startswith("application/") and kind.endswith("+json"))


def check_media_type(provider: str, content_type: str | None) -> None:
    """Raise :class:`UnsupportedMediaType` for a type the provider never sends."""
    allowed = PROVIDER_MEDIA_TYPES.get(provider)
    if allowed is None:
        return
    kind = media_type(content_type)
    if kind not in allowed:
        raise UnsupportedMediaType(f"{provider} does not send {kind or 'bodies without a type'}")


def _check_declared(declared_length: str | None, limit: int) -> None:
    if declared_length is not None:
        try:
            declared = int(declared_length)
        except ValueError:
            raise MalformedRequest("Content-Length is not a number") from None
        if declared > limit:
            raise BodyTooLarge(f"body of {declared} bytes is over the {limit} byte limit")


async def read_capped(
    chunks: AsyncIterator[bytes], *, declared_length: str | None, limit: int
) -> bytes:
    """The whole body, or :class:`BodyTooLarge` as soon as it passes ``limit`` bytes."""
    _check_declared(declared_length, limit)
    buffer = bytearray()
    async for chunk in chunks:
        if len(buffer) + len(chunk) > limit:
            raise BodyTooLarge(f"body is over the {limit} byte limit")
        buffer += chunk
    return bytes(buffer)


async def read_asgi_body(receive: Receive, *, declared_length: str | None, limit: int) -> bytes:
    """:func:`read_capped` straight off the ASGI ``receive`` channel (the hot path:
    a webhook usually arrives in one message, which is returned without a copy)."""
    _check_declared(declared_length, limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the {limit} byte limit")
        if chunk:
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class ParsedBody:
    encoding: PayloadEncoding
    payload: Any
    # The form fields as sent, when the body was a form (Slack reads ``command`` from them).
    form: dict[str, Any] | None = None
    # The payload's JSON text as received, when it was JSON: the event splices it in
    # rather than dumping the parsed value again.
    json_text: bytes | None = field(default=None, compare=False, repr=False)


def _parse_json(raw: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedRequest(f"{what} is not valid JSON") from None


def _parse_form(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise MalformedRequest("form body does not parse") from None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


def parse_body(provider: str, content_type: str | None, body: bytes) -> ParsedBody:
    """The payload of a verified request: JSON, a form (with ``payload`` JSON inside), or raw."""
    kind = media_type(content_type)
    check_media_type(provider, content_type)
    if _is_json(kind):
        return ParsedBody("json", _parse_json(body, "body"), json_text=body)
    if kind == FORM:
        fields = _parse_form(body)
        payload_field = fields.get("payload")
        if provider == "github" and not isinstance(payload_field, str):
            raise MalformedRequest("form body has no payload field")
        # GitHub's form deliveries and Slack's interactive requests carry JSON in ``payload``.
        if isinstance(payload_field, str) and (provider != "generic" or len(fields) == 1):
            payload = _parse_json(payload_field, "payload field")
            return ParsedBody("json", payload, form=fields, json_text=payload_field.encode())
        return ParsedBody("form", fields, form=fields)
    try:
        return ParsedBody("text", body.decode("utf-8"))
    except UnicodeDecodeError:
        return ParsedBody("base64", base64.b64encode(body).decode())
