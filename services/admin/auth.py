"""Named admin tokens and their roles (the interface the console codes against).

A token maps to a :class:`Principal` (a name and a :data:`Role`); :func:`allows` says
whether a role may take an :data:`Action`. Tokens come from ``HOOKLINE_ADMIN_TOKEN``:
an entry ``name:role:token`` names its principal, a bare token is an ``admin`` named
after its position. Lookups compare every token in constant time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from shared.crypto import constant_time_equals

Role = Literal["viewer", "operator", "admin"]
Action = Literal["read", "operate", "admin"]

_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
_NEEDS: dict[str, int] = {"read": 0, "operate": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def allows(role: Role, action: Action) -> bool:
    """viewer: read; operator: read and operate; admin: everything."""
    return _RANK[role] >= _NEEDS[action]


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The configured tokens; ``lookup`` by the token, or by its SHA-256 (a session's)."""

    def __init__(self, entries: Iterable[tuple[str, Principal]]) -> None:
        self._entries = [(t.encode(), token_sha256(t), p) for t, p in entries if t]

    @classmethod
    def parse(cls, raw: Iterable[str]) -> Tokens:
        entries = []
        for i, item in enumerate(raw):
            name, role, token = [*item.split(":", 2), "", ""][:3]
            if token and role in get_args(Role):
                entries.append((token, Principal(name or f"token-{i}", role)))  # type: ignore[arg-type]
            else:
                entries.append((item, Principal(f"token-{i}", "admin")))
        return cls(entries)

    def lookup(self, token: str) -> Principal | None:
        given, found = token.encode(), None
        for stored, _, principal in self._entries:
            if constant_time_equals(given, stored):
                found = principal
        return found if token else None

    def lookup_sha256(self, digest: str) -> Principal | None:
        found = None
        for _, stored, principal in self._entries:
            if constant_time_equals(digest.encode(), stored.encode()):
                found = principal
        return found if digest else None
