"""W3C Trace Context through every hop, exported with the OpenTelemetry SDK when asked.

Off unless configured: :func:`configure` installs an SDK tracer provider only when the
standard ``OTEL_*`` variables ask for an exporter (see :mod:`shared.tracing._env`), and
imports the SDK only then. Every hook in the services is written
``if tracing.enabled: …``, so with tracing off a request pays one attribute read and
builds no span, no attribute and no header.

Lifecycle: :func:`configure` (or :func:`install`, for tests) once at start, before the
service builds its components; :func:`shutdown` flushes what is queued and turns the
hooks off (the SDK also flushes at interpreter exit).

The propagation helpers (headers in and out, span attributes) are in
:mod:`shared.tracing.propagation`, which imports the OpenTelemetry API.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.tracing._env import exporters_wanted

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

# Read on every hot path: a plain module attribute, rebound (never mutated in place).
enabled: bool = False
tracer: Tracer | None = None
_provider: Any = None

INSTRUMENTATION = "hookline"


def configure(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK for ``service`` when ``OTEL_*`` asks for it; True when tracing is on.

    ``service`` becomes ``service.name`` as ``hookline-<service>`` unless
    ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` say otherwise. A setting hookline
    cannot honour (an unknown exporter, OTLP over gRPC) raises
    :class:`~shared.errors.ConfigurationError`: a trace that silently goes nowhere is
    worse than a service that does not start.
    """
    env = os.environ if environ is None else environ
    exporters = exporters_wanted(env)
    if not exporters:
        return False
    from shared.tracing._sdk import provider_for

    install(provider_for(service, exporters))
    return True


def install(provider: Any) -> None:
    """Trace through ``provider`` (an SDK ``TracerProvider``); tests give one of their own.

    The provider is not made OpenTelemetry's global one: that can be set once per
    process, and tests install and remove several.
    """
    global enabled, tracer, _provider
    _provider = provider
    tracer = provider.get_tracer(INSTRUMENTATION)
    enabled = True


def shutdown() -> None:
    """Hooks off first, then the provider flushes and stops its exporters."""
    global enabled, tracer, _provider
    provider, _provider = _provider, None
    enabled = False
    tracer = None
    if provider is not None:
        provider.shutdown()


def log_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the active span, for log lines; None when there is none."""
    from shared.tracing.propagation import current_ids

    return current_ids()
