"""The local broker: a real single-node Apache Kafka (KRaft) run from Maven Central jars.

:class:`LocalKafka` formats the storage once, starts the JVM in the background
with its log in a file, and stops it by its pid. A broker's folder is
``.cache/kafka/<port>`` unless another is given (``--data-dir``): its state (pid,
log, properties) at the top, Kafka's data in ``data/``, kept across stop and
start. A start with a folder of its own records it for the port, so ``status``
and ``stop`` by port find it. The jars and process helpers are in
:mod:`localkafka.jvm`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localkafka.jvm import (
    LOG4J2,
    alive,
    default_cache,
    ensure_jars,
    kafka_cluster_id,
    kafka_version,
    port_open,
    port_taken,
    reap,
    run_blocking,
)
from localkafka.security import SecureFiles
from shared.errors import BrokerUnavailable, ConfigurationError
from shared.kafka_security import PLAINTEXT

# Kept importable from here, where they used to live.
_kafka_cluster_id = kafka_cluster_id
__all__ = [
    "BrokerStatus",
    "LocalKafka",
    "default_cache",
    "ensure_jars",
    "kafka_version",
    "port_taken",
]


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    version: str | None
    bootstrap: str
    data_dir: Path
    secure: bool = False
    ca_file: Path | None = None


class LocalKafka:
    """One KRaft node (broker and controller) on ``host:port``, controller on ``port + 1``."""

    def __init__(
        self,
        *,
        port: int = 9092,
        host: str = "127.0.0.1",
        data_dir: Path | None = None,
        heap: str = "512m",
        cache: Path | None = None,
        secure: bool = False,
        acl_prefix: str = "hookline.",
    ) -> None:
        self.host = host
        self.port = port
        self.cache = cache = (cache or default_cache()).resolve()
        # Where this port's broker keeps its state (pid, log, properties, secure/) and, in
        # ``data/``, Kafka's data: the folder given, else the one a start with a folder
        # recorded for the port, else ``<cache>/<port>``.
        self._pointer = cache / str(port) / "location"
        self.state_dir = data_dir.resolve() if data_dir else self._recorded() or cache / str(port)
        self.data_dir = self.state_dir / "data"
        self.heap = heap
        self.pid_file = self.state_dir / "broker.pid"
        self.log_file = self.state_dir / "broker.log"
        self.secure = secure
        self.acl_prefix = acl_prefix
        self.secure_files = SecureFiles(self.state_dir / "secure")

    def _recorded(self) -> Path | None:
        with contextlib.suppress(OSError):
            return Path(self._pointer.read_text().strip())
        return None

    def _record(self) -> None:
        default = self.cache / str(self.port)
        if self.state_dir == default:
            self._pointer.unlink(missing_ok=True)
            return
        self._pointer.parent.mkdir(parents=True, exist_ok=True)
        self._pointer.write_text(str(self.state_dir))

    @property
    def _secure_marker(self) -> Path:
        return self.data_dir / "hookline-secure"

    def _runs_secure(self) -> bool:
        props = self.state_dir / "server.properties"
        with contextlib.suppress(OSError):
            return "SASL_SSL://" in props.read_text()
        return False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(
            running=pid is not None and port_open(self.host, self.port),
            pid=pid,
            version=kafka_version(self.cache / "libs"),
            bootstrap=self.bootstrap,
            data_dir=self.data_dir,
            secure=self._runs_secure(),
            ca_file=self.secure_files.ca if self._runs_secure() else None,
        )

    def _properties(self) -> dict[str, str]:
        """This node's ``server.properties``; a cluster's nodes change a few of them."""
        controller = f"{self.host}:{self.port + 1}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.bootstrap.servers": controller,
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # One node: internal topics cannot ask for three replicas.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.cleaner.backoff.ms": "1000",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "5000",
        }
        if self.secure:
            self.secure_files.ensure()
            self.secure_files.keystore()
            for line in self.secure_files.properties(self.host, self.port, self.port + 1):
                key, _, value = line.partition("=")
                props[key] = value
        return props

    def _write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        props = self.state_dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        (self.state_dir / "log4j2.properties").write_text(LOG4J2.format(log=self.log_file))
        return props

    def _format_arguments(self) -> list[str]:
        """How ``kafka-storage format`` sets up this node's quorum (and users)."""
        scram = self.secure_files.scram_arguments() if self.secure else []
        return ["-t", kafka_cluster_id(), "--standalone", *scram]

    def _java(self, libs: Path, *args: str, heap: bool = False) -> list[str]:
        cmd = ["java"]
        if heap:
            cmd += [
                f"-Xms{min(256, int(self.heap.rstrip('m')))}m",
                f"-Xmx{self.heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
            ]
        cmd += [
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.state_dir}",
            "-cp",
            f"{libs}/*",
            *args,
        ]
        return cmd

    def start(self, timeout: float = 90.0, *, preexec_fn: Callable[[], None] | None = None) -> str:
        """Start the broker unless it runs; wait until it answers; return the bootstrap address.

        ``preexec_fn`` runs in the broker's process before Java starts: a supervisor
        passes one that ties the broker's life to its own.
        """
        deadline = time.monotonic() + timeout
        proc = self.launch(preexec_fn=preexec_fn)
        if proc is None:
            return self.bootstrap
        self.wait_listening(proc, deadline)
        run_blocking(self._ready(max(5.0, deadline - time.monotonic())))
        return self.bootstrap

    def launch(
        self, *, preexec_fn: Callable[[], None] | None = None
    ) -> subprocess.Popen[bytes] | None:
        """Format the storage on first start and start the JVM; None when it already runs."""
        if self.status().running:
            if self.secure != self._runs_secure():
                mode = "secured" if self._runs_secure() else "plaintext"
                raise ConfigurationError(
                    f"a {mode} broker already runs on port {self.port}; stop it first"
                )
            return None
        if port_open(self.host, self.port):
            raise ConfigurationError(
                f"port {self.port} is taken by another process; choose another with --port"
            )
        formatted = (self.data_dir / "meta.properties").exists()
        if formatted and self.secure and not self._secure_marker.exists():
            # Its metadata has no SCRAM users: the broker could not even log in to itself.
            raise ConfigurationError(
                f"{self.data_dir} holds a plaintext broker's data; give --secure its own "
                "--data-dir (or remove that folder)"
            )
        libs = ensure_jars(self.cache)
        props = self._write_config()
        self._record()
        if not formatted:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fmt = subprocess.run(
                self._java(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    "-c",
                    str(props),
                    *self._format_arguments(),
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise ConfigurationError(f"formatting Kafka storage failed:\n{fmt.stderr[-2000:]}")
            if self.secure:
                self._secure_marker.touch()
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props), heap=True),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the caller's terminal does not reach it
                preexec_fn=preexec_fn,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def wait_listening(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Until the broker's port accepts connections; stop it if that takes too long."""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerUnavailable(
                    f"Kafka exited with {proc.returncode}; see {self.log_file}:\n"
                    + self.log_file.read_text(errors="replace")[-2000:]
                )
            if port_open(self.host, self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerUnavailable(f"Kafka did not open {self.bootstrap} within the time given")

    async def _ready(self, timeout: float) -> None:
        from shared.kafka import wait_for_broker

        if not self.secure:
            # Plaintext whatever security the caller's environment put in force.
            await wait_for_broker(self.bootstrap, timeout=timeout, security=PLAINTEXT)
            return
        from localkafka.security import SUPER_USER, grant_services

        files = self.secure_files
        await wait_for_broker(self.bootstrap, timeout=timeout, security=files.security(SUPER_USER))
        await grant_services(self.bootstrap, files, self.acl_prefix)
        files.write_env_files(self.bootstrap)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker by its pid (TERM, then KILL after ``timeout``); True if it ran."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
            reap(pid)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
                reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (for fault tests)."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
                reap(pid)
