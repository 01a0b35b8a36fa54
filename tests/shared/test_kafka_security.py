"""Kafka client security against a real secured broker (SASL_SSL, SCRAM, ACLs enforced).

A service started with a wrong password, a CA that did not sign the broker's
certificate, or a user without one of its ACLs stops at once with one line that
names the cause; a plaintext client is refused; a write outside the ACLs is
denied with the topic's name; an ACL revoked while running turns the access
watch not ready, and it recovers when the ACL is back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from cryptography.hazmat.primitives import serialization

from localkafka.security import acl_bindings, create_acls, delete_acls, make_ca
from shared.kafka import create_producer, ensure_topics
from shared.kafka_access import AccessWatch, check_access
from shared.kafka_security import KafkaAccessError, KafkaSecurity, kafka_security
from shared.settings import Settings
from shared.topics import topic_registry
from testkit import TEST_SECRET_KEY
from testkit.kafka import wait_until
from testkit.secure import SecureBroker

pytestmark = [pytest.mark.kafka]


def _prefix() -> str:
    return f"s{uuid.uuid4().hex[:8]}."


def _settings(broker: SecureBroker, prefix: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap, topic_prefix=prefix, retry_schedule=(1, 2, 3)
    )


def _start_service(service: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """``hookline <service>`` until it exits; its exit status and what it wrote to stderr."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli", service],
        env={**base, "HOOKLINE_SECRET_KEY": TEST_SECRET_KEY, "HOOKLINE_HOST": "127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stderr


async def test_a_wrong_password_stops_the_service_naming_the_credential_settings(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    prefix = _prefix()
    await secure_broker.grant(prefix, ("ingress",))
    await secure_broker.topics(prefix)
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    env = {
        **secure_broker.env("ingress"),
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_KAFKA_SASL_PASSWORD_FILE": str(wrong),
    }
    code, stderr = await asyncio.to_thread(_start_service, "ingress", env)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, "one line, not a retry loop of stack traces"
    assert "rejected the credentials for user ingress" in lines[0]
    assert "HOOKLINE_KAFKA_SASL_PASSWORD" in lines[0]


async def test_an_untrusted_ca_stops_the_service_naming_the_ca_file(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    _, other_ca = make_ca("not the broker's CA")
    cafile = tmp_path / "other-ca.pem"
    cafile.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    env = {
        **secure_broker.env("ingress"),
        "HOOKLINE_TOPIC_PREFIX": _prefix(),
        "HOOKLINE_KAFKA_SSL_CAFILE": str(cafile),
    }
    code, stderr = await asyncio.to_thread(_start_service, "ingress", env)
    assert code == 2, stderr
    assert stderr.count("\n") == 1
    assert f"is not trusted by HOOKLINE_KAFKA_SSL_CAFILE={cafile}" in stderr


async def test_a_missing_acl_stops_the_service_naming_the_topic_and_the_grant(
    secure_broker: SecureBroker,
) -> None:
    prefix = _prefix()
    await secure_broker.topics(prefix)
    # Everything the table gives the delivery service but Write on the dead-letter topic.
    bindings = acl_bindings(prefix, ("delivery",), skip=("delivery", f"{prefix}dlq", "Write"))
    from localkafka.security import create_acls

    await create_acls(secure_broker.bootstrap, secure_broker.security(), bindings)
    env = {
        **secure_broker.env("delivery"),
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_RETRY_SCHEDULE": "1,2,3",
    }
    code, stderr = await asyncio.to_thread(_start_service, "delivery", env)
    assert code == 2, stderr
    assert stderr.strip() == (
        f"hookline: Kafka user delivery is not allowed to write topic {prefix}dlq: "
        f"grant Write on topic {prefix}dlq to User:delivery (see `hookline acls`)"
    )


async def test_a_missing_topic_stops_the_service_telling_who_creates_topics(
    secure_broker: SecureBroker,
) -> None:
    prefix = _prefix()
    await secure_broker.grant(prefix, ("ingress",))  # its ACLs, but no topics made
    with pytest.raises(
        KafkaAccessError, match=rf"topics {prefix}config, {prefix}inbound do not exist"
    ) as caught:
        await ensure_topics(
            secure_broker.bootstrap,
            topic_registry(prefix, retry_tiers=3),
            security=secure_broker.security("ingress"),
        )
    assert "`hookline topics`" in str(caught.value)


async def test_a_service_without_create_skips_other_services_topics(
    secure_broker: SecureBroker,
) -> None:
    prefix = _prefix()
    await secure_broker.grant(prefix, ("ingress",))
    await secure_broker.topics(prefix)
    report = await ensure_topics(
        secure_broker.bootstrap,
        topic_registry(prefix, retry_tiers=3),
        security=secure_broker.security("ingress"),
    )
    assert sorted(report.existing) == [f"{prefix}config", f"{prefix}inbound"]
    assert report.created == []
    assert f"{prefix}dlq" in report.skipped


async def test_a_plaintext_client_is_refused_by_the_secured_listener(
    secure_broker: SecureBroker,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=secure_broker.bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    plaintext = Settings(kafka_bootstrap_servers=secure_broker.bootstrap)
    with pytest.raises(KafkaAccessError) as caught:
        await check_access(plaintext, "ingress", security=KafkaSecurity(), timeout=5)
    assert caught.value.cause == "protocol"
    assert "HOOKLINE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in str(caught.value)


async def test_a_write_outside_the_acls_is_denied_naming_the_topic(
    secure_broker: SecureBroker,
) -> None:
    prefix = _prefix()
    await secure_broker.grant(prefix, ("ingress",))
    topics = await secure_broker.topics(prefix)
    with kafka_security(secure_broker.security("ingress")):
        async with create_producer(secure_broker.bootstrap) as producer:
            await producer.send_and_wait(topics.inbound, b"allowed")
            with pytest.raises(TopicAuthorizationFailedError, match=topics.dlq):
                await asyncio.wait_for(producer.send_and_wait(topics.dlq, b"denied"), 20)


async def test_each_service_passes_its_own_check_and_not_anothers(
    secure_broker: SecureBroker,
) -> None:
    prefix = _prefix()
    await secure_broker.grant(prefix)
    await secure_broker.topics(prefix)
    settings = _settings(secure_broker, prefix)
    for service in ("ingress", "dispatcher", "delivery", "admin"):
        await check_access(settings, service, security=secure_broker.security(service))
    with pytest.raises(KafkaAccessError, match=r"user ingress is not allowed to read topic"):
        await check_access(settings, "dispatcher", security=secure_broker.security("ingress"))

    # The dispatcher without its transactional ids (under a prefix of their own).
    other = _prefix()
    await secure_broker.topics(other)
    skip = ("dispatcher", f"{other}dispatcher-", "Write")
    await create_acls(
        secure_broker.bootstrap,
        secure_broker.security(),
        acl_bindings(other, ("dispatcher",), skip=skip),
    )
    with pytest.raises(KafkaAccessError) as caught:
        await check_access(
            _settings(secure_broker, other).model_copy(update={"replica_id": "d-0"}),
            "dispatcher",
            security=secure_broker.security("dispatcher"),
        )
    assert str(caught.value) == (
        f"Kafka user dispatcher is not allowed to write transactional-id {other}dispatcher-d-0: "
        f"grant Write on transactional-id {other}dispatcher- (prefixed) to User:dispatcher "
        "(see `hookline acls`)"
    )


async def test_an_acl_revoked_while_running_marks_the_service_not_ready_and_says_why(
    secure_broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = _prefix()
    await secure_broker.grant(prefix, ("ingress",))
    await secure_broker.topics(prefix)
    settings = _settings(secure_broker, prefix)
    revoked = [b for b in acl_bindings(prefix, ("ingress",)) if b[1] == f"{prefix}inbound"]
    watch = AccessWatch(
        settings, "ingress", security=secure_broker.security("ingress"), interval=0.3
    )
    async with watch:
        await watch.check_once()
        assert watch.ready
        await delete_acls(secure_broker.bootstrap, secure_broker.security(), revoked)
        await wait_until(lambda: not watch.ready, timeout=15, message="the watch to see the revoke")
        assert watch.problem is not None
        assert f"not allowed to write topic {prefix}inbound" in str(watch.problem)
        await asyncio.sleep(1.0)  # several more checks: the refusal is logged once
        errors = [r for r in caplog.records if r.name == "hookline.kafka.access"]
        assert len([r for r in errors if r.levelname == "ERROR"]) == 1
        await secure_broker.grant(prefix, ("ingress",))
        await wait_until(lambda: watch.ready, timeout=15, message="access restored")


def test_settings_read_secrets_from_files_and_refuse_both_forms(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("svc-user\n")
    (tmp_path / "pass").write_text("s3cret\n")
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username_file=tmp_path / "user",
        kafka_sasl_password_file=tmp_path / "pass",
    )
    security = KafkaSecurity.from_settings(settings)
    assert (security.username, security.password) == ("svc-user", "s3cret")
    options = security.client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "ssl_context" not in options
    with pytest.raises(ValueError, match="HOOKLINE_KAFKA_SASL_PASSWORD_FILE, not both"):
        Settings(kafka_sasl_password="x", kafka_sasl_password_file=tmp_path / "pass")


def test_hostname_checking_is_on_unless_turned_off(secure_broker: SecureBroker) -> None:
    on = KafkaSecurity.from_settings(
        Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=secure_broker.files.ca)
    )
    off = KafkaSecurity.from_settings(
        Settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=secure_broker.files.ca,
            kafka_ssl_check_hostname=False,
        )
    )
    assert on.ssl_context is not None and on.ssl_context.check_hostname
    assert off.ssl_context is not None and not off.ssl_context.check_hostname


async def test_the_oauth_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    security = KafkaSecurity.from_settings(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_sasl_oauth_token_file=token,
        )
    )
    provider = security.client_options()["sasl_oauth_token_provider"]
    assert await provider.token() == "first"
    token.write_text("second, longer\n")
    assert await provider.token() == "second, longer"
    token.unlink()
    with pytest.raises(Exception, match="HOOKLINE_KAFKA_SASL_OAUTH_TOKEN_FILE"):
        await provider.token()


def test_a_secured_security_never_shows_its_password() -> None:
    security = KafkaSecurity(protocol="SASL_SSL", username="u", password="hunter2")
    assert "hunter2" not in repr(security)
    assert "hunter2" not in repr(dataclasses.replace(security, username="v"))
