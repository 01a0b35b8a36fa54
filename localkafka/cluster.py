"""A local three-node Apache Kafka cluster (KRaft) on loopback, for what production clusters do.

``hookline kafka start --brokers 3`` and the fault tests run it. Node ``i`` (1, 2,
3) listens on ``base + 2(i-1)`` with its controller on the next port, so a base
of 9092 gives 9092, 9094, 9096 (controllers 9093, 9095, 9097). Each node combines
broker and controller, is a voter of a three-voter quorum (formatted once with
``--initial-controllers``), and has its own folder ``node-<i>`` (state at the
top, Kafka's data in ``data/``, its log in ``broker.log``) under the cluster's.
Internal and new topics get three replicas and ``min.insync.replicas=2``: an
``acks=all`` write survives one node lost.

Each node can be killed (SIGKILL), started again, frozen (SIGSTOP: alive but
silent, as a long GC pause or a hung host looks) and thawed. With
``advertised_ports`` each node tells clients and the other brokers to reach it
on another port (a :class:`~localkafka.proxy.TcpProxy` in front of it): cutting
that proxy partitions the node's data traffic while its controller link stays.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localkafka.jvm import alive, default_cache, kafka_cluster_id, reap, run_blocking
from localkafka.launcher import LocalKafka
from shared.errors import BrokerUnavailable, ConfigurationError
from shared.kafka_security import PLAINTEXT


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node: int
    running: bool
    pid: int | None
    port: int
    folder: Path


class ClusterNode(LocalKafka):
    """One combined broker and controller of a :class:`LocalCluster`."""

    def __init__(self, cluster: LocalCluster, node: int) -> None:
        port = cluster.base_port + 2 * (node - 1)
        super().__init__(
            port=port,
            host=cluster.host,
            data_dir=cluster.folder / f"node-{node}",
            heap=cluster.heap,
            cache=cluster.cache,
        )
        self.node = node
        self.cluster = cluster
        self.advertised_port = cluster.advertised_ports[node - 1]

    def _record(self) -> None:
        pass  # the cluster records its folder, not each node's

    def _properties(self) -> dict[str, str]:
        props = super()._properties()
        props.update(
            {
                "node.id": str(self.node),
                "advertised.listeners": f"PLAINTEXT://{self.host}:{self.advertised_port}",
                "controller.quorum.bootstrap.servers": self.cluster.controllers,
                "default.replication.factor": "3",
                "min.insync.replicas": "2",
                "offsets.topic.replication.factor": "3",
                "transaction.state.log.replication.factor": "3",
                "transaction.state.log.min.isr": "2",
                "share.coordinator.state.topic.replication.factor": "3",
                "share.coordinator.state.topic.min.isr": "2",
                # A lost node is fenced, and a silent follower leaves the ISR, within
                # seconds, so that local fault tests see failover quickly.
                "broker.session.timeout.ms": "3000",
                "broker.heartbeat.interval.ms": "500",
                "replica.lag.time.max.ms": "5000",
            }
        )
        return props

    def _format_arguments(self) -> list[str]:
        return [
            "-t",
            self.cluster.identity["cluster_id"],
            "--initial-controllers",
            self.cluster.initial_controllers,
        ]


class LocalCluster:
    """Three KRaft nodes on ``host``; ``bootstrap`` names all three."""

    def __init__(
        self,
        *,
        base_port: int = 9092,
        host: str = "127.0.0.1",
        folder: Path | None = None,
        cache: Path | None = None,
        heap: str = "384m",
        nodes: int = 3,
        advertised_ports: Sequence[int] | None = None,
    ) -> None:
        self.base_port = base_port
        self.host = host
        self.cache = (cache or default_cache()).resolve()
        self._pointer = self.cache / f"cluster-{base_port}" / "location"
        self.folder = folder.resolve() if folder else self._recorded()
        self.heap = heap
        ports = [base_port + 2 * i for i in range(nodes)]
        self.advertised_ports = list(advertised_ports or ports)
        if len(self.advertised_ports) != nodes:
            raise ConfigurationError(f"{nodes} nodes need {nodes} advertised ports")
        self.nodes = [ClusterNode(self, i) for i in range(1, nodes + 1)]

    def _recorded(self) -> Path:
        try:
            return Path(self._pointer.read_text().strip())
        except OSError:
            return self._pointer.parent

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{p}" for p in self.advertised_ports)

    @property
    def controllers(self) -> str:
        return ",".join(f"{n.host}:{n.port + 1}" for n in self.nodes)

    @property
    def identity(self) -> dict[str, str]:
        """The cluster id and each node's metadata directory id, made once and kept."""
        path = self.folder / "cluster.json"
        if path.exists():
            stored: dict[str, str] = json.loads(path.read_text())
            return stored
        self.folder.mkdir(parents=True, exist_ok=True)
        made = {"cluster_id": kafka_cluster_id()}
        made.update({f"dir-{n.node}": kafka_cluster_id() for n in self.nodes})
        path.write_text(json.dumps(made, indent=2))
        return made

    @property
    def initial_controllers(self) -> str:
        ids = self.identity
        return ",".join(
            f"{n.node}@{n.host}:{n.port + 1}:{ids[f'dir-{n.node}']}" for n in self.nodes
        )

    def node(self, node: int) -> ClusterNode:
        return self.nodes[node - 1]

    def status(self) -> list[NodeStatus]:
        out = []
        for n in self.nodes:
            s = n.status()
            out.append(NodeStatus(n.node, s.running, s.pid, n.port, n.state_dir))
        return out

    def start(self, timeout: float = 120.0) -> str:
        """Start every node that is not running; wait until all of them serve."""
        deadline = time.monotonic() + timeout
        if self.folder != self._pointer.parent:
            self._pointer.parent.mkdir(parents=True, exist_ok=True)
            self._pointer.write_text(str(self.folder))
        launched = [(n, n.launch()) for n in self.nodes]
        for n, proc in launched:
            if proc is not None:
                n.wait_listening(proc, deadline)
        run_blocking(self._wait_brokers(deadline, {n.node for n in self.nodes}))
        return self.bootstrap

    def start_node(self, node: int, timeout: float = 60.0) -> None:
        """Start one node again (after :meth:`kill` or :meth:`stop_node`); wait until it serves."""
        deadline = time.monotonic() + timeout
        n = self.node(node)
        proc = n.launch()
        if proc is not None:
            n.wait_listening(proc, deadline)
        run_blocking(self._wait_brokers(deadline, {node}))

    async def _wait_brokers(self, deadline: float, wanted: set[int]) -> None:
        """Until the cluster's metadata lists every node in ``wanted`` as a broker."""
        from shared.kafka import create_admin

        last: object = None
        while time.monotonic() < deadline:
            admin = create_admin(
                self.bootstrap, client_id="hookline-cluster-probe", security=PLAINTEXT
            )
            try:
                await asyncio.wait_for(admin.start(), 5)
                info = await asyncio.wait_for(admin.describe_cluster(), 5)
                have = {b["node_id"] for b in info.get("brokers", [])}
                if wanted <= have:
                    return
                last = f"brokers {sorted(have)}"
            except Exception as exc:  # not up yet, whatever the client says
                last = exc
            finally:
                await admin.close()
            await asyncio.sleep(0.3)
        raise BrokerUnavailable(f"the cluster did not list nodes {sorted(wanted)} in time: {last}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node at once (TERM, then KILL after ``timeout``); True if any ran.

        All at once: a node stopped last, after the quorum lost its majority, would wait
        for a controller that no longer answers.
        """
        pids = [(n, n._pid()) for n in self.nodes]
        running = [(n, pid) for n, pid in pids if pid is not None]
        for _, pid in running:
            os.kill(pid, signal.SIGCONT)  # a frozen node cannot act on TERM
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(alive(pid) for _, pid in running):
            for _, pid in running:
                reap(pid)
            time.sleep(0.1)
        for n, pid in running:
            if alive(pid):
                n.kill()
        for n in self.nodes:
            n.pid_file.unlink(missing_ok=True)
        return bool(running)

    def stop_node(self, node: int, timeout: float = 30.0) -> bool:
        """A clean stop of one node (the others keep the quorum)."""
        return self.node(node).stop(timeout)

    def kill(self, node: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.node(node).kill()

    def freeze(self, node: int) -> None:
        """SIGSTOP one node: its sockets stay open and nothing answers."""
        self._signal(node, signal.SIGSTOP)

    def thaw(self, node: int) -> None:
        """SIGCONT a frozen node."""
        self._signal(node, signal.SIGCONT)

    def _signal(self, node: int, sig: signal.Signals) -> None:
        pid = self.node(node)._pid()
        if pid is None:
            raise ConfigurationError(f"node {node} is not running")
        os.kill(pid, sig)
