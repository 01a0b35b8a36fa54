"""The request headers kept on the normalized event: everything but credentials.

Signature and token headers, cookies and authorization are dropped by name,
any header whose name says it holds a credential is dropped too, and so are
hop-by-hop headers that describe one connection rather than the event.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

DROPPED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-gitlab-token",
        "x-hub-signature",
        "x-hub-signature-256",
        "x-slack-signature",
        "webhook-signature",
        "x-api-key",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_CREDENTIAL_WORDS = ("token", "secret", "signature", "password", "auth", "cookie", "api-key")
MAX_HEADERS = 100


@lru_cache(maxsize=4096)
def keep_header(name: str) -> bool:
    lowered = name.lower()
    if lowered in DROPPED:
        return False
    return not any(word in lowered for word in _CREDENTIAL_WORDS)


def filter_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names; repeated headers joined with ``, ``; credentials removed."""
    kept: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        if not keep_header(name):
            continue
        value = value_bytes.decode("latin-1")
        if name in kept:
            kept[name] = f"{kept[name]}, {value}"
        elif len(kept) < MAX_HEADERS:
            kept[name] = value
    return kept
