"""Delivery throughput: the service beside a bare client loop, transports, and a hung receiver.

One run, against one fast receiver in its own process on loopback (concurrency 64):
- the transports: a bare loop of POSTs through httpx's own transport and through
  ``httpx-aiohttp``, for a fixed time each; the faster is what the service runs with;
- then interleaved rounds, each: the bare loop (the faster transport, for a fixed
  time) and the service delivering a batch of events to four fast subscriptions; the
  figures are medians over the rounds, the ratio the median of the per-round ratios
  (service ÷ bare loop of that round), so the load others put on the machine touches
  both sides of each ratio alike;
- then a fifth subscription whose receiver never answers: one round as it starts
  hanging (compared with the rounds just before and just after), and, once its
  breaker is open, windows of 1.5 s under one backlog that alternate it off and on:
  the rate kept is the mean "on" window over the mean "off" window. (Rounds measured
  tens of seconds apart carried the machine's drift, up to a third over a run here,
  into that ratio; alternating windows put it on both sides alike.)

Then the hung-receiver comparison again at a steady offered load (half the measured
capacity, events published at a fixed rate): at saturation the hung subscription's
hand-offs take CPU from the others' deliveries on this 2-core machine, while at a
steady load below capacity isolation shows as the others keeping the offered rate.

The bare loop sends what the service sends: the same body size and the same header
set (a webhook-id, timestamp and signature, computed once), through the same guarded
client; the service's own work (Kafka in and out, signing, the attempt records,
settlement) is what the ratio prices. A service round is timed from the moment its
batch is published to its last success, on a service that is already running and
joined; process CPU time over each window is reported as well (less noisy than rates
on a shared machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench._delivery_service import (
    CONCURRENCY,
    FAST_SUBSCRIPTIONS,
    SECRET,
    _Bench,
    _tuned,
)
from services.delivery import (
    DestinationGuard,
    Sender,
    render_body,
    signature_headers,
)
from services.delivery._transport import TransportKind
from testkit.receivers import completed

ROUNDS = 7
BARE_SECONDS = 3.0
HTTPX_SECONDS = 2.0
WINDOWS = 12  # alternating off and on, under one backlog
WINDOW_SECONDS = 1.5
STEADY_SHARE = 0.5  # the steady rounds offer this share of the measured capacity
STEADY_SECONDS = 8.0
STEADY_ROUNDS = 2

# A minimal HTTP/1.1 keep-alive server: 200 "ok" to every POST, none ever to /hung.
RECEIVER = r"""
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0: return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length": length = int(v)
            if len(self.buf) < end + 4 + length: return
            self.buf = self.buf[end + 4 + length:]
            if " /hung" not in head.split("\r\n", 1)[0]:
                self.t.write(OK)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _bare_loop(kind: TransportKind, url: str, seconds: float) -> tuple[float, float]:
    """(requests/s, CPU µs per request) of POSTs shaped like deliveries, same client and cap."""
    body = render_body(completed("run-bench")).encode()
    headers = {"content-type": "application/json"}
    headers.update(signature_headers("msg_" + "0" * 32, body, [SECRET], datetime.now(UTC)))
    guard = DestinationGuard(allow_private=True, allow_insecure=True)
    done = 0
    stop_at = 0.0

    async with Sender(guard, max_connections=CONCURRENCY, transport=kind) as sender:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                outcome = await sender.send(url, headers, body)
                assert outcome.succeeded, outcome
                done += 1

        stop_at = time.perf_counter() + min(0.5, seconds)  # warm the pool
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        done = 0
        cpu, started = time.process_time(), time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        return done / elapsed, (time.process_time() - cpu) / done * 1e6


async def run(bootstrap: str) -> dict[str, Any]:
    port = _free_port()
    receiver = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    bare: list[float] = []
    alone: list[float] = []
    cpu: dict[str, list[float]] = {"bare": [], "alone": []}
    lag_after_hung: list[int] = []
    steady_alone: list[float] = []
    steady_hung: list[float] = []
    med = statistics.median
    try:
        assert receiver.stdout is not None
        await asyncio.to_thread(receiver.stdout.readline)
        base_url = f"http://127.0.0.1:{port}"
        transports = {
            "httpx": (await _bare_loop("httpx", f"{base_url}/bare", HTTPX_SECONDS))[0],
            "aiohttp": (await _bare_loop("aiohttp", f"{base_url}/bare", BARE_SECONDS))[0],
        }
        best: TransportKind = max(transports, key=lambda k: transports[k])  # type: ignore[arg-type]
        # Tuned as the entry point tunes production (after the service started); the bare
        # loop runs in the same interpreter, so both sides of each ratio see it.
        async with _Bench(bootstrap, base_url, best) as bench, _tuned():
            for _ in range(ROUNDS):
                rate, per = await _bare_loop(best, f"{base_url}/bare", BARE_SECONDS)
                bare.append(rate)
                cpu["bare"].append(per)
                rate, per = await bench.round()
                alone.append(rate)
                cpu["alone"].append(per)
            # The receiver starts hanging: one round, compared with the rounds either side.
            await bench.set_hung(enabled=True)
            starting, _ = await bench.round()
            # Offsets must keep advancing while the receiver still hangs.
            await asyncio.sleep(bench.service.settings.request_timeout / 2)
            lag_after_hung.append(await bench.committed_lag())
            # Hanging for a while (its breaker open): alternating windows, one backlog.
            windows = await bench.alternating(med(alone), WINDOWS, WINDOW_SECONDS)
            await bench.set_hung(enabled=False)
            # Let the hung subscription's hand-offs come due and settle first.
            await bench.quiet(bench.service.settings.retry_schedule[0] * 1.25)
            closing, _ = await bench.round()
            # The same comparison at a steady offered load: half the measured capacity.
            offered = med(alone) / FAST_SUBSCRIPTIONS * STEADY_SHARE
            for _ in range(STEADY_ROUNDS):
                steady_alone.append(await bench.steady(offered, STEADY_SECONDS))
                await bench.set_hung(enabled=True)
                steady_hung.append(await bench.steady(offered, STEADY_SECONDS))
                await bench.set_hung(enabled=False)
                await bench.quiet(bench.service.settings.retry_schedule[0] * 1.25)
            intake = bench.service.loops[0]
            max_unsettled = intake.max_unsettled_seen
            bound = bench.settings.max_unsettled_per_partition
    finally:
        receiver.kill()
        with contextlib.suppress(Exception):
            receiver.wait(timeout=5)
    ratios = [a / b for a, b in zip(alone, bare, strict=True)]
    on = [rate for rate, _ in windows[True]]
    off = [rate for rate, _ in windows[False]]
    kept = statistics.fmean(on) / statistics.fmean(off)
    kept_as_it_starts = starting / ((alone[-1] + closing) / 2)
    cpu["hung"] = [per for _, per in windows[True]]
    cpu["alone_in_windows"] = [per for _, per in windows[False]]
    steady_kept = [h / a for h, a in zip(steady_hung, steady_alone, strict=True)]
    return {
        "name": "delivery",
        "figures": {
            "deliveries_per_s": round(med(alone), 1),
            "transport": best,
            "bare_httpx_per_s": round(transports["httpx"], 1),
            "bare_aiohttp_per_s": round(transports["aiohttp"], 1),
            "bare_loop_per_s": round(med(bare), 1),
            "service_to_bare_ratio_median": round(med(ratios), 3),
            "hung_windows_off_per_s": round(statistics.fmean(off), 1),
            "hung_windows_on_per_s": round(statistics.fmean(on), 1),
            "hung_rate_kept": round(kept, 3),
            # The round where the receiver starts hanging (before its breaker opens):
            # the cost of finding it stalled, against the rounds either side of it.
            "hung_rate_kept_as_it_starts_hanging": round(kept_as_it_starts, 3),
            "hung_windows": {
                "off": [round(x) for x in off],
                "on": [round(x) for x in on],
            },
            "service_to_bare_ratio_rounds": [round(r, 3) for r in ratios],
            "steady_offered_deliveries_per_s": round(med(alone) * STEADY_SHARE, 1),
            "steady_alone_per_s": round(med(steady_alone), 1),
            "steady_beside_hung_per_s": round(med(steady_hung), 1),
            "steady_rate_kept_median": round(med(steady_kept), 3),
            "uncommitted_after_hung_round_max": max(lag_after_hung),
            "max_unsettled_per_partition_seen": max_unsettled,
            "unsettled_bound": bound,
            "cpu_us_per_bare_request": round(med(cpu["bare"]), 1),
            "cpu_us_per_delivery": round(med(cpu["alone"]), 1),
            "cpu_us_per_delivery_in_windows_off": round(med(cpu["alone_in_windows"]), 1),
            "cpu_us_per_delivery_in_windows_on": round(med(cpu["hung"]), 1),
            "rounds": ROUNDS,
            "concurrency": CONCURRENCY,
            "rounds_detail": {
                "bare": [round(x) for x in bare],
                "alone": [round(x) for x in alone],
            },
        },
        "baseline": {"deliveries_per_s": round(med(bare), 1)},
        "ratio": round(med(ratios), 3),
        "aim": ">= 0.7 of the bare loop, >= 2,000 deliveries/s; >= 0.95 kept beside a hung receiver",
    }


if __name__ == "__main__":
    import os

    import orjson

    result = asyncio.run(run(os.environ.get("HOOKLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:39092")))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
