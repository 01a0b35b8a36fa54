"""Secrets at rest: AES-256-GCM with the keys from ``HOOKLINE_SECRET_KEY``.

``HOOKLINE_SECRET_KEY`` holds one key or several, comma-separated: the first
encrypts, every one decrypts, so a key is rotated by putting the new one first,
rewriting what the old one sealed (``hookline rekey``), then removing the old one.

A stored secret reads ``v2:<key id>:<base64(nonce || ciphertext)>``: the key id
(8 hex digits of a hash of the key, which tells nothing of it) names the key that
sealed it, so decryption picks that key instead of trying each. Ciphertexts from
before key ids, ``v1:<base64(nonce || ciphertext)>``, are still read (each key is
tried) and are rewritten by a rekey. The entity key (``subscription/<id>``) is the
associated data, so a ciphertext copied onto another entity does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ConfigurationError, SecretError

_PREFIX = "v1:"  # no key id: written before keys could be rotated
_PREFIX_V2 = "v2:"


def _derive_key(material: str) -> bytes:
    """A 32-byte key: the base64 of 32 bytes is taken as it is, anything else is hashed."""
    try:
        raw = base64.b64decode(material, validate=True)
        if len(raw) == 32:
            return raw
    except ValueError:
        pass
    if len(material) < 16:
        raise ConfigurationError("HOOKLINE_SECRET_KEY must be at least 16 characters")
    return hashlib.sha256(b"hookline-secret-key\x00" + material.encode()).digest()


def key_id(key: bytes) -> str:
    """The short public name of a key, stored with what it seals."""
    return hashlib.sha256(b"hookline-key-id\x00" + key).hexdigest()[:8]


def split_keys(key_material: str | Sequence[str]) -> list[str]:
    """The keys of ``HOOKLINE_SECRET_KEY``: comma-separated, the first the current one."""
    parts = key_material.split(",") if isinstance(key_material, str) else list(key_material)
    keys = [p.strip() for p in parts if p.strip()]
    if not keys:
        raise ConfigurationError("HOOKLINE_SECRET_KEY holds no key")
    return keys


class SecretBox:
    """Encrypts and decrypts entity secrets; safe to share between tasks.

    ``key_material`` is one key, several comma-separated (as ``HOOKLINE_SECRET_KEY``
    gives them) or a sequence: the first encrypts, all decrypt.
    """

    def __init__(self, key_material: str | Sequence[str]) -> None:
        derived = [_derive_key(k) for k in split_keys(key_material)]
        self._keys = [(key_id(k), AESGCM(k)) for k in derived]
        self._by_id = dict(reversed(self._keys))  # the first of equal ids wins
        self.primary_key_id = self._keys[0][0]

    def encrypt(self, plaintext: str, *, entity_key: str) -> str:
        nonce = os.urandom(12)
        kid, aead = self._keys[0]
        sealed = aead.encrypt(nonce, plaintext.encode(), entity_key.encode())
        return f"{_PREFIX_V2}{kid}:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, *, entity_key: str) -> str:
        if stored.startswith(_PREFIX_V2):
            kid, _, body = stored[len(_PREFIX_V2) :].partition(":")
            aead = self._by_id.get(kid)
            if aead is None:
                raise SecretError(f"secret sealed by key {kid}, which HOOKLINE_SECRET_KEY lacks")
            candidates = [aead]
        elif stored.startswith(_PREFIX):
            body = stored[len(_PREFIX) :]
            candidates = [aead for _, aead in self._keys]
        else:
            raise SecretError("unknown secret format")
        try:
            blob = base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise SecretError("secret does not decrypt with this key") from exc
        for aead in candidates:
            try:
                return aead.decrypt(blob[:12], blob[12:], entity_key.encode()).decode()
            except (InvalidTag, ValueError):
                continue
        raise SecretError("secret does not decrypt with this key")

    def is_current(self, stored: str) -> bool:
        """Whether ``stored`` is sealed by the first key (nothing for a rekey to do)."""
        return stored.startswith(f"{_PREFIX_V2}{self.primary_key_id}:")

    def reseal(self, stored: str, *, entity_key: str) -> str:
        """``stored`` sealed by the first key (as it is when it already is)."""
        if self.is_current(stored):
            return stored
        return self.encrypt(self.decrypt(stored, entity_key=entity_key), entity_key=entity_key)


def generate_key() -> str:
    """A fresh key suitable for ``HOOKLINE_SECRET_KEY``."""
    return base64.b64encode(os.urandom(32)).decode()


def generate_subscription_secret() -> str:
    """``whsec_`` plus 32 random bytes in base64, as Standard Webhooks prescribes."""
    return "whsec_" + base64.b64encode(_secrets.token_bytes(32)).decode()


def mask(secret: str) -> str:
    """What may be shown of a secret after it was created: a prefix and the last 4 characters."""
    prefix = "whsec_" if secret.startswith("whsec_") else ""
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"{prefix}…{tail}"


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)
