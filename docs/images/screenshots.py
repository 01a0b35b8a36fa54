"""Makes the README's two pictures from a real run: the dashboard, and one trace.

What it does, on loopback, against the broker ``HOOKLINE_KAFKA_BOOTSTRAP_SERVERS`` names:
the four services as processes (``hookline ingress|admin|dispatcher|delivery``, the local
engine) exporting their spans over OTLP to :class:`testkit.otlp.Collector`; Prometheus
(the ``prometheus`` binary, Debian's package) scraping their ``/metrics`` every 5 s; a
few minutes of traffic: signed GitHub pushes and Standard Webhooks posts, some with a bad
signature or for an unknown webhook, delivered to three subscribers (one healthy, one
that fails a third of its requests, one down for the middle of the run).

Then ``dashboard.png``: every panel of ``deploy/grafana/dashboards/hookline.json``, its
PromQL run against that Prometheus (``query_range``, ``$__rate_interval`` as 30 s) and
drawn on the dashboard's grid with matplotlib; Grafana itself is not run (it is not
packaged for this machine). And ``trace.png``: a waterfall of one trace with a retry,
drawn from the spans the collector received.

Needs matplotlib, which is not a dependency of hookline:
``.venv/bin/pip install matplotlib; .venv/bin/python docs/images/screenshots.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.standard_webhooks import sign  # noqa: E402
from shared.topics import topic_registry  # noqa: E402
from testkit import FIXTURES, TEST_ADMIN_TOKEN, TEST_SECRET_KEY  # noqa: E402
from testkit.config import put_entities, subscription, webhook, workflow  # noqa: E402
from testkit.otlp import Collector, ReceivedSpan  # noqa: E402
from testkit.receivers import Receiver  # noqa: E402
from tests.e2e.stack import Stack, free_port  # noqa: E402

OUT = Path(__file__).resolve().parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "hookline.json"
MINUTES = float(os.environ.get("SCREENSHOT_MINUTES", "6"))
GITHUB_SECRET = "screenshot-github"
GENERIC_SECRET = "whsec_" + "c2NyZWVuc2hvdC1nZW5lcmljLXNlY3JldA=="
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _entities(bootstrap: str, topics: Any, receiver: Receiver) -> None:
    await put_entities(
        bootstrap,
        topics.config,
        workflow(
            "wf-ci",
            nodes=[
                {"id": "checkout", "kind": "log"},
                {"id": "build", "kind": "sleep", "config": {"seconds": 0.05}},
                {"id": "notify", "kind": "log"},
            ],
        ),
        webhook(
            "gh-main",
            provider="github",
            secrets=[GITHUB_SECRET],
            bindings=[{"workflow_id": "wf-ci", "events": ["push"]}],
        ),
        webhook(
            "billing",
            provider="generic",
            secrets=[GENERIC_SECRET],
            bindings=[{"workflow_id": "wf-ci", "events": ["invoice.paid"]}],
        ),
        subscription("sub-ok", url=receiver.url("/ok"), secrets=[RECEIVER_SECRET], events=["*"]),
        subscription(
            "sub-flaky",
            url=receiver.url("/flaky"),
            secrets=[RECEIVER_SECRET],
            events=["workflow.completed", "status.changed"],
        ),
        subscription(
            "sub-down",
            url=receiver.url("/down"),
            secrets=[RECEIVER_SECRET],
            events=["workflow.completed"],
        ),
    )


def _github(body: bytes, good: bool) -> dict[str, str]:
    secret = GITHUB_SECRET if good else "wrong"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": f"sha256={digest}",
    }


def _generic(body: bytes) -> dict[str, str]:
    msg = f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    return {
        "content-type": "application/json",
        "x-webhook-event": "invoice.paid",
        "webhook-id": msg,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(msg, now, body, GENERIC_SECRET),
    }


async def _traffic(base: str, receiver: Receiver, seconds: float) -> None:
    push = (FIXTURES / "github" / "push" / "payload.json").read_bytes()
    invoice = json.dumps({"type": "invoice.paid", "data": {"amount": 4200}}).encode()
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while (elapsed := time.monotonic() - started) < seconds:
            # The load rises and falls; the third subscriber is down in the middle third.
            down = seconds / 3 < elapsed < 2 * seconds / 3
            receiver.script("/down", [503] * 1000 if down else [])
            receiver.script("/flaky", [500] if random.random() < 0.35 else [])
            rate = 4 + 3 * abs(((elapsed / 60) % 2) - 1)
            roll = random.random()
            if roll < 0.70:
                await http.post(
                    "/webhooks/gh-main/github", content=push, headers=_github(push, True)
                )
            elif roll < 0.88:
                await http.post("/webhooks/billing", content=invoice, headers=_generic(invoice))
            elif roll < 0.96:
                await http.post(
                    "/webhooks/gh-main/github", content=push, headers=_github(push, False)
                )
            else:
                await http.post("/webhooks/nope/github", content=push, headers=_github(push, True))
            await asyncio.sleep(1 / rate)


def _prometheus(stack: Stack, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    targets = {
        "hookline-ingress": stack.replicas["ingress-0"].ports["ingress"],
        "hookline-admin": stack.replicas["admin-0"].ports["admin"],
        "hookline-dispatcher": stack.replicas["dispatcher-0"].ports["dispatcher"],
        "hookline-delivery": stack.replicas["delivery-0"].ports["delivery"],
    }
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
            for job, p in targets.items()
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))
    process = subprocess.Popen(
        [
            shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("wb"),
    )
    return process, f"http://127.0.0.1:{port}"


async def _query_range(prom: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(
            f"{prom}/api/v1/query_range",
            params={
                "query": expr.replace("$__rate_interval", "30s"),
                "start": start,
                "end": end,
                "step": 10,
            },
        )
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def _legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


async def render_dashboard(prom: str, start: float, end: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    doc = json.loads(DASHBOARD.read_text())
    panels = doc["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_px, col_px = 30, 70
    fig = plt.figure(figsize=(24 * col_px / 100, (rows * unit_px + 60) / 100), dpi=100)
    fig.patch.set_facecolor("#111217")
    fig.text(
        0.01,
        0.995,
        "hookline — the dashboard's queries over real traffic, rendered from Prometheus",
        color="#d8d9da",
        fontsize=14,
        va="top",
    )
    height = rows * unit_px + 60
    units = {
        "reqps": lambda v: f"{v:.1f}/s",
        "ops": lambda v: f"{v:.1f}/s",
        "s": lambda v: f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s",
        "percentunit": lambda v: f"{v * 100:.0f}%",
        "short": lambda v: f"{v:.0f}" if v >= 10 else f"{v:.2g}",
    }
    for panel in panels:
        g = panel["gridPos"]
        left, width = g["x"] / 24 + 0.004, g["w"] / 24 - 0.008
        top = (g["y"] * unit_px + 40) / height
        if panel["type"] == "row":
            fig.text(
                left,
                1 - top - 0.004,
                panel["title"],
                color="#d8d9da",
                fontsize=12,
                weight="bold",
                va="top",
            )
            continue
        bottom = 1 - (top + g["h"] * unit_px / height) + 0.012
        # Room on the left for the value axis' labels, inside the panel.
        pad = 0.028
        ax = fig.add_axes((left + pad, bottom, width - pad, g["h"] * unit_px / height - 0.035))
        ax.set_facecolor("#181b1f")
        for side in ax.spines.values():
            side.set_color("#2c3235")
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        fmt = units.get(panel["fieldConfig"]["defaults"].get("unit", "short"), units["short"])
        if panel["type"] == "stat":
            series = await _query_range(prom, panel["targets"][0]["expr"], start, end)
            values = [float(v) for _, v in series[0]["values"]] if series else []
            last = next((v for v in reversed(values) if v == v), float("nan"))
            ax.text(
                0.5,
                0.55,
                fmt(last),
                color="#73bf69",
                fontsize=34,
                ha="center",
                va="center",
                transform=ax.transAxes,
                weight="bold",
            )
            if values:
                ax.plot(range(len(values)), values, color="#73bf69", alpha=0.35)
                ax.set_ylim(0, 1.05)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        stacked = "stacking" in panel["fieldConfig"]["defaults"].get("custom", {})
        lines: list[tuple[str, list[float], list[float]]] = []
        for target in panel["targets"]:
            for series in await _query_range(prom, target["expr"], start, end):
                xs = [float(t) for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                lines.append((_legend(target.get("legendFormat", ""), series["metric"]), xs, ys))
        from datetime import datetime

        for label, xs, ys in sorted(lines):
            when = [datetime.fromtimestamp(x) for x in xs]
            ax.plot(when, ys, label=label, linewidth=1.4)
            if stacked:
                ax.fill_between(when, ys, alpha=0.12)
        if not lines:
            ax.text(0.5, 0.5, "no data", color="#9fa7b3", ha="center", transform=ax.transAxes)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, f=fmt: f(v)))
        ax.grid(color="#2c3235", linewidth=0.6)
        if lines:
            ax.legend(
                fontsize=7,
                loc="upper left",
                facecolor="#181b1f",
                edgecolor="#2c3235",
                labelcolor="#d8d9da",
                ncol=3 if len(lines) <= 9 else 9,
                framealpha=0.8,
            )
    fig.savefig(path, facecolor=fig.get_facecolor())
    plt.close(fig)


def _pick_trace(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """A trace with a retry that succeeded, whole (from the ingress span to every POST)."""
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    for trace in by_trace.values():
        roots = [s for s in trace if s.parent_span_id is None and s.kind == "server"]
        retried = [s for s in trace if s.links]
        if roots and retried and any(s.name.startswith("node ") for s in trace):
            return trace
    raise SystemExit("no trace with a retry was received")


def render_trace(trace: list[ReceivedSpan], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in trace:
        children.setdefault(span.parent_span_id, []).append(span)
    ordered: list[tuple[int, ReceivedSpan]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            ordered.append((depth, span))
            walk(span.span_id, depth + 1)

    walk(None, 0)
    t0 = min(s.start_ns for s in trace)
    t1 = max(s.end_ns for s in trace)
    colors = {
        "hookline-ingress": "#5794f2",
        "hookline-dispatcher": "#b877d9",
        "hookline-delivery": "#73bf69",
        "hookline-admin": "#ff9830",
    }
    fig, ax = plt.subplots(figsize=(16, 0.34 * len(ordered) + 1.6), dpi=100)
    fig.patch.set_facecolor("#111217")
    ax.set_facecolor("#181b1f")
    index = {s.span_id: n for n, (_, s) in enumerate(ordered)}
    names = blended_transform_factory(fig.transFigure, ax.transData)
    for n, (depth, span) in enumerate(ordered):
        start = (span.start_ns - t0) / 1e6
        length = max((span.end_ns - span.start_ns) / 1e6, (t1 - t0) / 1e6 / 400)
        color = "#f2495c" if span.error else colors.get(span.service, "#9fa7b3")
        ax.barh(n, length, left=start, color=color, height=0.6)
        status = span.attributes.get("http.response.status_code")
        extra = f"  {status}" if status else ""
        attempt = span.attributes.get("hookline.delivery.attempt")
        if attempt:
            extra += f"  attempt {attempt}"
        node = span.attributes.get("hookline.event.type") if span.name.startswith("process") else ""
        label = f"{span.service.removeprefix('hookline-')}: {span.name}"
        label += f"  [{node}]" if node else ""
        ax.text(
            0.008 + 0.012 * depth,
            n,
            label + extra,
            color="#d8d9da",
            fontsize=8,
            ha="left",
            va="center",
            family="monospace",
            transform=names,
        )
        ax.text(
            start + length,
            n,
            f" {(span.end_ns - span.start_ns) / 1e6:.1f} ms",
            color="#9fa7b3",
            fontsize=7,
            va="center",
        )
        for _, linked in span.links:
            if linked in index:
                ax.annotate(
                    "",
                    xy=(start, n),
                    xytext=(start, index[linked]),
                    arrowprops={"arrowstyle": "->", "color": "#fade2a", "lw": 1.2},
                )
    ax.set_ylim(len(ordered) - 0.4, -0.6)
    ax.set_yticks([])
    ax.set_xlim(0, (t1 - t0) / 1e6 * 1.08)
    ax.set_xlabel("milliseconds since the provider's POST reached the ingress", color="#9fa7b3")
    ax.tick_params(colors="#9fa7b3", labelsize=8)
    ax.grid(axis="x", color="#2c3235", linewidth=0.6)
    for side in ax.spines.values():
        side.set_color("#2c3235")
    fig.text(
        0.008,
        0.985,
        f"trace {trace[0].trace_id}: {len(trace)} spans as the OTLP receiver got them\n"
        "red: a failed request; yellow arrow: a retry's link to the attempt before it",
        color="#d8d9da",
        fontsize=10,
        va="top",
    )
    fig.subplots_adjust(left=0.42, right=0.98, top=0.93, bottom=0.08)
    fig.savefig(path, facecolor=fig.get_facecolor())
    plt.close(fig)


async def main() -> None:
    bootstrap = os.environ["HOOKLINE_KAFKA_BOOTSTRAP_SERVERS"]
    folder = Path(tempfile.mkdtemp(prefix="hookline-screens-"))
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"screens{uuid.uuid4().hex[:6]}.",
        secret_key=TEST_SECRET_KEY,
        admin_token=[TEST_ADMIN_TOKEN],
        retry_schedule=(2, 4, 8),
        retry_jitter=0.1,
        breaker_cooldown=10,
    )
    topics = topic_registry(settings.topic_prefix, partitions=6, retry_tiers=3)
    await ensure_topics(bootstrap, topics)
    async with Collector() as collector, Receiver() as receiver:
        await _entities(bootstrap, topics, receiver)
        stack = Stack(
            settings,
            folder,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="500",
        )
        for service in ("ingress", "admin", "dispatcher", "delivery"):
            stack.add(service)
        await stack.start()
        prometheus, prom = _prometheus(stack, folder)
        try:
            start = time.time()
            await _traffic(stack.url(), receiver, MINUTES * 60)
            await asyncio.sleep(20)  # the last retries, and two more scrapes
            end = time.time()
            await render_dashboard(prom, start, end, OUT / "dashboard.png")
        finally:
            prometheus.terminate()
            await stack.stop()
        trace = _pick_trace(collector.spans)
    # The spans behind the picture, kept beside it.
    (OUT / "trace.json").write_text(
        json.dumps([asdict(s) for s in sorted(trace, key=lambda s: s.start_ns)], indent=1) + "\n"
    )
    render_trace(trace, OUT / "trace.png")
    print(f"wrote {OUT / 'dashboard.png'} and {OUT / 'trace.png'} ({len(collector.spans)} spans)")


if __name__ == "__main__":
    if sys.argv[1:] == ["trace"]:  # draw trace.png again from trace.json
        spans = [ReceivedSpan(**s) for s in json.loads((OUT / "trace.json").read_text())]
        render_trace(spans, OUT / "trace.png")
    else:
        asyncio.run(main())
