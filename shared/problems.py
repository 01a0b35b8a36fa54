"""HTTP errors as RFC 9457 problem documents, for the Starlette side of both apps.

The problem types are the :class:`~shared.errors.HttpProblem` classes; this module
turns one into a response, and Starlette's own errors (its router's 404 and 405, an
unexpected exception) into one of them, so every error either app answers has the
same shape: ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` (and ``errors`` for a 422).
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response

from shared.errors import (
    PROBLEM_FOR_STATUS,
    HttpProblem,
    InternalError,
    MethodNotAllowed,
    NotFound,
)

PROBLEM_JSON = "application/problem+json"


def problem_response(problem: HttpProblem) -> Response:
    """The problem document, with the problem's headers."""
    return Response(
        orjson.dumps(problem.document()),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


def problem_for_http_exception(exc: HTTPException, method: str) -> HttpProblem:
    """The problem for an error Starlette raised itself (its router's 404 and 405)."""
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return NotFound("nothing is served at this path", headers=headers)
    if exc.status_code == 405:
        allowed = headers.get("Allow", "")
        return MethodNotAllowed(
            f"{method} is not served at this path; it takes {allowed}", headers=headers
        )
    # Neither app makes Starlette raise another status; one no problem type stands for
    # would be a bug, answered as such.
    kind = PROBLEM_FOR_STATUS.get(exc.status_code, InternalError)
    return kind(str(exc.detail), headers=headers)
