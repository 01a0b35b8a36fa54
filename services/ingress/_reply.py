"""The answers of the webhook routes, written straight to the ASGI ``send`` channel.

A webhook answer is a status, a short body and at most a ``Retry-After``: no
response object is built for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Send

JSON_TYPE = b"application/json"
TEXT_TYPE = b"text/plain; charset=utf-8"


@dataclass(slots=True)  # not frozen: a frozen dataclass pays for its immutability on init
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON_TYPE
    retry_after: int | None = None

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", str(len(self.body)).encode()),
        ]
        if self.retry_after:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_reply(status: int, content: Any, *, retry_after: int | None = None) -> Reply:
    return Reply(status, orjson.dumps(content), retry_after=retry_after)


def text_reply(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), content_type=TEXT_TYPE)
