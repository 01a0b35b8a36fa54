"""Standard Webhooks signing: the one implementation hookline signs with.

The delivery service signs every outbound request with :func:`sign`; tests and
benchmarks use it to sign what they post to the ingress. Verification lives in
the ingress, which must also accept secrets that are not ``whsec_`` keys.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from functools import lru_cache
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


@lru_cache(maxsize=4096)
def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decodes; anything else is used as it is."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


@lru_cache(maxsize=4096)
def _keyed_mac(secret: str) -> Any:
    # An HMAC already keyed: copying it skips the key schedule on every signature.
    return hmac.new(signing_key(secret), digestmod="sha256")


def sign(msg_id: str, timestamp: int, body: str | bytes, secret: str) -> str:
    """One ``v1,<base64>`` signature of ``id.timestamp.body``."""
    payload = body.encode() if isinstance(body, str) else body
    mac = _keyed_mac(secret).copy()
    mac.update(f"{msg_id}.{timestamp}.".encode())
    mac.update(payload)
    return "v1," + base64.b64encode(mac.digest()).decode()
