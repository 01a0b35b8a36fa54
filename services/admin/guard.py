"""Authenticate, authorize, audit: what stands between a request and its operation.

:class:`Authenticate` (ASGI middleware, outermost but for the access log) gives
every request an id (``X-Request-Id``: the caller's when it is a plain token of
up to 128 characters, else a new one; echoed on the answer), looks the bearer
token up and puts the :class:`~services.admin.auth.Principal` on
``scope["state"]["principal"]`` (``request.state.principal``). No valid token
is a 401, audited through the trail's refusal queue (see :mod:`.audit`).

:func:`guarded` wraps one operation's handler: the principal's role must allow
the operation's action (else 403, audited and acknowledged before the answer);
a mutation or an operational action is then run and audited, with its outcome,
before it is answered. When that audit entry cannot be written the answer is a
503 saying so: the change itself was made (a ``PUT`` or a retry with
``If-Match`` is safe), and the failure is logged and counted.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from shared.errors import Forbidden, Unauthorized, Unavailable
from shared.problems import problem_response

from .audit import AuditEntry, AuditTrail, change_digest, refused_anonymously
from .auth import Principal, Tokens, allows

if TYPE_CHECKING:
    from .routes import Operation

log = logging.getLogger("hookline.admin.auth")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_DIGESTED_BYTES = 2 * 1024 * 1024  # past the API's body limit: the handler refuses it
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Callable[[Request], Awaitable[Response]]


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def source_ip(scope: Scope) -> str | None:
    """The peer's address (the admin API is cluster-internal: no proxy is trusted)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def request_id_of(scope: Scope) -> str:
    rid: str = _state(scope).get("request_id") or ""
    return rid


class Authenticate:
    """401 unless ``Authorization: Bearer <a registered token>``; health paths stay open."""

    def __init__(self, app: ASGIApp, tokens: Tokens, trail: Callable[[], AuditTrail]) -> None:
        self.app = app
        self.tokens = tokens
        self.trail = trail

    def principal(self, header: bytes | None) -> Principal | None:
        if header is None:
            return None
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = given.strip().decode("utf-8", errors="replace")
        return self.tokens.lookup(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        given_id = headers.get(b"x-request-id", b"").decode("latin-1").strip()
        rid = given_id if _REQUEST_ID.match(given_id) else f"req_{str(ULID()).lower()}"
        _state(scope)["request_id"] = rid

        async def with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        principal = self.principal(headers.get(b"authorization"))
        if principal is None:
            try:
                self.trail().record_refusal(
                    refused_anonymously(
                        method=scope["method"],
                        path=scope["path"],
                        source_ip=source_ip(scope),
                        request_id=rid,
                    )
                )
            except Unavailable:
                log.error("a refused request could not be audited: the trail is not running")
            response = problem_response(
                Unauthorized(
                    "send Authorization: Bearer <an admin token>",
                    headers={"WWW-Authenticate": 'Bearer realm="hookline"'},
                )
            )
            await response(scope, receive, with_request_id)
            return
        _state(scope)["principal"] = principal
        await self.app(scope, receive, with_request_id)


class _CapturedBody:
    """Wraps ``receive`` to keep a copy of the body the handler reads (for its digest)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.chunks: list[bytes] = []
        self.size = 0

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size <= MAX_DIGESTED_BYTES:
                self.chunks.append(chunk)
        return message

    def body(self) -> bytes | None:
        return b"".join(self.chunks) if self.size <= MAX_DIGESTED_BYTES else None


def _entry(
    op: Operation,
    request: Request,
    principal: Principal,
    status: int,
    digest: str,
    response: Response | None = None,
) -> AuditEntry:
    outcome = "refused" if status == 403 else "allowed" if status < 400 else "failed"
    resource_id = request.path_params.get("id")
    if resource_id is None and response is not None and "location" in response.headers:
        # A create names the new id only in its answer.
        resource_id = response.headers["location"].rstrip("/").rsplit("/", 1)[-1] or None
    return AuditEntry(
        actor=principal.name,
        role=principal.role,
        action=op.audit_action,
        method=request.method,
        path=request.url.path,
        resource=op.resource,
        resource_id=resource_id,
        change_digest=digest,
        source_ip=source_ip(request.scope),
        request_id=request_id_of(request.scope),
        outcome=outcome,
        status=status,
    )


def guarded(op: Operation, trail: Callable[[], AuditTrail], run: Handler) -> Handler:
    """``run`` (the operation, errors already rendered) behind authorization and audit."""

    async def handle(request: Request) -> Response:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # only when mounted without Authenticate
            return problem_response(Unauthorized("send Authorization: Bearer <an admin token>"))
        if not allows(principal.role, op.needs):
            problem = Forbidden(
                f"the token {principal.name!r} has the role {principal.role!r}, which may not "
                f"{op.needs} ({op.audit_action} needs a role that may)"
            )
            entry = _entry(op, request, principal, 403, change_digest(None))
            try:
                await trail().record(entry)
            except Unavailable:
                trail().record_refusal(entry)  # written when Kafka answers again
            return problem_response(problem)
        if not op.audited:
            return await run(request)
        captured = _CapturedBody(request.receive)
        inner = Request(request.scope, receive=captured)
        try:
            response = await run(inner)
        except Exception:
            entry = _entry(op, request, principal, 500, change_digest(captured.body()))
            with contextlib.suppress(Unavailable):
                await trail().record(entry)
            raise
        digest = change_digest(captured.body())
        entry = _entry(op, request, principal, response.status_code, digest, response)
        try:
            await trail().record(entry)
        except Unavailable:
            return problem_response(
                Unavailable(
                    "the request was carried out, but its audit entry could not be written; "
                    "see the current state before retrying",
                    retry_after=1,
                )
            )
        return response

    return handle
