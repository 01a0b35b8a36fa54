"""What the local brokers share: the pinned jars, the JVM's logging, process and port checks.

``pom.xml`` beside this module (package data) pins the Kafka version; Maven copies
the broker and its dependencies into ``<cache>/libs`` once (the cache folder is
``.cache/kafka`` under the working directory unless the caller names another).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from shared.errors import ConfigurationError

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


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def alive(pid: int) -> bool:
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


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from synchronous code, also when an event loop is running
    in this thread (``hookline dev`` starts the broker from its loop): then in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def reap(pid: int) -> None:
    # The broker is our child when this process started it; collect it so it is not a zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kafka_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding. One
    # that starts with "-" would be read as an option by the storage tool's parser.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def port_taken(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (the broker's or its controller's)."""
    return port_open(host, port)
