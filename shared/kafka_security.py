"""How hookline's Kafka clients authenticate and encrypt: the ``HOOKLINE_KAFKA_*`` security settings.

:class:`KafkaSecurity` is built once from :class:`~shared.settings.Settings`
(``…_FILE`` secrets are read then, the TLS context is loaded then, so a missing
or unreadable file stops the service at start with the setting's name) and
turns into the keyword arguments every aiokafka client takes.

The factories in :mod:`shared.kafka` apply the security in force: the one given
to them, else the one installed with :func:`kafka_security` for the current
context (``hookline <service>`` installs it from the settings before it runs the
service), else plaintext. A context variable, not a module global: a test can run
a secured client beside plaintext ones in the same event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider

from shared.errors import ConfigurationError
from shared.settings import Settings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


class KafkaAccessError(ConfigurationError):
    """Kafka refused this service: its credentials, its trust in the broker, or an ACL.

    The message names the setting or the resource to fix; it is meant to be the one
    line a service logs before it stops (or turns not ready).
    """

    # TODO(errors): move to shared/errors.py

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        #: what kind of refusal: "credentials", "tls", "acl", "missing-topic", "protocol"
        self.cause = cause


def _read_secret_file(path: Path, setting: str) -> str:
    try:
        # Mounted secrets often end in a newline that is not part of the value.
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {setting}={path}: {exc.strerror or exc}") from exc


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """An OAUTHBEARER token read from a file, read again whenever the file changes.

    A sidecar or a projected service-account token refreshes the file; each
    connection asks for a token, and a changed modification time or size means a
    new one. The read is small and rare (once per connection), so it is done inline.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    def current(self) -> str:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read HOOKLINE_KAFKA_SASL_OAUTH_TOKEN_FILE={self.path}: "
                f"{exc.strerror or exc}"
            ) from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            token = _read_secret_file(self.path, "HOOKLINE_KAFKA_SASL_OAUTH_TOKEN_FILE").strip()
            if not token:
                raise ConfigurationError(
                    f"HOOKLINE_KAFKA_SASL_OAUTH_TOKEN_FILE={self.path} is empty"
                )
            self._token, self._stamp = token, stamp
        return self._token

    async def token(self) -> str:
        await asyncio.sleep(0)  # an async callback by aiokafka's contract
        return self.current()


def build_ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS for the brokers: ``HOOKLINE_KAFKA_SSL_CAFILE`` or the system's CAs, optional client cert."""
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load HOOKLINE_KAFKA_SSL_CAFILE={cafile}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    context.check_hostname = settings.kafka_ssl_check_hostname
    # Without the name check the chain is still verified: an unchecked name is a weaker
    # promise, never an untrusted broker.
    context.verify_mode = ssl.CERT_REQUIRED
    certfile, keyfile = settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
    if keyfile is not None and certfile is None:
        raise ConfigurationError(
            "HOOKLINE_KAFKA_SSL_KEYFILE is set without HOOKLINE_KAFKA_SSL_CERTFILE"
        )
    if certfile is not None:
        password = settings.kafka_ssl_key_password
        try:
            context.load_cert_chain(
                str(certfile),
                str(keyfile) if keyfile else None,
                password.get_secret_value() if password else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the client certificate HOOKLINE_KAFKA_SSL_CERTFILE={certfile}"
                f" / HOOKLINE_KAFKA_SSL_KEYFILE={keyfile}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
    return context


@dataclass(frozen=True)
class KafkaSecurity:
    """The security part of every Kafka client's options."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    token_provider: FileTokenProvider | None = field(default=None, repr=False)
    cafile: Path | None = None  # named in messages: "not trusted by ..."

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    @property
    def uses_tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    @property
    def principal(self) -> str:
        """Who the broker sees, for messages (the token's subject is the broker's to say)."""
        if self.uses_sasl and self.mechanism != "OAUTHBEARER" and self.username:
            return self.username
        if self.uses_sasl:
            return "(OAUTHBEARER token)"
        return "ANONYMOUS" if not self.uses_tls else "(TLS client)"

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        protocol = settings.kafka_security_protocol
        mechanism = settings.kafka_sasl_mechanism
        username: str | None = None
        password: str | None = None
        provider: FileTokenProvider | None = None
        if protocol in SASL_PROTOCOLS:
            if mechanism == "OAUTHBEARER":
                if settings.kafka_sasl_oauth_token_file is None:
                    raise ConfigurationError(
                        "HOOKLINE_KAFKA_SASL_MECHANISM=OAUTHBEARER needs "
                        "HOOKLINE_KAFKA_SASL_OAUTH_TOKEN_FILE"
                    )
                provider = FileTokenProvider(settings.kafka_sasl_oauth_token_file)
                provider.current()  # an unreadable token file stops the start, not a connect
            else:
                username = settings.kafka_sasl_username
                if settings.kafka_sasl_username_file is not None:
                    username = _read_secret_file(
                        settings.kafka_sasl_username_file, "HOOKLINE_KAFKA_SASL_USERNAME_FILE"
                    ).strip()
                if settings.kafka_sasl_password is not None:
                    password = settings.kafka_sasl_password.get_secret_value()
                if settings.kafka_sasl_password_file is not None:
                    password = _read_secret_file(
                        settings.kafka_sasl_password_file, "HOOKLINE_KAFKA_SASL_PASSWORD_FILE"
                    )
                if not username or password is None:
                    raise ConfigurationError(
                        f"HOOKLINE_KAFKA_SECURITY_PROTOCOL={protocol} with {mechanism} needs "
                        "HOOKLINE_KAFKA_SASL_USERNAME and HOOKLINE_KAFKA_SASL_PASSWORD "
                        "(or their _FILE forms)"
                    )
        context = build_ssl_context(settings) if protocol in TLS_PROTOCOLS else None
        return cls(
            protocol=protocol,
            mechanism=mechanism,
            username=username,
            password=password,
            ssl_context=context,
            token_provider=provider,
            cafile=settings.kafka_ssl_cafile,
        )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            options["sasl_mechanism"] = self.mechanism
            if self.token_provider is not None:
                options["sasl_oauth_token_provider"] = self.token_provider
            else:
                options["sasl_plain_username"] = self.username
                options["sasl_plain_password"] = self.password
        return options


PLAINTEXT = KafkaSecurity()

_current: contextvars.ContextVar[KafkaSecurity] = contextvars.ContextVar(
    "hookline_kafka_security", default=PLAINTEXT
)


def current_security() -> KafkaSecurity:
    """The security the factories apply when they are given none."""
    return _current.get()


@contextlib.contextmanager
def kafka_security(security: KafkaSecurity) -> Iterator[KafkaSecurity]:
    """Apply ``security`` to every client made in this context (and tasks started in it)."""
    token = _current.set(security)
    try:
        yield security
    finally:
        _current.reset(token)


def install_security(settings: Settings) -> KafkaSecurity:
    """For a process's entry point: build the security from ``settings`` and keep it in force."""
    security = KafkaSecurity.from_settings(settings)
    _current.set(security)
    return security
