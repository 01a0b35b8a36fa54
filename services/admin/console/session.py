"""The console's session cookie and CSRF tokens.

A session is what a signed-in operator carries: a random id, the principal's name and
role, the SHA-256 of the admin token it was exchanged for (never the token), and when
it ends. It travels as ``base64url(json).base64url(hmac)`` in an ``HttpOnly``,
``SameSite=Strict`` cookie, ``Secure`` outside development; the HMAC key is derived
from ``HOOKLINE_SECRET_KEY`` (HKDF, its own label), so any admin replica can read a
session another one made, and changing the key ends every session.

Every request checks the signature and the expiry (the server's clock, not the
cookie's ``Max-Age``), then finds the token again by its digest: a token removed from
the configuration ends its sessions at once, and a changed role applies on the next
request. The CSRF token is an HMAC of the session id (bound to the session, nothing
to store); the sign-in form, which has no session yet, uses a double-submit cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.crypto import constant_time_equals

SESSION_COOKIE = "hookline_console"
SIGN_IN_COOKIE = "hookline_console_sign_in"
COOKIE_PATH = "/console"


def derive_key(secret_key: str, label: bytes = b"hookline console session v1") -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
        secret_key.encode()
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    sid: str
    name: str
    role: str
    token_sha256: str
    expires_at: float


class SessionCodec:
    """Signs and reads session cookies; makes and checks CSRF tokens."""

    def __init__(self, key: bytes, *, lifetime: float) -> None:
        self._key = key
        self.lifetime = lifetime

    def new(self, name: str, role: str, token_sha256: str, now: float | None = None) -> Session:
        now = time.time() if now is None else now
        return Session(secrets.token_urlsafe(16), name, role, token_sha256, now + self.lifetime)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"session|" + payload, hashlib.sha256).digest()

    def encode(self, session: Session) -> str:
        payload = orjson.dumps(
            {
                "sid": session.sid,
                "name": session.name,
                "role": session.role,
                "tok": session.token_sha256,
                "exp": session.expires_at,
            }
        )
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in ``cookie``: ``None`` when absent, forged, malformed or expired."""
        if not cookie or len(cookie) > 2048 or "." not in cookie:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not constant_time_equals(given, self._mac(payload)):
            return None
        try:
            data = orjson.loads(payload)
            session = Session(
                str(data["sid"]),
                str(data["name"]),
                str(data["role"]),
                str(data["tok"]),
                float(data["exp"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if session.expires_at <= (time.time() if now is None else now):
            return None
        return session

    # -- CSRF -----------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return _b64(hmac.new(self._key, b"csrf|" + session.sid.encode(), hashlib.sha256).digest())

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and constant_time_equals(given or "", self.csrf_token(session))


def new_sign_in_nonce() -> str:
    """The sign-in form's double-submit value (a cookie and a hidden field)."""
    return secrets.token_urlsafe(24)


def cookie_attributes(*, secure: bool, max_age: int | None) -> dict[str, object]:
    """What every console cookie is set with (Starlette's ``set_cookie`` keywords)."""
    return {
        "path": COOKIE_PATH,
        "httponly": True,
        "secure": secure,
        "samesite": "strict",
        "max_age": max_age,
    }
