"""Who may call the admin API, and what each one may do.

A caller is a :class:`Principal`: the name of the token it presented and that
token's role. The registry of tokens (:class:`Tokens`) comes from two places:

- ``HOOKLINE_ADMIN_TOKENS_FILE``: a YAML list of ``{name, role, sha256}``, the
  last being the hex SHA-256 of the token, so the file (a mounted Kubernetes
  secret) holds no token. It is re-read when it changes; a change that does not
  parse is refused with an error line and the previous registry stays in force.
- ``HOOKLINE_ADMIN_TOKEN``: plain tokens for development, each an ``admin``
  named ``admin`` (``admin-2``, ``admin-3`` … when several are given).

A lookup hashes the presented token once and compares that digest with every
registered one (constant time, whatever matched first), so neither the time nor
the order of the registry tells a caller anything.

Roles nest: a ``viewer`` reads, an ``operator`` also operates (redeliver,
recover, replay, dead-letter retry, enable and disable), an ``admin`` does
everything. Which action each operation needs is written once, in the operation
table (:mod:`.routes`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from shared.errors import ConfigurationError
from shared.settings import Settings

log = logging.getLogger("hookline.admin.auth")

Role = Literal["viewer", "operator", "admin"]
Action = Literal["read", "operate", "admin"]

ROLES: tuple[Role, ...] = get_args(Role)
ACTIONS: tuple[Action, ...] = get_args(Action)

_ALLOWED: dict[Role, frozenset[Action]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "operate"}),
    "admin": frozenset({"read", "operate", "admin"}),
}

ANONYMOUS = "anonymous"
PLAIN_TOKEN_NAME = "admin"  # noqa: S105 (a name, not a token)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,99}$")
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def allows(role: Role, action: Action) -> bool:
    """Whether a token of ``role`` may perform ``action``."""
    return action in _ALLOWED.get(role, frozenset())


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an authenticated request: its token's name and role."""

    name: str
    role: Role


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token: what the tokens file holds instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    digest: bytes


def parse_tokens_file(text: str, source: str = "HOOKLINE_ADMIN_TOKENS_FILE") -> list[_Entry]:
    """The entries of a tokens file; :class:`ConfigurationError` naming the first fault."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source} is not YAML: {exc}") from None
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ConfigurationError(f"{source} must be a YAML list of {{name, role, sha256}}")
    entries: list[_Entry] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for index, item in enumerate(data):
        where = f"{source}, entry {index + 1}"
        if not isinstance(item, dict) or set(item) - {"name", "role", "sha256"}:
            raise ConfigurationError(f"{where}: give exactly name, role and sha256")
        name, role, digest = item.get("name"), item.get("role"), item.get("sha256")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(
                f"{where}: name must be 1-100 letters, digits, '.', '_', '@', ':' or '-'"
            )
        if role not in ROLES:
            raise ConfigurationError(f"{where} ({name}): role must be one of {', '.join(ROLES)}")
        if not isinstance(digest, str) or not _HEX_SHA256.match(digest):
            raise ConfigurationError(
                f"{where} ({name}): sha256 must be the token's SHA-256 in hex (64 characters, "
                "in quotes)"
            )
        raw = bytes.fromhex(digest)
        if name in names:
            raise ConfigurationError(f"{where}: the name {name!r} is given twice")
        if raw in digests:
            raise ConfigurationError(f"{where} ({name}): the same token is given twice")
        names.add(name)
        digests.add(raw)
        entries.append(_Entry(Principal(name, role), raw))
    return entries


def _plain_entries(tokens: Sequence[str]) -> list[_Entry]:
    out: list[_Entry] = []
    for index, token in enumerate(t for t in tokens if t.strip()):
        name = PLAIN_TOKEN_NAME if index == 0 else f"{PLAIN_TOKEN_NAME}-{index + 1}"
        out.append(_Entry(Principal(name, "admin"), hashlib.sha256(token.encode()).digest()))
    return out


class Tokens:
    """The registry of admin tokens; :meth:`lookup` is safe to call on every request.

    The file is checked for a change (its modification time, size and inode, through
    the symbolic links a Kubernetes secret volume swaps) at most every
    ``check_every`` seconds, on a lookup.
    """

    def __init__(
        self,
        *,
        file: Path | None = None,
        plain: Sequence[str] = (),
        check_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = file
        self._plain = _plain_entries(plain)
        self._check_every = check_every
        self._clock = clock
        self._next_check = 0.0
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[_Entry] = list(self._plain)
        if file is not None:
            self._load(first=True)
        if not self._entries:
            raise ConfigurationError(
                "the admin API needs HOOKLINE_ADMIN_TOKENS_FILE (named tokens with roles) "
                "or HOOKLINE_ADMIN_TOKEN (one admin token, for development)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        plain = [t.get_secret_value() for t in settings.admin_token]
        return cls(file=settings.admin_tokens_file, plain=plain)

    @property
    def principals(self) -> list[Principal]:
        """Every registered name and role (never a token or its digest)."""
        self._maybe_reload()
        return [e.principal for e in self._entries]

    def lookup(self, token: str) -> Principal | None:
        """The principal ``token`` belongs to, or ``None``; every entry is compared."""
        self._maybe_reload()
        given = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(given, entry.digest) and found is None:
                found = entry.principal
        return found if token else None

    def lookup_digest(self, digest: str) -> Principal | None:
        """The principal whose token has this hex SHA-256: how a console session, which
        keeps the digest and never the token, is checked against the registry again."""
        self._maybe_reload()
        try:
            given = bytes.fromhex(digest)
        except ValueError:
            return None
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(given, entry.digest) and found is None:
                found = entry.principal
        return found

    # -- the file -------------------------------------------------------------------------

    def _file_stamp(self) -> tuple[int, int, int]:
        assert self._file is not None
        st = os.stat(self._file)  # follows the links a secret volume swaps
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _maybe_reload(self) -> None:
        if self._file is None:
            return
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self._check_every
        try:
            stamp = self._file_stamp()
        except OSError as exc:
            log.error(
                "the admin tokens file cannot be read; keeping the tokens loaded before",
                extra={"path": str(self._file), "error": exc.strerror or repr(exc)},
            )
            return
        if stamp != self._stamp:
            self._load(first=False)

    def _load(self, *, first: bool) -> None:
        assert self._file is not None
        stamp: tuple[int, int, int] | None = None
        try:
            stamp = self._file_stamp()
            text = self._file.read_text()
            entries = parse_tokens_file(text, str(self._file))
            taken = {e.principal.name for e in entries} & {e.principal.name for e in self._plain}
            if taken:
                raise ConfigurationError(
                    f"{self._file}: the name {sorted(taken)[0]!r} is HOOKLINE_ADMIN_TOKEN's"
                )
        except (OSError, ConfigurationError) as exc:
            if first:
                if isinstance(exc, OSError):
                    raise ConfigurationError(
                        f"HOOKLINE_ADMIN_TOKENS_FILE {self._file} cannot be read: {exc}"
                    ) from None
                raise
            log.error(
                "the admin tokens file changed but is not valid; keeping the tokens loaded before",
                extra={"path": str(self._file), "reason": str(exc)},
            )
            self._stamp = stamp  # not read again until it changes again
            return
        self._stamp = stamp
        self._entries = [*self._plain, *entries]
        log.info(
            "admin tokens loaded",
            extra={
                "path": str(self._file),
                "tokens": len(self._entries),
                "by_role": {r: sum(e.principal.role == r for e in self._entries) for r in ROLES},
            },
        )
