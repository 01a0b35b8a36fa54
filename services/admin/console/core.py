"""What every console page and action shares: who is signed in, what they may do, the
audit trail, the security headers, rendering, and calling the admin API's own handlers.

Actions never re-implement the API: :meth:`Console.invoke` builds a request for the
API operation (its path, path parameters and JSON body) and calls the operation's
handler, the one ``/v1/...`` serves, so validation, Kafka writes and errors are the
API's. Before that, :func:`action` has checked the session, the role
(:func:`~services.admin.auth.allows`) and the CSRF token, and afterwards it audits the
outcome, refusals included.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.admin.audit import AuditEntry, AuditTrail
from services.admin.auth import Action, Principal, Tokens, allows
from services.admin.context import AdminContext
from services.admin.routes import Operation
from shared.errors import HooklineError, HttpProblem, Unavailable
from shared.problems import problem_response

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


class SignInRequired(Exception):
    pass


class Refused(Exception):
    """403: a missing permission or a failed CSRF check."""

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


class Console:
    """The console's dependencies: the admin context, the API's operations, sessions."""

    def __init__(
        self,
        ctx: AdminContext,
        operations: list[Operation],
        *,
        tokens: Tokens | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        settings = ctx.settings
        assert settings.secret_key is not None  # AdminContext refuses to start without it
        self.ctx = ctx
        self.operations = {op.operation_id: op for op in operations}
        self.tokens = tokens or getattr(ctx, "principals", None) or Tokens.parse(ctx.tokens)
        self.audit = audit or getattr(ctx, "audit", None) or AuditTrail()
        self.sessions = SessionCodec(
            derive_key(settings.secret_key.get_secret_value()),
            lifetime=settings.console_session_hours * 3600,
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
        principal = self.tokens.lookup_sha256(session.token_sha256)
        if principal is None:
            return None  # the token was removed: its sessions end with it
        return Viewer(session, principal, self.sessions.csrf_token(session))

    # -- answering ------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        context.update(viewer=viewer, csrf=viewer.csrf if viewer else None)
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    async def record(
        self,
        request: Request,
        actor: str,
        action: str,
        resource: str,
        resource_id: str | None,
        outcome: str,
        change: Any = None,
    ) -> None:
        digest = None
        if change is not None:
            digest = hashlib.sha256(orjson.dumps(change, option=orjson.OPT_SORT_KEYS)).hexdigest()
        entry = AuditEntry(
            actor=actor,
            action=action,
            method=request.method,
            resource=resource,
            resource_id=resource_id,
            change_digest=digest,
            at=datetime.now(UTC),
            source_ip=request.client.host if request.client else None,
            request_id=request.headers.get("x-request-id") or str(uuid.uuid4()),
            outcome=outcome,
        )
        written = self.audit.record(entry)
        if inspect.isawaitable(written):
            await written

    async def invoke(
        self,
        request: Request,
        operation_id: str,
        path_params: Mapping[str, str],
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Call the API operation's own handler; its answer, errors included."""
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
        }
        api_request = Request(scope, receive)
        try:
            response = await op.handler(api_request)
        except HttpProblem as problem:
            response = problem_response(problem)
        except HooklineError as exc:
            response = problem_response(Unavailable(str(exc), retry_after=1))
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
PageFn = Callable[[Console, Request, Viewer], Awaitable[Response]]
ActionFn = Callable[[Console, Request, Viewer, dict[str, str]], Awaitable[Response]]


def page(console: Console, fn: PageFn) -> Endpoint:
    """A page: signed in (else to the sign-in form) with the ``read`` permission."""

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
                reason=problem.reason,
                title=problem.title,
            )

    return endpoint


def action(console: Console, fn: ActionFn, *, name: str, needs: Action, resource: str) -> Endpoint:
    """A form post: signed in, allowed, a valid CSRF token; audited whatever happens."""

    async def endpoint(request: Request) -> Response:
        viewer = console.viewer(request)
        resource_id = request.path_params.get("id")
        actor = viewer.principal.name if viewer else "anonymous"
        try:
            form = await read_form(request)
            if viewer is None:
                raise Refused("sign in first")
            if not console.sessions.csrf_ok(viewer.session, form.get("csrf")):
                raise Refused("the form's CSRF token is missing or wrong; reload the page")
            if not viewer.can(needs):
                raise Refused(f"the role {viewer.principal.role!r} may not {name}")
        except Refused as refused:
            log.warning("console action refused", extra={"action": name, "why": refused.reason})
            await console.record(request, actor, name, resource, resource_id, "denied")
            return console.render(request, "refused.html", viewer, 403, reason=refused.reason)
        assert viewer is not None
        change = {k: v for k, v in form.items() if k != "csrf"}
        try:
            response = await fn(console, request, viewer, form)
        except BaseException:
            await console.record(request, actor, name, resource, resource_id, "failed", change)
            raise
        outcome = "succeeded" if response.status_code < 400 else "failed"
        await console.record(request, actor, name, resource, resource_id, outcome, change)
        return response

    return endpoint
