"""TLS towards receivers: the CAs they are checked against, and client certificates.

The service checks receivers' certificates against the system's CAs, or against
``HOOKLINE_DELIVERY_CA_FILE`` when it is set. A subscription with a
``client_certificate`` presents it (mutual TLS): its key is decrypted with the service
key (the entity key plus ``#client_certificate`` as associated data) and loaded into an
SSL context of its own, kept per subscription and certificate (a new version with the
same certificate keeps it). Python's ``ssl`` loads a chain only from files, so the PEM
goes through a private temporary file that is removed as soon as it is read.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from pathlib import Path

import httpx

from shared.crypto import SecretBox
from shared.entities import Subscription
from shared.errors import SecretError


def receiver_context(ca_file: Path | None) -> ssl.SSLContext:
    """A client context that checks receivers (against ``ca_file`` when given)."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return httpx.create_ssl_context(trust_env=False)


class ClientCertificates:
    """SSL contexts with each subscription's client certificate, made once per certificate."""

    def __init__(self, box: SecretBox | None, ca_file: Path | None, keep: int = 256) -> None:
        self._box = box
        self._ca_file = ca_file
        self._keep = keep
        self._contexts: dict[tuple[str, str, str], ssl.SSLContext] = {}

    @staticmethod
    def key_of(sub: Subscription) -> tuple[str, str, str] | None:
        cert = sub.client_certificate
        if cert is None:
            return None
        return (sub.id, cert.fingerprint, cert.key.ciphertext)

    def context(self, sub: Subscription) -> ssl.SSLContext:
        """``sub``'s context; :class:`SecretError` when its key does not decrypt or load."""
        key = self.key_of(sub)
        assert key is not None and sub.client_certificate is not None
        found = self._contexts.get(key)
        if found is not None:
            return found
        if self._box is None:
            raise SecretError("a client certificate needs HOOKLINE_SECRET_KEY")
        cert = sub.client_certificate
        plain = self._box.decrypt(cert.key.ciphertext, entity_key=sub.client_key_entity)
        context = receiver_context(self._ca_file)
        with tempfile.TemporaryDirectory(prefix="hookline-tls-") as folder:
            path = Path(folder) / "identity.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(cert.certificate.strip() + "\n" + plain.strip() + "\n")
            try:
                context.load_cert_chain(str(path))
            except (ssl.SSLError, ValueError) as exc:
                raise SecretError(f"the client certificate does not load: {exc}") from exc
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()
        if len(self._contexts) >= self._keep:
            self._contexts.pop(next(iter(self._contexts)))
        self._contexts[key] = context
        return context
