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
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Before the project's imports, here and in the modules beside this one.
sys.path.insert(0, str(ROOT))

from dashboard import render_dashboard  # noqa: E402
from prometheus import start_prometheus  # noqa: E402
from traffic import entities, traffic  # noqa: E402
from waterfall import pick_trace, render_trace  # noqa: E402

from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topics import topic_registry  # noqa: E402
from testkit import TEST_ADMIN_TOKEN, TEST_SECRET_KEY  # noqa: E402
from testkit.otlp import Collector, ReceivedSpan  # noqa: E402
from testkit.receivers import Receiver  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402

OUT = Path(__file__).resolve().parent
MINUTES = float(os.environ.get("SCREENSHOT_MINUTES", "6"))


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
        await entities(bootstrap, topics, receiver)
        stack = Stack(
            settings,
            folder,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="500",
        )
        for service in ("ingress", "admin", "dispatcher", "delivery"):
            stack.add(service)
        await stack.start()
        prometheus, prom = start_prometheus(stack, folder)
        try:
            start = time.time()
            await traffic(stack.url(), receiver, MINUTES * 60)
            await asyncio.sleep(20)  # the last retries, and two more scrapes
            end = time.time()
            await render_dashboard(prom, start, end, OUT / "dashboard.png")
        finally:
            prometheus.terminate()
            await stack.stop()
        trace = pick_trace(collector.spans)
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
