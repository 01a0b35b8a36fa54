"""The soak: the whole stack under steady load for a long while, its footprint flat.

One ingress, two dispatchers and two delivery services take signed posts at
``HOOKLINE_SOAK_RATE`` a second (200 by ``make soak``) for ``HOOKLINE_SOAK_MINUTES``
(20). Every minute each process's resident memory and open file count are printed
(less the provider connections the ingress has accepted and both ends still hold: their
number is the load generator's pool, which grows to the highest concurrency a pause
ever caused; a connection the ingress failed to close would be half-closed and count);
over the run's last three quarters (the first quarter is warm-up: caches, pools and
the interpreter settle), neither may grow by 10 % or more. Then the posts are
accounted for as in the fault suite. Skipped unless ``HOOKLINE_SOAK_MINUTES`` is set.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry
from testkit.config import put_entities
from tests.e2e.stack import Stack
from tests.faults.books import Books
from tests.faults.entities import entities
from tests.faults.load import Load
from tests.faults.subscriber import Subscriber
from tests.faults.table import Figures, load_figures, print_table

MAX_GROWTH = 0.10


def footprint(pid: int, accepting_port: int | None = None) -> tuple[int, int]:
    """Resident memory (KiB) and open file descriptors of ``pid``, less its established
    connections accepted on ``accepting_port``."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fds = os.listdir(f"/proc/{pid}/fd")
    if accepting_port is None:
        return rss, len(fds)
    accepted = _established_on(accepting_port)
    held = sum(
        1
        for fd in fds
        if (target := _readlink(f"/proc/{pid}/fd/{fd}")).startswith("socket:[")
        and int(target[8:-1]) in accepted
    )
    return rss, len(fds) - held


def _established_on(port: int) -> set[int]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                found.add(int(fields[9]))
    return found


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(7200)
async def test_the_stack_keeps_a_flat_footprint_under_steady_load(
    settings: Settings, tmp_path: Path
) -> None:
    minutes = float(os.environ.get("HOOKLINE_SOAK_MINUTES", "0"))
    if minutes <= 0:
        pytest.skip("the soak runs with HOOKLINE_SOAK_MINUTES set (make soak)")
    rate = float(os.environ.get("HOOKLINE_SOAK_RATE", "200"))
    bootstrap = settings.kafka_bootstrap_servers
    settings = settings.model_copy(update={"retry_schedule": (0.5, 1.0, 2.0, 4.0, 8.0)})
    topics = topic_registry(
        settings.topic_prefix, partitions=settings.topic_partitions, retry_tiers=5
    )
    await ensure_topics(bootstrap, topics)
    # The run ledger remembers runs for the dedupe window (7 days by default): its memory
    # grows with every run until the window is full. A four-minute window fills within
    # the warm-up, so what follows shows whether it stays full, not that it fills.
    stack = Stack(settings, tmp_path, HOOKLINE_DEDUPE_WINDOW="240")
    books = Books(bootstrap, topics)
    samples: dict[str, list[tuple[int, int]]] = {}
    try:
        async with Subscriber() as subscriber:
            await put_entities(bootstrap, topics.config, *entities(subscriber.url))
            stack.add("ingress", 0)
            for i in (0, 1):
                stack.add("dispatcher", i)
                stack.add("delivery", i)
            await stack.start(timeout=180)
            load = Load(stack.url(), rate)
            stop = asyncio.Event()
            began = time.monotonic()
            poster = asyncio.create_task(load.run(stop))
            try:
                for minute in range(1, int(minutes) + 1):
                    await asyncio.sleep(max(0.0, began + 60 * minute - time.monotonic()))
                    line = [f"minute {minute:>3}: {len(load.posts) / (60 * minute):.0f} posts/s"]
                    for name, replica in stack.replicas.items():
                        assert replica.process.running, f"{name} exited\n{stack.tail(name)}"
                        assert replica.process.pid is not None
                        public = replica.ports["ingress"] if name.startswith("ingress") else None
                        rss, fds = footprint(replica.process.pid, public)
                        samples.setdefault(name, []).append((rss, fds))
                        line.append(f"{name} {rss / 1024:.0f} MiB {fds} fds")
                    print("  ".join(line), flush=True)
            finally:
                stop.set()
                await poster
            figures = Figures("soak", seconds=time.monotonic() - began)
            load_figures(figures, load.posts)
            await books.account(figures, load.posts, subscriber, timeout=600)
            print_table([figures], rate)
        warm = max(1, len(next(iter(samples.values()))) // 4)
        growth = {}
        for name, series in samples.items():
            (rss0, fd0), (rss1, fd1) = series[warm - 1], series[-1]
            growth[name] = ((rss1 - rss0) / rss0, (fd1 - fd0) / fd0)
            print(
                f"{name}: resident memory {rss1 / rss0 - 1:+.1%}, open files {fd1 / fd0 - 1:+.1%}"
            )
        assert figures.clean, f"nothing lost, duplicated or missing: {figures}"
        for name, (rss_growth, fd_growth) in growth.items():
            assert rss_growth < MAX_GROWTH, f"{name}'s memory grew {rss_growth:.1%}"
            assert fd_growth < MAX_GROWTH, f"{name}'s open files grew {fd_growth:.1%}"
    finally:
        await books.close()
        await stack.stop()
