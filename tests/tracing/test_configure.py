"""Off unless configured: which OTEL_* settings turn tracing on, and what they install."""

from __future__ import annotations

import pytest

from shared import tracing
from shared.errors import ConfigurationError
from shared.tracing._env import exporters_wanted


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ("console", "otlp")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ()),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ("otlp",)),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp"},
            ("otlp",),
        ),
    ],
)
def test_exporters_follow_the_standard_variables_and_default_to_none(environ, wanted):
    assert exporters_wanted(environ) == wanted


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
    ],
)
def test_a_setting_that_cannot_be_honoured_stops_the_service(environ):
    with pytest.raises(ConfigurationError):
        exporters_wanted(environ)


def test_unconfigured_tracing_installs_nothing():
    assert tracing.configure("ingress", {}) is False
    assert tracing.enabled is False
    assert tracing.tracer is None


def test_configured_tracing_names_the_service_and_turns_the_hooks_on():
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    try:
        assert tracing.configure("delivery", environ) is True
        assert tracing.enabled is True
        resource = tracing._provider.resource.attributes
        assert resource["service.name"] == "hookline-delivery"
        assert resource["service.namespace"] == "hookline"
    finally:
        tracing.shutdown()
    assert tracing.enabled is False


def test_the_environment_names_the_service_over_the_default(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "webhooks-in")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    try:
        tracing.configure("ingress", {"OTEL_TRACES_EXPORTER": "console"})
        resource = tracing._provider.resource.attributes
        assert resource["service.name"] == "webhooks-in"
        assert resource["deployment.environment.name"] == "staging"
    finally:
        tracing.shutdown()
