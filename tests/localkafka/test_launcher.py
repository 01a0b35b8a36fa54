"""The single broker's folder and the secured broker's status.

A broker started with ``--data-dir`` keeps its state (pid, log, properties) in that
folder, not under ``.cache/kafka/<port>``, and ``status``/``stop`` by port alone find it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from localkafka import LocalKafka
from shared.errors import ConfigurationError
from testkit import free_port_pair
from testkit.secure import SecureBroker


@pytest.mark.kafka
@pytest.mark.slow
def test_a_data_dir_holds_the_state_and_status_by_port_finds_it(tmp_path: Path) -> None:
    cache, folder, port = tmp_path / "cache", tmp_path / "broker", free_port_pair()
    kafka = LocalKafka(port=port, data_dir=folder, cache=cache)
    try:
        kafka.start()
        assert (folder / "broker.pid").exists() and (folder / "server.properties").exists()
        assert (folder / "data" / "meta.properties").exists()
        assert [p.name for p in (cache / str(port)).iterdir()] == ["location"]

        by_port = LocalKafka(port=port, cache=cache)
        status = by_port.status()
        assert status.running and status.data_dir == folder / "data"
        assert not status.secure
        assert by_port.stop() is True
        assert not kafka.status().running
    finally:
        kafka.stop()


def test_the_secured_broker_refuses_a_plaintext_brokers_data(tmp_path: Path) -> None:
    (tmp_path / "broker" / "data").mkdir(parents=True)
    (tmp_path / "broker" / "data" / "meta.properties").write_text("formatted by a plain one\n")
    kafka = LocalKafka(
        port=free_port_pair(), data_dir=tmp_path / "broker", cache=tmp_path, secure=True
    )
    with pytest.raises(ConfigurationError, match="plaintext broker's data; give --secure its own"):
        kafka.start()


@pytest.mark.kafka
def test_status_says_the_broker_is_secured_and_where_its_ca_is(
    secure_broker: SecureBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    port = secure_broker.kafka.port
    status = LocalKafka(port=port).status()
    assert status.running and status.secure
    assert status.ca_file == secure_broker.files.ca and status.ca_file.exists()
    assert main(["kafka", "status", "--port", str(port)]) == 0
    out = capsys.readouterr().out
    assert f"secured: SASL_SSL with SCRAM-SHA-512, ACLs enforced; CA {status.ca_file}" in out
    assert f"data in {secure_broker.folder / 'data'}" in out
    for user in ("ingress", "dispatcher", "delivery", "admin", "topics"):
        env = secure_broker.files.env_file(user).read_text()
        assert f"HOOKLINE_KAFKA_SASL_USERNAME={user}\n" in env
        assert "HOOKLINE_KAFKA_SASL_PASSWORD=" not in env, "passwords stay in their files"
