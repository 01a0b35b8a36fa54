"""The SDK tracer provider: imported only when tracing is configured.

The sampler (``OTEL_TRACES_SAMPLER``, default parent-based always-on), the batch
processor (``OTEL_BSP_*``) and the OTLP exporter (``OTEL_EXPORTER_OTLP_*``) read their
standard variables themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter


def _version() -> str:
    try:
        return version("hookline")
    except PackageNotFoundError:
        return "0"


def resource_for(service: str) -> Resource:
    """``hookline-<service>`` in the ``hookline`` namespace, unless the environment names
    them (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` win)."""
    ours = {
        "service.name": f"hookline-{service}",
        "service.namespace": "hookline",
        "service.version": _version(),
    }
    from_env = OTELResourceDetector().detect().attributes
    return Resource.create({**ours, **from_env})


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def provider_for(service: str, exporters: Sequence[str]) -> TracerProvider:
    provider = TracerProvider(resource=resource_for(service))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider
