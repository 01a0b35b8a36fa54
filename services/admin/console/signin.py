"""Signing in (a named admin token for a session cookie) and signing out.

The sign-in form has no session to bind a CSRF token to, so it uses a double-submit
value: a random nonce in an ``HttpOnly`` ``SameSite=Strict`` cookie and in the form,
which must match. The token is looked up once, at sign-in; the session keeps its
SHA-256 only. Both outcomes are audited (a refused sign-in as ``anonymous``), and a
refused one answers after the same work as an accepted one. A refused sign-in goes through the trail's refusal
queue, as the API's 401s do: a flood of wrong tokens costs bounded memory.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.admin.auth import token_digest
from shared.crypto import constant_time_equals

from .core import Console, Refused, read_form
from .session import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    cookie_attributes,
    new_sign_in_nonce,
)

MAX_TOKEN = 512
SIGN_IN, SIGN_OUT = "console.sign_in", "console.sign_out"


def _sign_in_form(
    console: Console, request: Request, status: int = 200, error: str | None = None
) -> Response:
    nonce = new_sign_in_nonce()
    response = console.render(request, "sign_in.html", None, status, nonce=nonce, error=error)
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        **cookie_attributes(secure=console.secure_cookies, max_age=3600),  # type: ignore[arg-type]
    )
    return response


async def sign_in_page(console: Console, request: Request) -> Response:
    if console.viewer(request) is not None:
        return RedirectResponse("/console/", status_code=303)
    return _sign_in_form(console, request)


async def sign_in(console: Console, request: Request) -> Response:
    try:
        form = await read_form(request)
    except Refused as refused:
        return _sign_in_form(console, request, 400, refused.reason)
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not nonce or not constant_time_equals(nonce, form.get("csrf", "")):
        await console.refused(request, None, SIGN_IN, "console", 403)
        return _sign_in_form(console, request, 403, "The form expired; please sign in again.")
    token = form.get("token", "").strip()[:MAX_TOKEN]
    principal = console.tokens.lookup(token) if token else None
    if principal is None:
        await console.refused(request, None, SIGN_IN, "console", 401)
        return _sign_in_form(console, request, 401, "That token is not an admin token here.")
    session = console.sessions.new(principal.name, principal.role, token_digest(token))
    await console.signed(request, principal, SIGN_IN)
    response = RedirectResponse("/console/", status_code=303)
    lifetime = int(console.sessions.lifetime)
    attributes = cookie_attributes(secure=console.secure_cookies, max_age=lifetime)
    response.set_cookie(SESSION_COOKIE, console.sessions.encode(session), **attributes)  # type: ignore[arg-type]
    response.delete_cookie(
        SIGN_IN_COOKIE,
        path=COOKIE_PATH,
        secure=console.secure_cookies,
        httponly=True,
        samesite="strict",
    )
    return response


async def sign_out(console: Console, request: Request) -> Response:
    viewer = console.viewer(request)
    form = await read_form(request)
    if viewer is not None and not console.sessions.csrf_ok(viewer.session, form.get("csrf")):
        await console.refused(request, viewer.principal, SIGN_OUT, "console", 403)
        return console.render(
            request, "refused.html", viewer, 403, reason="the form's CSRF token is wrong"
        )
    if viewer is not None:
        await console.signed(request, viewer.principal, SIGN_OUT)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        secure=console.secure_cookies,
        httponly=True,
        samesite="strict",
    )
    return response
