"""Tracing off against tracing on (100% sampling), for the ingress and for delivery.

The ``ingress`` and ``delivery`` benchmarks measure the services as they run by default,
tracing off; this one measures the same work side by side with tracing on: every
request sampled, every span exported over OTLP/HTTP to a loopback sink that answers and
keeps nothing (``python -m testkit.otlp``, a process of its own, so its work is not
counted as the service's).

* Ingress: two servers of the real app, one with tracing off, one with
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` set and ``OTEL_TRACES_SAMPLER=always_on``, measured
  in interleaved rounds exactly as ``bench.ingress`` measures one (its closed loop, its
  open loop at 70% of the peak, server CPU per request).
* Delivery: one running service (``bench.delivery``'s four fast subscriptions), tracing
  installed with the same exporter, switched off and on between rounds that alternate
  (CPU per delivery from the process's CPU time: the exporter's thread included).

The ratio is on ÷ off of the rates, the median of the per-round ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

from bench import delivery as delivery_bench
from bench._delivery_service import _Bench, _tuned
from bench._ingress_rounds import (
    ROOT,
    SECRET_KEY,
    Side,
    _prepare,
    _round,
    _run_load,
    _start,
    _summary,
)
from bench._processes import _broker_pid, _free_port, _stop

ROUNDS = int(os.environ.get("HOOKLINE_BENCH_ROUNDS", "3"))
DELIVERY_ROUNDS = 5


@contextlib.asynccontextmanager
async def _sink() -> AsyncIterator[str]:
    """The discarding OTLP receiver, in its own process; yields its endpoint."""
    port = _free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-m", "testkit.otlp", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        await asyncio.to_thread(process.stdout.readline)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        with contextlib.suppress(Exception):
            process.wait(timeout=5)


def _traced_env(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "always_on",
    }


async def ingress(bootstrap: str, endpoint: str) -> dict[str, Any]:
    """The ingress with tracing off and on, interleaved rounds (``bench.ingress``'s)."""
    prefix = f"bench-tracing-{uuid.uuid4().hex[:8]}."
    await _prepare(bootstrap, prefix)
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_TOPIC_PARTITIONS": "6",
        "HOOKLINE_SECRET_KEY": SECRET_KEY,
    }
    envs = {"off": base, "on": {**base, **_traced_env(endpoint)}}
    broker = _broker_pid(bootstrap)
    servers: dict[str, tuple[int, asyncio.subprocess.Process]] = {}
    rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for kind, env in envs.items():
            servers[kind] = await _start(Side(f"tracing_{kind}"), env)
        for kind in envs:
            await _run_load(servers[kind][0], None, None)
        for n in range(ROUNDS):
            for kind in ("off", "on") if n % 2 == 0 else ("on", "off"):
                port, server = servers[kind]
                rounds[kind].append(await _round(port, server.pid, broker, None))
    finally:
        for _, server in servers.values():
            await _stop(server)
    ratios = [
        on["requests_per_s"] / off["requests_per_s"]
        for on, off in zip(rounds["on"], rounds["off"], strict=True)
        if off["requests_per_s"]
    ]
    return {
        "off": _summary(rounds["off"]),
        "on": _summary(rounds["on"]),
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
    }


async def delivery(bootstrap: str, endpoint: str) -> dict[str, Any]:
    """One delivery service, tracing switched off and on between alternating rounds."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from shared import tracing
    from shared.tracing._sdk import resource_for

    port = _free_port()
    receiver = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-c", delivery_bench.RECEIVER, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    provider = TracerProvider(sampler=ALWAYS_ON, resource=resource_for("delivery"))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    figures: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    try:
        assert receiver.stdout is not None
        await asyncio.to_thread(receiver.stdout.readline)
        base_url = f"http://127.0.0.1:{port}"
        tracing.install(provider)
        tracing.enabled = False  # installed once; each round switches the hooks
        bench = _Bench(bootstrap, base_url, "aiohttp")
        async with bench, _tuned():
            await bench.round()  # warm-up
            for n in range(DELIVERY_ROUNDS):
                for kind in ("off", "on") if n % 2 == 0 else ("on", "off"):
                    tracing.enabled = kind == "on"
                    figures[kind].append(await bench.round())
                    tracing.enabled = False
                    provider.force_flush()
    finally:
        tracing.shutdown()
        receiver.kill()
        with contextlib.suppress(Exception):
            receiver.wait(timeout=5)
    med = statistics.median
    ratios = [
        on[0] / off[0] for on, off in zip(figures["on"], figures["off"], strict=True) if off[0]
    ]
    return {
        side: {
            "deliveries_per_s": round(med(r for r, _ in rounds), 1),
            "cpu_us_per_delivery": round(med(c for _, c in rounds), 1),
            "rounds_per_s": [round(r) for r, _ in rounds],
        }
        for side, rounds in figures.items()
    } | {"ratio": round(med(ratios), 3) if ratios else None}


async def run(bootstrap: str) -> dict[str, Any]:
    async with _sink() as endpoint:
        ingress_figures = await ingress(bootstrap, endpoint)
        delivery_figures = await delivery(bootstrap, endpoint)
    i_off, i_on = ingress_figures["off"], ingress_figures["on"]
    d_off, d_on = delivery_figures["off"], delivery_figures["on"]
    return {
        "name": "tracing (on, 100% sampled)",
        "figures": {
            "ingress_requests_per_s": i_on["requests_per_s"],
            "ingress_server_cpu_us_per_request": i_on["server_cpu_us_per_request"],
            "ingress_p99_ms_at_70pct": i_on["p99_ms_at_70pct"],
            "ingress_ratio_on_to_off": ingress_figures["ratio"],
            "delivery_deliveries_per_s": d_on["deliveries_per_s"],
            "delivery_cpu_us_per_delivery": d_on["cpu_us_per_delivery"],
            "delivery_ratio_on_to_off": delivery_figures["ratio"],
            "ingress_rounds_per_s": i_on["rounds_requests_per_s"],
            "delivery_rounds_per_s": d_on["rounds_per_s"],
        },
        "baseline": {
            "ingress_requests_per_s": i_off["requests_per_s"],
            "ingress_server_cpu_us_per_request": i_off["server_cpu_us_per_request"],
            "ingress_p99_ms_at_70pct": i_off["p99_ms_at_70pct"],
            "delivery_deliveries_per_s": d_off["deliveries_per_s"],
            "delivery_cpu_us_per_delivery": d_off["cpu_us_per_delivery"],
            "ingress_rounds_per_s": i_off["rounds_requests_per_s"],
            "delivery_rounds_per_s": d_off["rounds_per_s"],
        },
        "ratio": ingress_figures["ratio"],
        "aim": "report: tracing on (baseline column: off, same run); the ratio is the ingress'",
    }


if __name__ == "__main__":
    import orjson

    result = asyncio.run(run(os.environ.get("HOOKLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
