"""Which span exporters the standard ``OTEL_*`` variables ask for; no SDK import here.

* ``OTEL_SDK_DISABLED=true``: none, whatever else is set.
* ``OTEL_TRACES_EXPORTER``: a comma-separated list of ``otlp``, ``console`` and
  ``none``. When it is unset, ``otlp`` exactly when an OTLP endpoint is set
  (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``); else none.
  (The specification's default is ``otlp``; hookline's is off, so a service that was not
  told where to send spans makes none.)
* OTLP goes over HTTP with protobuf bodies (``OTEL_EXPORTER_OTLP_PROTOCOL`` unset or
  ``http/protobuf``); the gRPC and JSON protocols are refused rather than ignored.

Everything else (endpoint, headers, timeout, compression, sampler, batch sizes,
resource attributes) the SDK reads itself from its standard variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.errors import ConfigurationError

EXPORTERS = ("otlp", "console")
PROTOCOL = "http/protobuf"


def exporters_wanted(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The exporters to install, in order; empty when tracing stays off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    raw = environ.get("OTEL_TRACES_EXPORTER", "")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not names:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if endpoint and endpoint.strip() else []
    unknown = sorted({n for n in names if n not in (*EXPORTERS, "none")})
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}; hookline exports with "
            f"{' or '.join(EXPORTERS)} (or none)"
        )
    wanted = tuple(dict.fromkeys(n for n in names if n != "none"))
    if "otlp" in wanted:
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or PROTOCOL
        ).strip()
        if protocol != PROTOCOL:
            raise ConfigurationError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: hookline exports "
                f"OTLP over HTTP ({PROTOCOL}); point it at the collector's HTTP port (4318)"
            )
    return wanted
