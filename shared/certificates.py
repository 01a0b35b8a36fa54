"""Client certificates for mutual TLS: what is checked of one before it is stored.

A subscription's ``client_certificate`` is a PEM chain (the certificate first, then any
intermediates) and an unencrypted PEM private key that belongs to it. The admin API
checks both when the subscription is written and stores what may be shown (fingerprint,
subject, expiry) beside the encrypted key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

MAX_PEM = 64 * 1024


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    fingerprint: str  # SHA-256 of the first certificate (DER), hex
    subject: str
    not_after: datetime


def check_identity(certificate: str, key: str) -> CertificateFacts:
    """The facts of ``certificate``; :class:`ValueError` saying what is wrong otherwise."""
    if len(certificate) > MAX_PEM or len(key) > MAX_PEM:
        raise ValueError("a certificate or key is at most 64 KiB of PEM")
    try:
        chain = x509.load_pem_x509_certificates(certificate.encode())
    except ValueError as exc:
        raise ValueError("the certificate is not PEM X.509") from exc
    try:
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except TypeError as exc:
        raise ValueError("the key must not be encrypted (it is stored encrypted)") from exc
    except ValueError as exc:
        raise ValueError("the key is not a PEM private key") from exc
    first = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = private.public_key().public_bytes(serialization.Encoding.DER, public)
    theirs = first.public_key().public_bytes(serialization.Encoding.DER, public)
    if ours != theirs:
        raise ValueError("the key does not belong to the (first) certificate")
    return CertificateFacts(
        fingerprint=first.fingerprint(hashes.SHA256()).hex(),
        subject=first.subject.rfc4514_string(),
        not_after=first.not_valid_after_utc,
    )
