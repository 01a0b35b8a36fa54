"""What every console page and action shares: who is signed in, what they may do, the
audit trail, the security headers, rendering, and calling the admin API's own handlers.

Actions never re-implement the API: :meth:`Console.invoke` makes a request for the API
operation (its path, path parameters and JSON body) carrying the signed-in principal
and calls the very handler ``/v1/...`` serves, guard included: the operation's role
check (:func:`~services.admin.auth.allows` on the action the operation table names),
its validation, its Kafka writes, its errors and its audit entry are the API's. Before
that, :func:`action` has checked the session and the CSRF token; a post that fails
either is refused here and audited like the API's refusals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from services.admin.audit import AuditEntry, change_digest
from services.admin.auth import ANONYMOUS, Action, Principal, allows
from services.admin.context import AdminContext
from services.admin.guard import source_ip
from services.admin.routes import Operation, _instrument
from shared.errors import HttpProblem, Unavailable

from .session import SESSION_COOKIE, Session, SessionCodec, derive_key

log = logging.getLogger("hookline.admin.console")

HERE = Path(__file__).parent
MAX_FORM_BYTES = 16 * 1024

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """Adds the console's security headers; pages are never cached (they show live data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/console/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


@dataclass(frozen=True)
class Viewer:
    """The signed-in operator of one request."""

    session: Session
    principal: Principal
    csrf: str

    def can(self, action: Action) -> bool:
        return allows(self.principal.role, action)


class Refused(Exception):
    """403: no session, or a failed CSRF check."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    """An API operation's answer, as the console needs it."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def problem(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or self.status)
        return str(self.status)


def console_request_id() -> str:
    return f"con_{str(ULID()).lower()}"


class Console:
    """The console's dependencies: the admin context, the API's operations, sessions."""

    def __init__(self, ctx: AdminContext, operations: list[Operation]) -> None:
        settings = ctx.settings
        assert settings.secret_key is not None  # AdminContext refuses to start without it
        self.ctx = ctx
        self.tokens = ctx.tokens
        self.operations = {op.operation_id: op for op in operations}
        # The handlers /v1 serves: the operation behind its role check and audit entry.
        self.handlers = {op.operation_id: _instrument(op, lambda: ctx.audit) for op in operations}
        # Sessions sign with the first key; rotating HOOKLINE_SECRET_KEY ends them.
        first_key = settings.secret_key.get_secret_value().split(",")[0].strip()
        self.sessions = SessionCodec(
            derive_key(first_key), lifetime=settings.console_session_hours * 3600
        )
        self.secure_cookies = settings.env != "development"
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals["has_operation"] = self.operations.__contains__
        from .live import LiveFeed
        from .render import install_filters

        install_filters(self.templates.env)
        self.live = LiveFeed(ctx, self.templates.env)

    # -- who is asking --------------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer | None:
        session = self.sessions.decode(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        principal = self.tokens.lookup_digest(session.token_sha256)
        if principal is None:
            return None  # the token was removed: its sessions end with it
        return Viewer(session, principal, self.sessions.csrf_token(session))

    def may(self, viewer: Viewer | None, operation_id: str) -> bool:
        """Whether the viewer's role allows the operation (what a page offers)."""
        op = self.operations.get(operation_id)
        return viewer is not None and op is not None and viewer.can(op.needs)

    # -- answering ------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        context.update(
            viewer=viewer,
            csrf=viewer.csrf if viewer else None,
            may=lambda operation_id: self.may(viewer, operation_id),
        )
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    async def refused(
        self,
        request: Request,
        principal: Principal | None,
        action: str,
        resource: str,
        status: int,
    ) -> None:
        """Audit a post the console refused itself, as the API audits its refusals."""
        entry = AuditEntry(
            actor=principal.name if principal else ANONYMOUS,
            role=principal.role if principal else None,
            action=action,
            method=request.method,
            path=request.url.path,
            resource=resource,
            resource_id=request.path_params.get("id"),
            change_digest=change_digest(None),
            source_ip=source_ip(request.scope),
            request_id=console_request_id(),
            outcome="refused",
            status=status,
        )
        try:
            if principal is None:
                self.ctx.audit.record_refusal(entry)  # never waits: a flood costs nothing
            else:
                await self.ctx.audit.record(entry)
        except Unavailable:
            log.error("a refused console post could not be audited", extra={"action": action})

    async def signed(self, request: Request, principal: Principal, action: str) -> None:
        """Audit a sign-in or a sign-out."""
        entry = AuditEntry(
            actor=principal.name,
            role=principal.role,
            action=action,
            method=request.method,
            path=request.url.path,
            resource="console",
            change_digest=change_digest(None),
            source_ip=source_ip(request.scope),
            request_id=console_request_id(),
            outcome="allowed",
            status=303,
        )
        await self.ctx.audit.record(entry)

    async def invoke(
        self,
        request: Request,
        viewer: Viewer,
        operation_id: str,
        path_params: Mapping[str, str],
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Call the API operation's own handler as the viewer; its answer, errors included."""
        op = self.operations[operation_id]
        path = op.path
        for name, value in path_params.items():
            path = path.replace("{" + name + "}", value)
        raw = b"" if body is None else orjson.dumps(body)
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        header_list = [(b"content-type", b"application/json")]
        header_list += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        scope: Scope = {
            **request.scope,
            "method": op.method,
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": header_list,
            "path_params": dict(path_params),
            "state": {"principal": viewer.principal, "request_id": console_request_id()},
        }
        response = await self.handlers[operation_id](Request(scope, receive))
        payload: Any = None
        if response.body:
            try:
                payload = orjson.loads(response.body)
            except orjson.JSONDecodeError:
                payload = None
        return Outcome(response.status_code, payload)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (first value of each field); 16 KiB at most."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise Refused("the form is too large")
    return dict(reversed(parse_qsl(raw.decode("utf-8", errors="replace"))))


Endpoint = Callable[[Request], Awaitable[Response]]
PageFn = Callable[["Console", Request, Viewer], Awaitable[Response]]
ActionFn = Callable[["Console", Request, Viewer, dict[str, str]], Awaitable[Response]]


def page(console: Console, fn: PageFn) -> Endpoint:
    """A page: signed in (else to the sign-in form); every role reads."""

    async def endpoint(request: Request) -> Response:
        viewer = console.viewer(request)
        if viewer is None:
            return RedirectResponse("/console/sign-in", status_code=303)
        if not viewer.can("read"):
            return console.render(request, "refused.html", viewer, 403, reason="no read access")
        try:
            return await fn(console, request, viewer)
        except HttpProblem as problem:
            return console.render(
                request,
                "refused.html",
                viewer,
                problem.status,
                reason=problem.detail,
                title=problem.title,
            )

    return endpoint


def action(console: Console, fn: ActionFn, operation_id: str) -> Endpoint:
    """A form post: signed in, with the session's CSRF token, then the API operation
    (whose guard checks the role and audits); refusals here are audited too."""
    op = console.operations[operation_id]

    async def endpoint(request: Request) -> Response:
        viewer = console.viewer(request)
        try:
            form = await read_form(request)
            if viewer is None:
                raise Refused("sign in first")
            if not console.sessions.csrf_ok(viewer.session, form.get("csrf")):
                raise Refused("the form's CSRF token is missing or wrong; reload the page")
        except Refused as refused:
            log.warning(
                "console post refused", extra={"action": op.audit_action, "why": refused.reason}
            )
            principal = viewer.principal if viewer else None
            await console.refused(request, principal, op.audit_action, op.resource, 403)
            return console.render(request, "refused.html", viewer, 403, reason=refused.reason)
        return await fn(console, request, viewer, form)

    return endpoint
