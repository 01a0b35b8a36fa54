"""The local broker, secured: TLS, SCRAM users per service, and the ACL table enforced.

``hookline kafka start --secure`` keeps everything it makes in ``<state>/secure``:
a CA and a broker certificate for 127.0.0.1 and localhost (made with the
``cryptography`` package on first start; PEM, which Kafka reads since 2.7), one
password file per user (0600), and ``<service>.env`` with the settings that
service needs.

Listeners: ``SASL_SSL`` on the broker port, the one clients reach, with
SCRAM-SHA-512 over TLS; the broker talks to itself over it too, as the super
user ``operator`` (the SCRAM users are written into the cluster metadata when the
storage is formatted, so they exist before the broker needs them). The
controller listener on port + 1 stays plaintext on loopback, with SASL PLAIN and
a static password: KRaft cannot check SCRAM before it has metadata, and an
anonymous controller principal would have to be a super user that anyone on the
machine could be.

The authorizer is KRaft's ``StandardAuthorizer`` with
``allow.everyone.if.no.acl.found=false``: a user may do only what the table of
:mod:`shared.acls` grants it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol.admin import CreateAclsRequest_v1, DeleteAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.acls import ALLOW, OPERATIONS, PATTERN_TYPES, RESOURCE_TYPES, SERVICES, grants
from shared.errors import ConfigurationError
from shared.kafka_security import KafkaSecurity

SUPER_USER = "operator"
USERS = (SUPER_USER, *SERVICES)
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecureFiles:
    """What the secure broker keeps in ``folder``."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def cert(self) -> Path:
        return self.folder / "broker.pem"

    @property
    def key(self) -> Path:
        return self.folder / "broker.key"

    def password_file(self, user: str) -> Path:
        return self.folder / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def env_file(self, user: str) -> Path:
        return self.folder / f"{user}.env"

    def ensure(self) -> None:
        """Make the CA, the broker certificate and the passwords that do not exist yet."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        if not self.ca.exists() or not self.ca_key.exists():
            key, cert = make_ca("hookline local CA")
            _write_private(self.ca_key, _key_pem(key))
            self.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            self.cert.unlink(missing_ok=True)  # signed by the old CA, if any
        if not self.cert.exists() or not self.key.exists():
            ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
            ca_cert = x509.load_pem_x509_certificate(self.ca.read_bytes())
            assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
            key, cert = make_server_cert(ca_key, ca_cert, ["localhost"], ["127.0.0.1", "::1"])
            _write_private(self.key, _key_pem(key))
            self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        for user in (*USERS, "controller"):
            if not self.password_file(user).exists():
                _write_private(self.password_file(user), secrets.token_urlsafe(24).encode())

    def security(self, user: str) -> KafkaSecurity:
        """Client security for ``user`` against this broker."""
        from shared.kafka_security import build_ssl_context
        from shared.settings import Settings

        context = build_ssl_context(Settings(kafka_ssl_cafile=self.ca))
        return KafkaSecurity(
            protocol="SASL_SSL",
            mechanism=MECHANISM,
            username=user,
            password=self.password(user),
            ssl_context=context,
            cafile=self.ca,
        )

    def env(self, user: str, bootstrap: str) -> dict[str, str]:
        """The ``HOOKLINE_*`` settings a process running as ``user`` needs."""
        return {
            "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HOOKLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HOOKLINE_KAFKA_SASL_MECHANISM": MECHANISM,
            "HOOKLINE_KAFKA_SASL_USERNAME": user,
            "HOOKLINE_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user)),
            "HOOKLINE_KAFKA_SSL_CAFILE": str(self.ca),
        }

    def write_env_files(self, bootstrap: str) -> None:
        for user in USERS:
            lines = [f"{k}={v}" for k, v in self.env(user, bootstrap).items()]
            self.env_file(user).write_text("\n".join(lines) + "\n")

    def properties(self, host: str, port: int, controller_port: int) -> list[str]:
        """The broker's ``server.properties`` lines for the secured listeners."""
        operator, controller = self.password(SUPER_USER), self.password("controller")
        scram = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{SUPER_USER}" password="{operator}";'
        )
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="controller" password="{controller}" user_controller="{controller}";'
        )
        return [
            f"listeners=SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=SASL_SSL://{host}:{port}",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            "sasl.mechanism.controller.protocol=PLAIN",
            f"listener.name.sasl_ssl.sasl.enabled.mechanisms={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={scram}",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={plain}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.folder / 'keystore.pem'}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca}",
            "ssl.client.auth=none",
            "ssl.endpoint.identification.algorithm=https",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{SUPER_USER};User:controller",
        ]

    def keystore(self) -> None:
        """Kafka's PEM keystore: the key (PKCS#8, unencrypted) then the certificate."""
        key = serialization.load_pem_private_key(self.key.read_bytes(), None)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(self.folder / "keystore.pem", pem + self.cert.read_bytes())

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every SCRAM user."""
        args: list[str] = []
        for user in USERS:
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={self.password(user)}]"]
        return args


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    dns: list[str],
    ips: list[str],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


Binding = tuple[int, str, int, str, str, int, int]


def acl_bindings(
    prefix: str, services: tuple[str, ...] = SERVICES, *, skip: tuple[str, str, str] | None = None
) -> list[Binding]:
    """CreateAcls entries for the table; ``skip`` = (service, name, operation) leaves one out."""
    out: list[Binding] = []
    for service in services:
        for g in grants(service, prefix):
            for op in g.operations:
                if skip == (service, g.name, op):
                    continue
                out.append(
                    (
                        RESOURCE_TYPES[g.resource],
                        g.name if g.resource != "cluster" else "kafka-cluster",
                        PATTERN_TYPES[g.pattern],
                        f"User:{service}",
                        "*",
                        OPERATIONS[op],
                        ALLOW,
                    )
                )
    return out


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, creations: list[Binding]) -> None:
        self._creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._creations)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, filters: list[Binding]) -> None:
        self._filters = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self._filters)


async def _change_acls(
    bootstrap: str,
    security: KafkaSecurity,
    request: Request,
    bindings: list[Binding],
    *,
    present: bool,
) -> None:
    from shared.kafka_access import connect

    conn = await connect(bootstrap, security, timeout=15.0)
    try:
        response = await conn.send(request)
        results = getattr(response, "creation_responses", None) or getattr(
            response, "filter_responses", []
        )
        for code, message, *_ in results:
            if code:
                raise ConfigurationError(f"Kafka refused an ACL change ({code}): {message}")
        # The controller has committed the change; the broker's authorizer applies it a
        # moment later. Callers go on to use the ACLs at once, so wait for the broker.
        await _until_applied(conn, bindings, present=present)
    finally:
        conn.close()


async def _until_applied(
    conn: AIOKafkaConnection, bindings: list[Binding], *, present: bool, timeout: float = 15.0
) -> None:
    wanted = {(b[0], b[1], b[2], b[3], b[5]) for b in bindings}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen: set[tuple[int, str, int, str, int]] = set()
        for principal in {b[3] for b in bindings}:
            # Every ALLOW of ``principal``: resource ANY, pattern ANY, operation ANY.
            answer: Any = await conn.send(DescribeAclsRequest(1, None, 1, principal, None, 1, 1))
            for rtype, name, pattern, acls in answer.resources:
                seen.update((rtype, name, pattern, p, op) for p, _host, op, _perm in acls)
        if (wanted <= seen) if present else not (wanted & seen):
            return
        if loop.time() > deadline:
            raise ConfigurationError(f"the broker did not apply an ACL change in {timeout}s")
        await asyncio.sleep(0.05)


async def create_acls(bootstrap: str, security: KafkaSecurity, bindings: list[Binding]) -> None:
    """Add ``bindings`` (idempotent: an ACL that exists is not added twice); return once the
    broker enforces them."""
    if bindings:
        await _change_acls(bootstrap, security, _CreateAcls(bindings), bindings, present=True)


async def delete_acls(bootstrap: str, security: KafkaSecurity, bindings: list[Binding]) -> None:
    """Remove exactly ``bindings`` (each an exact-match filter); return once they are gone."""
    if bindings:
        await _change_acls(bootstrap, security, _DeleteAcls(bindings), bindings, present=False)


async def grant_services(
    bootstrap: str, files: SecureFiles, prefix: str, services: tuple[str, ...] = SERVICES
) -> None:
    """Give every service its table for ``prefix``, as the super user."""
    await create_acls(bootstrap, files.security(SUPER_USER), acl_bindings(prefix, services))
