"""``hookline dev`` as a new user meets it: its own broker, 9092 taken, output through a pipe.

Each test runs ``python -m cli dev --no-demo`` as a child, the way ``make dev 2>&1 | tee
dev.log`` does: stdout and stderr into one pipe, a cache folder of its own (the project's
Kafka jars linked in), free ports for every service, and 9092 held by a listening socket
of the test's (or by whatever holds it already: the same condition). It reads the output
up to the banner, notes every process of the supervisor's tree, and then ends the
supervisor the hard ways: the pipe's reader goes away and Ctrl-C follows, or a SIGKILL.
Every one of those processes, the broker's JVM included, must be gone within a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localkafka import ensure_jars

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="the parent-death signal and /proc are Linux's",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
BANNER_END = "Ctrl-C stops everything."
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]


def descendants(root: int) -> set[int]:
    """Every live process below ``root``, by the ppid links in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running, that is: gone and zombie (exited, not yet reaped by init) both count as dead."""
    stat = _stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


@contextlib.contextmanager
def port_9092_held() -> Iterator[None]:
    """Something listens on 127.0.0.1:9092 for the duration: this socket, or whatever has it."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 9092))
        sock.listen()
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        yield  # held by another process already
        return
    try:
        yield
    finally:
        sock.close()


@dataclass
class DevRun:
    proc: subprocess.Popen[bytes]
    output: str
    ports: dict[str, int]

    def tree(self) -> set[int]:
        return descendants(self.proc.pid)


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """The child's output up to and including ``marker``; fails on exit or after ``timeout``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} within {timeout}s; output:\n{data.decode()}")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                proc.wait(timeout=10)
                raise AssertionError(
                    f"hookline dev exited ({proc.returncode}) before {marker!r}:\n{data.decode()}"
                )
            data += chunk
    return data.decode(errors="replace")


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``hookline dev`` with a cache and ports of its own."""
    libs = ensure_jars(ROOT / ".cache" / "kafka")
    cache = tmp_path / "cache"
    (cache / "kafka").mkdir(parents=True)
    (cache / "kafka" / "libs").symlink_to(libs, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_CACHE_DIR=str(cache),
        HOOKLINE_INGRESS_PORT=str(free_port()),
        HOOKLINE_INGRESS_INTERNAL_PORT=str(free_port()),
        HOOKLINE_ADMIN_PORT=str(free_port()),
        HOOKLINE_DISPATCHER_PORT=str(free_port()),
        HOOKLINE_DELIVERY_PORT=str(free_port()),
        HOOKLINE_SHUTDOWN_GRACE="5",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def dev(dev_env: dict[str, str], tmp_path: Path) -> Iterator[DevRun]:
    """``hookline dev --no-demo`` running, its output read up to the end of the banner.

    Whatever the test does to it, the supervisor and its tree are killed at the end."""
    receiver = free_port()
    ports = {
        "ingress": int(dev_env["HOOKLINE_INGRESS_PORT"]),
        "admin": int(dev_env["HOOKLINE_ADMIN_PORT"]),
        "receiver": receiver,
    }
    with port_9092_held():
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "dev", "--no-demo", "--receiver-port", str(receiver)],
            cwd=tmp_path,
            env={**dev_env, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        tree: set[int] = set()
        try:
            output = _read_until(proc, BANNER_END, START_TIMEOUT)
            run = DevRun(proc, output, ports)
            tree = run.tree()
            yield run
        finally:
            tree |= descendants(proc.pid)
            for pid in [proc.pid, *tree]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


def assert_all_gone(pids: set[int], timeout: float = STOP_TIMEOUT) -> None:
    """Every one of ``pids`` has exited within ``timeout`` seconds (0: right now)."""
    deadline = time.monotonic() + timeout
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = {p for p in left if alive(p)}
    assert not left, f"still running after {timeout}s: { {p: cmdline(p) for p in left} }"


def check_started(run: DevRun) -> set[int]:
    """The banner names both URLs and the broker's new port; returns the supervisor's tree."""
    out = run.output
    assert "hookline is running" in out
    assert f"http://127.0.0.1:{run.ports['ingress']}/webhooks/" in out
    assert re.search(rf"admin API\s+http://127\.0\.0\.1:{run.ports['admin']}\b", out), out
    moved = re.search(r"port 9092 is taken by another process; using (\d+)", out)
    assert moved, out
    broker_port = int(moved.group(1))
    assert broker_port != 9092
    assert f"127.0.0.1:{broker_port}" in out
    tree = run.tree()
    commands = [cmdline(p) for p in tree]
    assert any("kafka.Kafka" in c for c in commands), commands
    for service in ("ingress", "admin", "dispatcher", "delivery"):
        assert any(c.endswith(f"-m cli {service} ") for c in commands), (service, commands)
    assert any("devstack.receiver" in c for c in commands), commands
    return tree


def test_ctrl_c_after_the_pipe_reader_died_stops_every_process(dev: DevRun) -> None:
    tree = check_started(dev)
    # Ctrl-C on `make dev 2>&1 | tee dev.log`: tee dies first, and the supervisor's
    # output has no reader when it starts to stop.
    assert dev.proc.stdout is not None
    dev.proc.stdout.close()
    dev.proc.send_signal(signal.SIGINT)
    code = dev.proc.wait(timeout=STOP_TIMEOUT)
    # An orderly stop: the supervisor lived on without its output, stopped every child
    # and the broker, and only then exited. (Children that merely die with it would
    # still be running at this point.)
    assert code == 0
    assert_all_gone(tree, timeout=0)


def test_a_killed_supervisor_takes_its_children_and_broker_with_it(dev: DevRun) -> None:
    tree = check_started(dev)
    # No chance to stop anything: the kernel's parent-death signal must do it.
    dev.proc.kill()
    dev.proc.wait(timeout=10)
    assert_all_gone(tree)


def test_ports_taken_between_the_choice_and_the_start_move_the_broker_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another `hookline dev` may take the pair this one chose before its broker binds it.
    from devstack import stack
    from devstack.supervisor import Output
    from localkafka import LocalKafka
    from shared.settings import Settings

    raced, free = free_port(), free_port()
    choices = iter([raced, free])
    monkeypatch.setattr(
        stack,
        "local_broker",
        lambda cache, **_: (LocalKafka(port=next(choices), cache=tmp_path / "kafka"), None),
    )
    real_start = LocalKafka.start

    def start(self: LocalKafka, timeout: float = 90.0, **kwargs: object) -> str:
        if self.port == raced:
            return real_start(self, timeout)  # refuses: the port is taken
        return self.bootstrap  # (no JVM needed to see the choice)

    monkeypatch.setattr(LocalKafka, "start", start)
    out = io.StringIO()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", raced))
        holder.listen()
        broker, ours, line = stack._local_broker(
            argparse.Namespace(secure=False), Settings(cache_dir=tmp_path), Output(out)
        )
    assert (broker.port, ours) == (free, True)
    assert line == f"127.0.0.1:{free} (local broker)"
    assert f"port {raced} was taken meanwhile; trying the next" in out.getvalue()
