"""The local three-node cluster: it comes up, keeps acks=all writes through a lost node, and
stops without leaving anything behind; one node restarts on its own, freezes and thaws, and
is cut off and restored through its proxy (the fault suite)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from localkafka.cluster import LocalCluster
from localkafka.jvm import alive, port_open
from localkafka.proxy import TcpProxy
from shared.kafka import create_admin, create_producer, ensure_topics
from shared.topics import TopicSpec
from testkit import free_port_range
from testkit.kafka import read_topic, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOPIC = "rf3"


async def _partitions(bootstrap: str) -> list[dict[str, object]]:
    admin = create_admin(bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([TOPIC])
    finally:
        await admin.close()
    return list(described[0]["partitions"])


async def _write(bootstrap: str, values: list[bytes], timeout: float = 30) -> None:
    async with create_producer(bootstrap, request_timeout_ms=int(timeout * 1000)) as producer:
        for i, value in enumerate(values):
            await asyncio.wait_for(producer.send_and_wait(TOPIC, value, partition=i % 3), timeout)


async def _full_isr(bootstrap: str) -> bool:
    return all(len(p["isr"]) == 3 for p in await _partitions(bootstrap))  # type: ignore[arg-type]


def _stop_and_check_nothing_runs(cluster: LocalCluster) -> None:
    pids = [s.pid for s in cluster.status() if s.pid]
    assert cluster.stop() is True
    assert not any(s.running or s.pid for s in cluster.status())
    assert not any(alive(pid) for pid in pids), "a node outlived stop"
    assert not any(port_open(cluster.host, n.port) for n in cluster.nodes)
    assert cluster.stop() is False, "stopping a stopped cluster is harmless"


@pytest.mark.faults
@pytest.mark.skipif(
    not os.environ.get("HOOKLINE_FAULT_ROUNDS"), reason="the fault suite: make test-faults"
)
async def test_three_nodes_keep_acks_all_writes_through_a_killed_leader(tmp_path: Path) -> None:
    cluster = LocalCluster(base_port=free_port_range(), folder=tmp_path / "cluster")
    try:
        bootstrap = await asyncio.to_thread(cluster.start)
        assert [s.running for s in cluster.status()] == [True, True, True]
        assert len(bootstrap.split(",")) == 3
        spec = TopicSpec("rf3", TOPIC, 3, "delete", None, (("min.insync.replicas", "2"),))
        await ensure_topics(bootstrap, [spec], replication_factor=3)
        partitions: list[dict[str, object]] = []

        async def described() -> bool:
            # The controller answers before every node has the new topic's metadata.
            nonlocal partitions
            partitions = await _partitions(bootstrap)
            return len(partitions) == 3

        await wait_until(described, timeout=30, interval=0.5, message="the topic described")
        assert all(len(p["replicas"]) == 3 for p in partitions)  # type: ignore[arg-type]
        await _write(bootstrap, [b"before-%d" % i for i in range(6)])

        leader = int(partitions[0]["leader"])  # type: ignore[call-overload]
        cluster.kill(leader)
        assert not cluster.status()[leader - 1].running
        await _write(bootstrap, [b"after-%d" % i for i in range(6)])
        records = await read_topic(bootstrap, TOPIC, min_count=12, timeout=30)
        assert sorted(r.value for r in records if r.value) == sorted(
            [b"before-%d" % i for i in range(6)] + [b"after-%d" % i for i in range(6)]
        )
    finally:
        await asyncio.to_thread(_stop_and_check_nothing_runs, cluster)


@pytest.mark.faults
@pytest.mark.skipif(
    not os.environ.get("HOOKLINE_FAULT_ROUNDS"), reason="the fault suite: make test-faults"
)
async def test_one_node_restarts_freezes_thaws_and_is_cut_off_through_its_proxy(
    tmp_path: Path,
) -> None:
    base = free_port_range()
    proxies = [TcpProxy(base + 2 * i).start() for i in range(3)]
    cluster = LocalCluster(
        base_port=base, folder=tmp_path / "cluster", advertised_ports=[p.port for p in proxies]
    )
    try:
        bootstrap = await asyncio.to_thread(cluster.start)
        assert bootstrap == ",".join(f"127.0.0.1:{p.port}" for p in proxies)
        spec = TopicSpec("rf3", TOPIC, 3, "delete", None, (("min.insync.replicas", "2"),))
        await ensure_topics(bootstrap, [spec], replication_factor=3)
        await _write(bootstrap, [b"one"] * 3)

        # Killed, then started on its own: it rejoins every partition's ISR.
        cluster.kill(3)
        await _write(bootstrap, [b"two"] * 3)
        started = time.monotonic()
        await asyncio.to_thread(cluster.start_node, 3)
        await wait_until(lambda: _full_isr(bootstrap), timeout=30, message="node 3 back in sync")
        print(f"node 3 restarted and in sync after {time.monotonic() - started:.1f}s")

        # Frozen: writes go on once it leaves the ISR; thawed: it catches up.
        cluster.freeze(2)
        await _write(bootstrap, [b"three"] * 3, timeout=30)
        cluster.thaw(2)
        await wait_until(lambda: _full_isr(bootstrap), timeout=30, message="node 2 thawed")

        # Cut off through its proxy: unreachable for clients; restored, the cluster heals.
        proxies[0].cut()
        only_one = f"127.0.0.1:{proxies[0].port}"
        admin = create_admin(only_one, request_timeout_ms=2000)
        with pytest.raises(Exception):  # noqa: B017 (any refusal will do)
            await asyncio.wait_for(admin.start(), 5)
        await admin.close()
        proxies[0].restore()
        await wait_until(lambda: _full_isr(bootstrap), timeout=30, message="node 1 restored")
        await _write(bootstrap, [b"four"] * 3)
        records = await read_topic(bootstrap, TOPIC, min_count=12, timeout=30)
        assert len(records) == 12
    finally:
        await asyncio.to_thread(_stop_and_check_nothing_runs, cluster)
        for proxy in proxies:
            proxy.close()
