"""The answers of the webhook routes, written straight to the ASGI ``send`` channel.

A webhook answer is a status, a short body and a header or two (``Retry-After``):
no response object is built for it. Errors are RFC 9457 problem documents
(``application/problem+json``); those that never vary are encoded once, at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Send

from shared.errors import HttpProblem

JSON_TYPE = b"application/json"
PROBLEM_TYPE = b"application/problem+json"
TEXT_TYPE = b"text/plain; charset=utf-8"


@dataclass(slots=True)  # not frozen: a frozen dataclass pays for its immutability on init
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON_TYPE
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", str(len(self.body)).encode()),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_reply(status: int, content: Any) -> Reply:
    return Reply(status, orjson.dumps(content))


def text_reply(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), content_type=TEXT_TYPE)


def problem_reply(problem: HttpProblem) -> Reply:
    """The problem document, with the problem's headers (``Retry-After``, ``Allow``)."""
    return Reply(
        problem.status,
        orjson.dumps(problem.document()),
        content_type=PROBLEM_TYPE,
        headers=tuple(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in problem.headers.items()
        ),
    )
