"""HTTPS on the public port: a TLS context whose certificate follows its files.

``HOOKLINE_TLS_CERTFILE`` (the chain, PEM) and ``HOOKLINE_TLS_KEYFILE`` (its key)
are loaded at start; a file that cannot be read, or a key that does not match,
stops the service with the setting's name.

Renewal without a restart: the server's context has an SNI callback, which OpenSSL
runs for every new connection during its ClientHello, with or without a server
name. At most once every ``check_interval`` seconds it compares the files'
identity (inode, size, modification time: cert-manager's mounted Secret swaps a
symlink, ``cp`` rewrites in place) with what was loaded; when it differs it loads
them into a fresh context and hands that one to the connection
(``SSLObject.context = ...``, Python's documented way to switch certificates per
connection). Connections already open keep the context of their handshake, so
nothing open is dropped. Files caught half-written (a key that does not match its
certificate yet) keep the previous certificate in service, are logged, and are
tried again at the next check.

The protocol and ciphers are Mozilla's "intermediate" profile: TLS 1.2 and 1.3,
for 1.2 only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (the DHE suites
of the profile are left out: Python loads no DH parameters, and every client
that speaks TLS 1.2 speaks ECDHE), no compression, no renegotiation. ALPN offers
``http/1.1``, the one protocol served.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from shared.errors import ConfigurationError

log = logging.getLogger("hookline.ingress.tls")

# Mozilla's intermediate TLS 1.2 suites with forward secrecy over ECDHE (TLS 1.3's are
# OpenSSL's defaults, all of which the profile allows).
CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

Stamp = tuple[tuple[int, int, int], tuple[int, int, int]]


def server_context() -> ssl.SSLContext:
    """A server context with the intermediate profile and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    return context


def _stamp(certfile: Path, keyfile: Path) -> Stamp:
    def one(path: Path) -> tuple[int, int, int]:
        st = os.stat(path)  # follows symlinks: a Secret volume's ..data swap is seen
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    return one(certfile), one(keyfile)


def _load(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    context = server_context()
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


class ReloadingCertificate:
    """The public port's TLS: :attr:`context` for the server, reloaded when the files change.

    Lifecycle: built at start (the files must load); then every handshake may reload
    it (at most once per ``check_interval``). No task, nothing to stop.
    """

    def __init__(
        self,
        certfile: Path,
        keyfile: Path,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._certfile, self._keyfile = certfile, keyfile
        self._interval = check_interval
        self._clock = clock
        try:
            self._stamp = _stamp(certfile, keyfile)
            self._current = _load(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load HOOKLINE_TLS_CERTFILE={certfile} with HOOKLINE_TLS_KEYFILE="
                f"{keyfile}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        self._checked = clock()
        self._failed: Stamp | None = None
        #: The context the server listens with: it holds the certificate loaded at start
        #: and switches each new connection to the newest one.
        self.context = self._current
        self.context.sni_callback = self._on_client_hello
        self.reloads = 0

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        current = self.current()
        if connection.context is not current:
            connection.context = current

    def current(self) -> ssl.SSLContext:
        """The context with the newest certificate, reloading it when the files changed."""
        now = self._clock()
        if now - self._checked < self._interval:
            return self._current
        self._checked = now
        stamp = None
        try:
            stamp = _stamp(self._certfile, self._keyfile)
            if stamp in (self._stamp, self._failed):
                return self._current
            fresh = _load(self._certfile, self._keyfile)
        except (OSError, ssl.SSLError) as exc:
            if stamp is not None:
                self._failed = stamp  # logged once per state of the files
            log.warning(
                "the TLS certificate files changed but do not load; serving the previous one",
                extra={"certfile": str(self._certfile), "error": str(exc)},
            )
            return self._current
        # The new context needs the callback too: a connection is switched to it inside
        # the callback, and later connections start from the listening context anyway.
        fresh.sni_callback = self._on_client_hello
        self._current, self._stamp = fresh, stamp
        self.reloads += 1
        log.info("TLS certificate reloaded", extra={"certfile": str(self._certfile)})
        return fresh
