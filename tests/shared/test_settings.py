"""Settings from HOOKLINE_* variables, comma-separated lists included."""

from __future__ import annotations

import os

import pytest

from shared.settings import STANDARD_RETRY_SCHEDULE, Settings


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch):
    for name in [n for n in os.environ if n.startswith("HOOKLINE_")]:
        monkeypatch.delenv(name)
    s = Settings()
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert s.topic_prefix == "hookline."
    assert (s.ingress_port, s.admin_port) == (8080, 8081)
    assert s.retry_schedule == STANDARD_RETRY_SCHEDULE
    assert s.engine == "kafka"


def test_environment_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOOKLINE_ADMIN_TOKEN", "old-token, new-token")
    monkeypatch.setenv("HOOKLINE_RETRY_SCHEDULE", "1,2.5,10")
    monkeypatch.setenv("HOOKLINE_TRUSTED_PROXIES", "10.0.0.0/8,::1")
    monkeypatch.setenv("HOOKLINE_ENGINE", "local")
    s = Settings()
    assert [t.get_secret_value() for t in s.admin_token] == ["old-token", "new-token"]
    assert s.retry_schedule == (1.0, 2.5, 10.0)
    assert s.trusted_proxies == ["10.0.0.0/8", "::1"]
    assert s.engine == "local"


def test_secret_settings_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOOKLINE_SECRET_KEY", "a-very-secret-key-material")
    monkeypatch.setenv("HOOKLINE_ADMIN_TOKEN", "tok-123456")
    text = repr(Settings())
    assert "a-very-secret-key-material" not in text and "tok-123456" not in text
