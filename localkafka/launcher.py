"""The local broker: a real single-node Apache Kafka (KRaft) run from Maven Central jars.

``pom.xml`` beside this module (package data) pins the version; Maven copies the
broker and its dependencies into ``<cache>/libs`` once (the cache folder is
``.cache/kafka`` under the working directory unless the caller names another). :class:`LocalKafka` formats the
storage once, starts the JVM in the background with its log in a file, and
stops it by its pid. A broker's folder is ``.cache/kafka/<port>`` unless another
is given (``--data-dir``): its state (pid, log, properties) at the top, Kafka's
data in ``data/``, kept across stop and start. A start with a folder of its own
records it for the port, so ``status`` and ``stop`` by port find it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from localkafka.security import SecureFiles
from shared.errors import BrokerUnavailable, ConfigurationError

POM = Path(__file__).with_name("pom.xml")
T = TypeVar("T")


def default_cache() -> Path:
    """``.cache/kafka`` under the working directory: where ``make`` runs, the project root."""
    return Path.cwd() / ".cache" / "kafka"


MISSING_TOOLS = (
    "hookline's local broker runs Apache Kafka from its jars, which needs {missing} on PATH "
    "(Java 17 or newer to run the broker, Maven to fetch the pinned jars from Maven Central "
    "once). Install {missing} (on Debian: apt-get install openjdk-17-jre-headless maven), or "
    "run Kafka another way: `docker compose -f deploy/compose.yaml up kafka` where a Docker "
    "engine exists, or point hookline at an existing cluster with "
    "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS=host:port, in which case no local broker is started."
)

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    version: str | None
    bootstrap: str
    data_dir: Path
    secure: bool = False
    ca_file: Path | None = None


def kafka_version(libs: Path | None = None) -> str | None:
    folder = libs or default_cache() / "libs"
    for jar in sorted(folder.glob("kafka_2.13-*.jar")):
        name = jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
        if name[:1].isdigit() and "-" not in name:
            return name
    return None


def ensure_jars(cache: Path | None = None) -> Path:
    """Copy the pinned broker jars into the cache once; return the folder."""
    cache = cache or default_cache()
    libs = cache / "libs"
    stamp = libs / ".complete"
    if stamp.exists() and stamp.read_text() == POM.read_text():
        return libs
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise ConfigurationError(MISSING_TOOLS.format(missing=" and ".join(missing)))
    staging = cache / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ConfigurationError(
            "Maven could not fetch the Kafka jars from Maven Central:\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    stamp.write_text(POM.read_text())
    return libs


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); read its state where /proc exists.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


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
        return pid if _alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(
            running=pid is not None and _port_open(self.host, self.port),
            pid=pid,
            version=kafka_version(self.cache / "libs"),
            bootstrap=self.bootstrap,
            data_dir=self.data_dir,
            secure=self._runs_secure(),
            ca_file=self.secure_files.ca if self._runs_secure() else None,
        )

    def _write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        props = self.state_dir / "server.properties"
        controller = f"{self.host}:{self.port + 1}"
        listeners = [
            f"listeners=PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
            f"advertised.listeners=PLAINTEXT://{self.bootstrap}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ]
        if self.secure:
            self.secure_files.ensure()
            self.secure_files.keystore()
            listeners = self.secure_files.properties(self.host, self.port, self.port + 1)
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    *listeners,
                    "controller.listener.names=CONTROLLER",
                    f"controller.quorum.bootstrap.servers={controller}",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=1",
                    # One node: internal topics cannot ask for three replicas.
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=10",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.cleaner.backoff.ms=1000",
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms=5000",
                    "",
                ]
            )
        )
        (self.state_dir / "log4j2.properties").write_text(LOG4J2.format(log=self.log_file))
        return props

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
        if self.status().running:
            if self.secure != self._runs_secure():
                mode = "secured" if self._runs_secure() else "plaintext"
                raise ConfigurationError(
                    f"a {mode} broker already runs on port {self.port}; stop it first"
                )
            return self.bootstrap
        if _port_open(self.host, self.port):
            raise ConfigurationError(
                f"port {self.port} is taken by another process; choose another with --port"
            )
        libs = ensure_jars(self.cache)
        props = self._write_config()
        self._record()
        formatted = (self.data_dir / "meta.properties").exists()
        if formatted and self.secure and not self._secure_marker.exists():
            # Its metadata has no SCRAM users: the broker could not even log in to itself.
            raise ConfigurationError(
                f"{self.data_dir} holds a plaintext broker's data; give --secure its own "
                "--data-dir (or remove that folder)"
            )
        if not formatted:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            cluster_id = _kafka_cluster_id()
            fmt = subprocess.run(
                self._java(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                    "--standalone",
                    *(self.secure_files.scram_arguments() if self.secure else []),
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerUnavailable(
                    f"Kafka exited with {proc.returncode}; see {self.log_file}:\n"
                    + self.log_file.read_text(errors="replace")[-2000:]
                )
            if _port_open(self.host, self.port):
                break
            time.sleep(0.2)
        else:
            self.stop()
            raise BrokerUnavailable(f"Kafka did not open {self.bootstrap} within {timeout}s")
        run_blocking(self._ready(max(5.0, deadline - time.monotonic())))
        return self.bootstrap

    async def _ready(self, timeout: float) -> None:
        from shared.kafka import wait_for_broker

        if not self.secure:
            await wait_for_broker(self.bootstrap, timeout=timeout)
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
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
            _reap(pid)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
                _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (for fault tests)."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
                _reap(pid)


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from synchronous code, also when an event loop is running
    in this thread (``hookline dev`` starts the broker from its loop): then in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _reap(pid: int) -> None:
    # The broker is our child when this process started it; collect it so it is not a zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _kafka_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding. One
    # that starts with "-" would be read as an option by the storage tool's parser.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def port_taken(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (the broker's or its controller's)."""
    return _port_open(host, port)
