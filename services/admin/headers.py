"""A subscription's custom headers: sealed at rest, write-only in the API.

Often one of them is an ``Authorization`` for the receiver, so each value is
sealed as secrets are (AES-GCM under ``HOOKLINE_SECRET_KEY``, the header's own
name and subscription as associated data) and never shown again: a read gives
each name with the value :data:`MASK`.

Writing: the headers a body gives are the whole set (a name left out is
removed). A value equal to :data:`MASK` keeps the stored value of that header, so
what a read returned can be sent back as it is; any other value replaces it. A
value equal to the stored one keeps the stored ciphertext, so a ``PUT`` of the
same state changes nothing (``hookline apply`` stays idempotent).
"""

from __future__ import annotations

from shared.crypto import SecretBox
from shared.entities import Subscription
from shared.errors import SecretError

from .web import invalid

MASK = "••••"


def masked(sub: Subscription) -> dict[str, str]:
    """What a read shows: every header's name, no value."""
    return dict.fromkeys(sub.header_names, MASK)


def _stored_equals(box: SecretBox, sub: Subscription, name: str, value: str) -> bool:
    sealed = sub.encrypted_headers.get(name)
    if sealed is None:
        return False
    try:
        return box.decrypt(sealed, entity_key=sub.header_key(name)) == value
    except SecretError:
        return False


def sealed_headers(
    box: SecretBox, new: Subscription, given: dict[str, str], current: Subscription | None
) -> dict[str, str]:
    """The ``encrypted_headers`` of ``new`` for ``given`` over ``current`` (see the module)."""
    out: dict[str, str] = {}
    for name, value in given.items():
        if value == MASK:
            if current is not None and name in current.encrypted_headers:
                out[name] = current.encrypted_headers[name]
                continue
            if current is not None and name in current.headers:  # plaintext of an older record
                out[name] = box.encrypt(current.headers[name], entity_key=new.header_key(name))
                continue
            raise invalid(
                ["body", "headers", name], f"{MASK} keeps a stored value, and {name!r} has none"
            )
        if current is not None and _stored_equals(box, current, name, value):
            out[name] = current.encrypted_headers[name]
        else:
            out[name] = box.encrypt(value, entity_key=new.header_key(name))
    return out
