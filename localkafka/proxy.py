"""A TCP proxy on loopback that a fault test can cut and restore.

Put one in front of each node of a :class:`~localkafka.cluster.LocalCluster`
started with ``advertised_ports`` set to the proxies' ports: every client and
every other broker then reaches that node through it, and :meth:`TcpProxy.cut`
partitions the node (its open connections are reset, new ones are closed at
once) until :meth:`TcpProxy.restore`.

It runs in threads of its own, not in an event loop, so it keeps forwarding while
the test's loop is blocked (a synchronous cluster start waits on brokers that
replicate through these proxies).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class TcpProxy:
    """Forwards ``listen_host:listen_port`` to ``target_host:target_port`` until closed."""

    def __init__(
        self,
        target_port: int,
        *,
        listen_port: int = 0,
        target_host: str = "127.0.0.1",
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.target = (target_host, target_port)
        self._server = socket.create_server((listen_host, listen_port), reuse_port=False)
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)
        self.connections = 0  # accepted and forwarded, for tests

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def start(self) -> Self:
        self._thread.start()
        return self

    def cut(self) -> None:
        """Reset every open connection and close new ones at once, until :meth:`restore`."""
        self._cut.set()
        self._drop_all()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._server.close()
        self._drop_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _drop_all(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for s in doomed:
            _reset(s)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        # One side ended: end both, as a real connection would.
        for s in (src, dst):
            with self._lock:
                self._sockets.discard(s)
            _reset(s)


def _reset(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        # Linger 0: close with a reset, as a failed network path looks to the peer.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
