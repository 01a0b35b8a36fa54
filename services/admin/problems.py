"""The OpenAPI model of the admin API's problem documents.

Every error is a :class:`~shared.errors.HttpProblem` answered as an RFC 9457 problem
document (``application/problem+json``, :func:`shared.problems.problem_response`), the
ingress' shape.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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
