"""What the fault harness does to the cluster and the services, one fault kind at a time.

:class:`ProxiedCluster` is a three-node :class:`~localkafka.cluster.LocalCluster` with a
:class:`~localkafka.proxy.TcpProxy` in front of each node: clients and the other brokers
reach a node through its proxy, so cutting it drops the node's connections. Each
``async`` fault function returns when the fault is over (the node back, the process
ready again) and notes what it did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from localkafka.cluster import LocalCluster
from localkafka.proxy import TcpProxy
from shared.kafka import create_admin
from testkit import free_port_range
from tests.e2e.stack import Stack


class ProxiedCluster:
    """Three nodes, each behind a proxy that the harness can cut."""

    def __init__(self, folder: Path, base_port: int | None = None) -> None:
        base = base_port or free_port_range()
        self.proxies = [TcpProxy(base + 2 * i).start() for i in range(3)]
        self.cluster = LocalCluster(
            base_port=base,
            folder=folder,
            advertised_ports=[p.port for p in self.proxies],
        )

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def start(self) -> str:
        return self.cluster.start(timeout=240)

    def stop(self) -> None:
        self.cluster.stop()
        for proxy in self.proxies:
            proxy.close()

    async def leader(self, topic: str, partition: int = 0) -> int:
        admin = create_admin(self.bootstrap, client_id="hookline-faults")
        await admin.start()
        try:
            for entry in await admin.describe_topics([topic]):
                for p in entry["partitions"]:
                    if p["partition"] == partition:
                        return int(p["leader"])
        finally:
            await admin.close()
        raise LookupError(f"no leader for {topic}-{partition}")

    async def wait_in_sync(self, timeout: float = 120.0) -> None:
        """Until every partition of every topic has all its replicas in sync again."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            admin = create_admin(self.bootstrap, client_id="hookline-faults")
            try:
                await admin.start()
                names = await admin.list_topics()
                described = await admin.describe_topics(list(names))
                lagging = [
                    (entry["topic"], p["partition"])
                    for entry in described
                    for p in entry["partitions"]
                    if set(p["isr"]) != set(p["replicas"])
                ]
                if not lagging:
                    return
                last = f"out of sync: {lagging[:5]}"
            except Exception as exc:  # a node still coming back: ask again
                last = exc
            finally:
                await admin.close()
            await asyncio.sleep(1.0)
        raise TimeoutError(f"replicas did not catch up: {last}")


@dataclass
class Fault:
    """One fault kind: its name in the table, and what it does."""

    name: str
    act: Callable[[], Awaitable[None]]
    notes: list[str] = field(default_factory=list)
    #: for a process kill: (name, killed at, ready again at), wall-clock seconds
    kills: list[tuple[str, float, float]] = field(default_factory=list)


def broker_faults(
    cluster: ProxiedCluster,
    topics_inbound: str,
    topics_config: str,
    *,
    down: float,
    freeze: float,
    cut: float,
) -> dict[str, Fault]:
    c = cluster.cluster

    async def kill_leader(topic: str, fault: Fault) -> None:
        node = await cluster.leader(topic)
        c.kill(node)
        fault.notes.append(f"kill -9 node {node} (leader of {topic}-0)")
        await asyncio.sleep(down)
        await asyncio.to_thread(c.start_node, node, 120)
        await cluster.wait_in_sync()

    leader = Fault("leader kill", lambda: _noop())

    async def leaders() -> None:
        await kill_leader(topics_inbound, leader)
        await kill_leader(topics_config, leader)

    leader.act = leaders

    rolling = Fault("rolling restart", lambda: _noop())

    async def roll() -> None:
        for node in (1, 2, 3):
            await asyncio.to_thread(c.stop_node, node)
            await asyncio.to_thread(c.start_node, node, 120)
            await cluster.wait_in_sync()
        rolling.notes.append("stopped and started nodes 1, 2, 3 in turn, in sync between")

    rolling.act = roll

    frozen = Fault("broker frozen", lambda: _noop())

    async def stall() -> None:
        node = await cluster.leader(topics_inbound)
        c.freeze(node)
        frozen.notes.append(f"SIGSTOP node {node} for {freeze:g} s")
        try:
            await asyncio.sleep(freeze)
        finally:
            c.thaw(node)
        await cluster.wait_in_sync()

    frozen.act = stall

    severed = Fault("connections cut", lambda: _noop())

    async def sever() -> None:
        node = await cluster.leader(topics_inbound)
        proxy = cluster.proxies[node - 1]
        proxy.cut()
        severed.notes.append(f"cut every connection to node {node} for {cut:g} s")
        try:
            await asyncio.sleep(cut)
        finally:
            proxy.restore()
        await cluster.wait_in_sync()

    severed.act = sever
    return {"leader": leader, "rolling": rolling, "freeze": frozen, "cut": severed}


def process_fault(stack: Stack, victims: list[str], *, pause: float = 2.0) -> Fault:
    fault = Fault("process kills", lambda: _noop())

    async def kill_each() -> None:
        ready_in: list[str] = []
        for name in victims:
            process = stack.replicas[name].process
            await process.kill()
            killed = time.time()
            await asyncio.sleep(0.5)
            await process.start()
            started = time.time()
            await process.wait_ready(120)
            fault.kills.append((name, killed, time.time()))
            ready_in.append(f"{name} {time.time() - started:.1f}")
            await asyncio.sleep(pause)
        fault.notes.append("kill -9, restarted, ready in s: " + ", ".join(ready_in))

    fault.act = kill_each
    return fault


async def _noop() -> None:
    return None
