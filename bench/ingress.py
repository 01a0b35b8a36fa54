"""Ingress throughput and latency: GitHub-signed posts answered 202 after acks=all.

Side by side in one run, on the same server (uvicorn, httptools, uvloop, one
process) and the same load generator (another process): the real ingress app
against the real broker, and a bare Starlette handler that answers 202 without
doing anything. Each side gets a closed loop at fixed concurrency (its peak
rate), then an open loop at 70% of that peak (latency measured from each
request's scheduled send time, so a stall is not hidden by the generator
waiting).

The ingress runs as ``hookline ingress`` does (``services.ingress.main.run``: the
public port's protocol with its deadlines and connection bound, the internal port for
readiness), and a second one serves HTTPS (``HOOKLINE_TLS_CERTFILE``, a certificate
made for the run) to the same load generator speaking TLS (keep-alive connections: the
handshakes are done before the clock starts, so the figures are TLS's per-request cost).
Its figures are the ``https_`` ones, beside the plaintext ones.

The machine is shared and noisy, so the sides are measured in interleaved rounds (the
servers stay up; the order rotates each round) and the figures are medians over the
rounds; the ratio is the median of the per-round ratios, each from two measurements
taken seconds apart.

``python -m bench ingress`` runs it; the two subcommands below are its helper
processes (``serve`` and ``load``, in ``bench/_ingress_server.py`` and ``bench/_load.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._ingress_rounds import (
    SECRET_KEY,
    Side,
    _prepare,
    _round,
    _run_load,
    _start,
    _summary,
)
from bench._ingress_server import KINDS, _certificate, serve
from bench._load import CONCURRENCY, DURATION, load
from bench._processes import _broker_pid, _stop

ROUNDS = int(os.environ.get("HOOKLINE_BENCH_ROUNDS", "3"))
# The figures of the HTTPS side reported beside the plaintext ones (as https_<name>).
HTTPS_FIGURES = (
    "requests_per_s",
    "server_cpu_us_per_request",
    "p50_ms_closed_loop",
    "p99_ms_closed_loop",
    "p50_ms_at_70pct",
    "p99_ms_at_70pct",
    "answered_202",
    "answered_other",
)


async def _records_on(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from shared.kafka import topic_partitions

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
        ends = await consumer.end_offsets(tps)
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


# Always measured: the bare handler, the ingress, and the ingress with two workers.
SIDES = (
    Side("bare", kind="bare"),
    Side("hookline"),
    Side("hookline_https", tls=True),
    Side("hookline_2_workers", env={"HOOKLINE_INGRESS_WORKERS": "2"}),
)
# Measured when named in HOOKLINE_BENCH_INGRESS_LEVERS (comma-separated): the levers
# tried beside the ingress as it ships, in the same interleaved rounds.
LEVERS = {
    "granian": (
        Side("bare_granian", kind="bare", server="granian"),
        Side("hookline_granian", server="granian"),
    ),
}


def _sides() -> list[Side]:
    wanted = [w.strip() for w in os.environ.get("HOOKLINE_BENCH_INGRESS_LEVERS", "").split(",")]
    return [*SIDES, *(side for w in wanted if w for side in LEVERS[w])]


async def run(bootstrap: str) -> dict[str, Any]:
    prefix = f"bench-ingress-{uuid.uuid4().hex[:8]}."
    await _prepare(bootstrap, prefix)
    env = {
        **os.environ,
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_TOPIC_PARTITIONS": "6",
        "HOOKLINE_SECRET_KEY": SECRET_KEY,
    }
    sides = _sides()
    servers: dict[str, tuple[int, asyncio.subprocess.Process]] = {}
    broker = _broker_pid(bootstrap)
    rounds: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    folder = Path(tempfile.mkdtemp(prefix="hookline-bench-tls-"))
    tls = _certificate(folder)
    cafile = {side.name: tls[0] for side in sides if side.tls}
    try:
        for side in sides:
            servers[side.name] = await _start(side, env, tls)
        for side in sides:  # warm-up: connections, batches, caches
            await _run_load(servers[side.name][0], None, cafile.get(side.name))
        for n in range(ROUNDS):
            # The order turns each round, so no side always follows the same one.
            shift = n % len(sides)
            for side in sides[shift:] + sides[:shift]:
                port, server = servers[side.name]
                rounds[side.name].append(
                    await _round(port, server.pid, broker, cafile.get(side.name))
                )
    finally:
        for _, server in servers.values():
            await _stop(server)
        shutil.rmtree(folder, ignore_errors=True)
    ours, bare = _summary(rounds["hookline"]), _summary(rounds["bare"])
    https = _summary(rounds["hookline_https"])
    ours.update({f"https_{key}": https[key] for key in HTTPS_FIGURES})
    ours["https_rounds_requests_per_s"] = https["rounds_requests_per_s"]
    ours["https_to_plaintext_requests_ratio"] = round(
        statistics.median(
            h["requests_per_s"] / p["requests_per_s"]
            for h, p in zip(rounds["hookline_https"], rounds["hookline"], strict=True)
            if p["requests_per_s"]
        ),
        3,
    )
    ours["events_on_inbound"] = await _records_on(bootstrap, prefix + "inbound")
    ours["rounds_server_cpu_us"] = [
        round(r["server_cpu_us_per_request"]) for r in rounds["hookline"]
    ]
    bare["rounds_server_cpu_us"] = [round(r["server_cpu_us_per_request"]) for r in rounds["bare"]]
    cpu_ratios = _per_round(rounds["hookline"], rounds["bare"], "server_cpu_us_per_request")
    ours["cpu_ratio_to_bare"] = round(statistics.median(cpu_ratios), 3)
    ours["rounds_cpu_ratio"] = [round(r, 2) for r in cpu_ratios]
    for side in sides[3:]:
        figures = _summary(rounds[side.name])
        ours[f"{side.name}_requests_per_s"] = figures["requests_per_s"]
        ours[f"{side.name}_cpu_us_per_request"] = figures["server_cpu_us_per_request"]
        ours[f"{side.name}_p99_ms_at_70pct"] = figures["p99_ms_at_70pct"]
        ours[f"rounds_{side.name}_requests_per_s"] = figures["rounds_requests_per_s"]
    ratios = _per_round(rounds["hookline"], rounds["bare"], "requests_per_s")
    ours["rounds_ratio"] = [round(r, 3) for r in ratios]
    return {
        "name": "ingress",
        "figures": ours,
        "baseline": bare,
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
        "aim": "ingress CPU per request <= 2x the bare handler's (cpu_ratio_to_bare); "
        "p99 < 25 ms at 70% of peak (plaintext and HTTPS)",
    }


def _per_round(ours: list[dict[str, Any]], bare: list[dict[str, Any]], key: str) -> list[float]:
    return [o[key] / b[key] for o, b in zip(ours, bare, strict=True) if b[key]]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingress")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--kind", choices=KINDS, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    ld = sub.add_parser("load")
    ld.add_argument("--port", type=int, required=True)
    ld.add_argument("--concurrency", type=int, default=CONCURRENCY)
    ld.add_argument("--duration", type=float, default=DURATION)
    ld.add_argument("--rate", type=float, default=None)
    ld.add_argument("--cafile", type=Path, default=None, help="speak TLS, trusting this CA")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.kind, args.port, args.server)
    else:
        load(args.port, args.concurrency, args.duration, args.rate, args.cafile)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
