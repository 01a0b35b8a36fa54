"""The fault suite: the whole stack under steady load while brokers and processes fail.

One ingress, two dispatchers and two delivery services run as processes. Signed
GitHub webhooks are posted at a steady rate (a third bound to a workflow, 5 % provider
redeliveries; the subscriber fails one first attempt in ten) while, one kind per
phase:

* ``leader``: the leader of an ``inbound`` partition is SIGKILLed and started again,
  then the ``config`` partition's leader;
* ``rolling``: the three brokers are stopped and started one after another;
* ``freeze``: one broker is SIGSTOPped, then resumed;
* ``cut``: every connection to one broker is dropped (the proxy in front of it), then
  restored;
* ``process``: each service process is SIGKILLed and restarted in turn.

After each phase everything is accounted for (:mod:`tests.faults.books`) and a row
of the fault table is printed: posts offered, accepted, refused (503), unanswered,
the longest stretch without a 202, lost, duplicate runs, deliveries missing, and for
the process kills the dispatcher takeover (the last held-back run's start after the
replacement was ready).

Settings (environment): ``HOOKLINE_FAULT_KINDS`` (comma-separated; ``process`` by
default, on the session's broker, which is ``make test``'s short round; any broker
kind runs a three-node cluster of the test's own behind proxies), ``HOOKLINE_FAULT_RATE``
(posts a second, default 20), ``HOOKLINE_FAULT_HOLD`` (seconds of load before and after
each fault, default 5), ``HOOKLINE_FAULT_DOWN``/``_FREEZE``/``_CUT`` (seconds a killed
leader stays down, a broker frozen, its connections cut: 5, 20, 20). ``make test-faults``
runs all five kinds at 300 posts a second.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry
from testkit.config import put_entities
from tests.e2e.stack import Stack
from tests.faults.books import Books, takeover
from tests.faults.entities import entities
from tests.faults.faults import Fault, ProxiedCluster, broker_faults, process_fault
from tests.faults.load import Load
from tests.faults.subscriber import Subscriber
from tests.faults.table import Figures, load_figures, print_table

KINDS = ("leader", "rolling", "freeze", "cut", "process")
VICTIMS = ["ingress-0", "dispatcher-0", "delivery-0", "dispatcher-1", "delivery-1"]


def _env(name: str, default: float) -> float:
    return float(os.environ.get(f"HOOKLINE_FAULT_{name}", default))


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.timeout(3600)
async def test_nothing_is_lost_when_brokers_and_processes_fail_under_load(
    settings: Settings, tmp_path: Path
) -> None:
    kinds = [k.strip() for k in os.environ.get("HOOKLINE_FAULT_KINDS", "process").split(",")]
    assert set(kinds) <= set(KINDS), f"fault kinds are {', '.join(KINDS)}"
    rate, hold = _env("RATE", 20), _env("HOLD", 5)
    folder = Path(tempfile.mkdtemp(prefix="hookline-faults-"))
    cluster = ProxiedCluster(folder) if set(kinds) - {"process"} else None
    bootstrap = settings.kafka_bootstrap_servers
    replication = 1
    if cluster is not None:
        bootstrap, replication = await asyncio.to_thread(cluster.start), 3
    settings = settings.model_copy(
        update={
            "kafka_bootstrap_servers": bootstrap,
            "retry_schedule": (0.5, 1.0, 2.0, 4.0, 8.0),
            "topic_partitions": 4,
            "replication_factor": replication,
        }
    )
    topics = topic_registry(settings.topic_prefix, partitions=4, retry_tiers=5)
    await ensure_topics(bootstrap, topics, replication_factor=replication)
    stack = Stack(settings, tmp_path, HOOKLINE_REPLICATION_FACTOR=str(replication))
    books = Books(bootstrap, topics)
    rows: list[Figures] = []
    try:
        async with Subscriber() as subscriber:
            await put_entities(bootstrap, topics.config, *entities(subscriber.url))
            stack.add("ingress", 0)
            for i in (0, 1):
                stack.add("dispatcher", i)
                stack.add("delivery", i)
            await stack.start(timeout=180)
            faults: dict[str, Fault] = {"process": process_fault(stack, VICTIMS)}
            if cluster is not None:
                faults |= broker_faults(
                    cluster,
                    topics.inbound,
                    topics.config,
                    down=_env("DOWN", 5),
                    freeze=_env("FREEZE", 20),
                    cut=_env("CUT", 20),
                )
            for kind in kinds:
                fault = faults[kind]
                load = Load(stack.url(), rate)
                stop = asyncio.Event()
                began = time.monotonic()
                poster = asyncio.create_task(load.run(stop))
                try:
                    await asyncio.sleep(hold)
                    await fault.act()
                    await asyncio.sleep(hold)
                finally:
                    stop.set()
                    await poster
                figures = Figures(
                    fault.name, seconds=time.monotonic() - began, notes=list(fault.notes)
                )
                load_figures(figures, load.posts)
                await books.account(figures, load.posts, subscriber, timeout=240)
                takeovers = [
                    takeover(books, load.posts, killed, ready)
                    for name, killed, ready in fault.kills
                    if name.startswith("dispatcher")
                ]
                if takeovers:
                    figures.takeover = max(takeovers)
                rows.append(figures)
                print_table(rows[-1:], rate)
            table = print_table(rows, rate)
            report = Path(os.environ.get("HOOKLINE_FAULT_REPORT", tmp_path / "fault-table.txt"))
            await asyncio.to_thread(report.write_text, table + "\n")
            assert subscriber.bad_signatures == 0, "every sampled delivery verifies"
            dirty = [f.fault for f in rows if not f.clean]
            if dirty:
                print(stack.logs()[-8000:])
            assert not dirty, f"lost, duplicated, missing or uncommitted records in: {dirty}"
            for f in rows:
                assert f.accepted, f"{f.fault}: the load was accepted at least some of the time"
    finally:
        await books.close()
        await stack.stop()
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        shutil.rmtree(folder, ignore_errors=True)
