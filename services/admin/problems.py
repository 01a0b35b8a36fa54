"""The admin API's problem documents: how one is answered, and its OpenAPI model.

Every error is a :class:`~shared.errors.HttpProblem` answered as an RFC 9457 problem
document (``application/problem+json``), the ingress' shape. For now the admin API's
documents also carry the members of the error body they replaced (``error``: the slug,
``message``: the detail, ``details``: the field errors), deprecated, so clients written
against that body keep working: the ``hookline apply`` of this release reads ``message``
and ``details``. Once it reads ``detail`` and ``errors``, :data:`LEGACY_MEMBERS` goes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import Response

from shared.errors import HttpProblem
from shared.problems import problem_response as _problem_response

LEGACY_MEMBERS = True


def problem_response(problem: HttpProblem) -> Response:
    legacy: dict[str, Any] = {}
    if LEGACY_MEMBERS:
        legacy = {"error": problem.slug, "message": problem.detail}
        if problem.errors is not None:
            legacy["details"] = problem.errors
    return _problem_response(problem, extra=legacy)


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(description='where: ["body", "url"], ["query", "limit"], …')
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(
        description="the problem type: https://hookline.dev/problems/ and a slug "
        "(not_found, version_conflict, invalid, …)"
    )
    title: str = Field(description="the problem type in words; the same for every occurrence")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what went wrong this time (never a submitted value)")
    errors: list[FieldErrorOut] | None = Field(default=None, description="422: the failing fields")
    error: str | None = Field(default=None, deprecated=True, description="the slug of `type`")
    message: str | None = Field(default=None, deprecated=True, description="`detail` again")
    details: list[FieldErrorOut] | None = Field(
        default=None, deprecated=True, description="`errors` again"
    )
