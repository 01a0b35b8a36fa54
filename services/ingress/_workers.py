"""N ingress processes on one port: a supervisor that forks them and stops them together.

Each worker is a whole ingress (its own server, producer and config view) that binds
the port itself with ``SO_REUSEPORT``, so the kernel spreads new connections over the
workers that are listening. A worker binds at once but listens only once its app has
started (uvicorn puts a given socket to listen after the lifespan), so no connection
waits on a worker that is not ready.

Lifecycle: :func:`supervise` forks the workers before any event loop or thread exists;
SIGTERM or SIGINT to the supervisor is passed to every worker, each drains as a
single ingress does, and the supervisor returns 0 once all have exited 0. A worker
that exits on its own (its port or its broker refused it at start, or it crashed)
stops the others, and the supervisor returns 1: the orchestrator restarts the whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("hookline.ingress")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def supervise(workers: int, worker: Callable[[], int]) -> int:
    """Run ``worker()`` in ``workers`` forked processes until a stop signal; 0 when all
    of them stopped cleanly, else 1."""
    children: dict[int, int] = {}  # pid → worker number
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        for number in range(workers):
            # Signals wait while forking: a worker must not run the supervisor's handler,
            # and a stop must reach every worker, the one being forked too.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            pid = os.fork()
            if pid == 0:  # the worker: its own signal handling, then the ingress
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                code = 1
                try:
                    code = worker()
                finally:
                    logging.shutdown()
                    os._exit(code)
            children[pid] = number
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        log.info("ingress workers started", extra={"workers": workers, "pids": list(children)})
        failed = False
        while children:
            pid, status = os.wait()
            if pid not in children:
                continue
            number = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 or not stopping:
                failed = True
                log.error(
                    "ingress worker exited",
                    extra={"worker": number, "pid": pid, "exit_code": code},
                )
                if not stopping:  # the others go too: the supervisor's health is all of them
                    stop(signal.SIGTERM, None)
        return 1 if failed else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        os.kill(pid, sig)
