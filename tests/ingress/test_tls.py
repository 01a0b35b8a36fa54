"""HTTPS on the public port: the intermediate TLS profile, and a certificate replaced on
disk that new connections get without a restart while open ones carry on."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from localkafka.security import make_ca, make_server_cert
from services.ingress._tls import ReloadingCertificate
from shared.errors import ConfigurationError
from shared.settings import Settings
from shared.topics import Topics
from testkit.config import put_entities, webhook
from tests.ingress.helpers import github_headers
from tests.ingress.rawhttp import Connection, request, served_ingress

SECRET = "tls-github-secret"


@dataclass
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    file: Path

    def client(self, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.file))
        for name, version in versions.items():
            setattr(context, name, version)
        return context


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    key, cert = make_ca("hookline test CA")
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(key, cert, path)


def issue(ca: Authority, certfile: Path, keyfile: Path) -> bytes:
    """A certificate for localhost written over ``certfile`` and ``keyfile``; its DER."""
    key, cert = make_server_cert(ca.key, ca.cert, ["localhost"], ["127.0.0.1"])
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Written aside and renamed, as a Secret volume's update swaps whole files.
    for path, data in (
        (keyfile, key_pem),
        (certfile, cert.public_bytes(serialization.Encoding.PEM)),
    ):
        aside = path.with_suffix(".new")
        aside.write_bytes(data)
        os.replace(aside, path)
    return cert.public_bytes(serialization.Encoding.DER)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_replaced_certificate_is_loaded_once_the_check_interval_passed(
    authority: Authority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certfile, keyfile = tmp_path / "tls.crt", tmp_path / "tls.key"
    issue(authority, certfile, keyfile)
    clock = Clock()
    certificate = ReloadingCertificate(certfile, keyfile, check_interval=1.0, clock=clock)
    first = certificate.current()
    assert first is certificate.context
    issue(authority, certfile, keyfile)
    assert certificate.current() is first, "not before the interval"
    clock.now += 1.0
    second = certificate.current()
    assert second is not first and certificate.reloads == 1
    clock.now += 1.0
    assert certificate.current() is second, "unchanged files are not loaded again"

    # Caught half-written (a key of another certificate): the previous one stays, and
    # the warning comes once for that state of the files.
    other_key = tmp_path / "other.key"
    issue(authority, tmp_path / "other.crt", other_key)
    os.replace(other_key, keyfile)
    caplog.set_level(logging.WARNING, logger="hookline.ingress.tls")
    for _ in range(3):
        clock.now += 1.0
        assert certificate.current() is second
    assert len([r for r in caplog.records if "do not load" in r.getMessage()]) == 1
    issue(authority, certfile, keyfile)
    clock.now += 1.0
    assert certificate.current() is not second and certificate.reloads == 2


def test_files_that_do_not_load_stop_the_service_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="HOOKLINE_TLS_CERTFILE"):
        ReloadingCertificate(tmp_path / "missing.crt", tmp_path / "missing.key")


def test_settings_take_both_tls_files_or_neither(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="HOOKLINE_TLS_KEYFILE"):
        Settings(tls_certfile=tmp_path / "tls.crt")


async def _served_tls(
    authority: Authority, tmp_path: Path, settings: Settings
) -> tuple[Path, Path, bytes, Settings]:
    certfile, keyfile = tmp_path / "tls.crt", tmp_path / "tls.key"
    der = issue(authority, certfile, keyfile)
    return (
        certfile,
        keyfile,
        der,
        settings.model_copy(update={"tls_certfile": certfile, "tls_keyfile": keyfile}),
    )


def _post() -> bytes:
    body = b'{"ref": "refs/heads/main"}'
    headers = {
        **github_headers(SECRET, body, "push", str(uuid.uuid4())),
        "Content-Type": "application/json",
    }
    return request("/webhooks/gh/github", body, headers)


@pytest.mark.kafka
async def test_new_connections_get_a_renewed_certificate_and_open_ones_carry_on(
    authority: Authority, tmp_path: Path, settings: Settings, topics: Topics
) -> None:
    await put_entities(
        settings.kafka_bootstrap_servers,
        topics.config,
        webhook("gh", provider="github", secrets=[SECRET]),
    )
    certfile, keyfile, first, tls_settings = await _served_tls(authority, tmp_path, settings)
    async with served_ingress(tls_settings) as served:
        kept = await Connection.open(served.port, tls=authority.client())
        assert kept.peer_certificate() == first
        await kept.send(_post())
        assert (await kept.answer()).status == 202

        renewed = issue(authority, certfile, keyfile)
        # Within the check interval (1 s) a new connection presents the new certificate.
        async with asyncio.timeout(10):
            while True:
                fresh = await Connection.open(served.port, tls=authority.client())
                presented = fresh.peer_certificate()
                if presented == renewed:
                    break
                assert presented == first
                await fresh.close()
                await asyncio.sleep(0.2)
        await fresh.send(_post())
        assert (await fresh.answer()).status == 202

        # The connection opened before the renewal was not dropped: it completes a request.
        await kept.send(_post())
        assert (await kept.answer()).status == 202
        assert kept.peer_certificate() == first
        await kept.close()
        await fresh.close()


@pytest.mark.kafka
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    ("client", "served"),
    [
        ({"minimum_version": ssl.TLSVersion.TLSv1_3}, True),
        ({"maximum_version": ssl.TLSVersion.TLSv1_2}, True),
        ({"maximum_version": ssl.TLSVersion.TLSv1_1}, False),
    ],
)
async def test_tls_12_and_13_are_served_and_older_versions_refused(
    authority: Authority,
    tmp_path: Path,
    settings: Settings,
    topics: Topics,
    client: dict[str, ssl.TLSVersion],
    served: bool,
) -> None:
    *_, tls_settings = await _served_tls(authority, tmp_path, settings)
    context = authority.client(**client)
    if not served:
        # The client has to be willing to offer the old version at all.
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    async with served_ingress(tls_settings) as server:
        if served:
            conn = await Connection.open(server.port, tls=context)
            await conn.send(request("/metrics", b"", {}))
            assert (await conn.answer()).status == 404
            await conn.close()
        else:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await Connection.open(server.port, tls=context)


@pytest.mark.kafka
async def test_tls_12_suites_outside_the_intermediate_profile_are_refused(
    authority: Authority, tmp_path: Path, settings: Settings, topics: Topics
) -> None:
    *_, tls_settings = await _served_tls(authority, tmp_path, settings)

    def client(ciphers: str) -> ssl.SSLContext:
        context = authority.client(maximum_version=ssl.TLSVersion.TLSv1_2)
        context.set_ciphers(ciphers)
        return context

    async with served_ingress(tls_settings) as server:
        conn = await Connection.open(server.port, tls=client("ECDHE-ECDSA-AES128-GCM-SHA256"))
        assert conn.ssl_object.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        await conn.close()
        # CBC suites with SHA-1 and SHA-384 MACs: OpenSSL still has them, the profile not.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await Connection.open(
                server.port, tls=client("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")
            )
