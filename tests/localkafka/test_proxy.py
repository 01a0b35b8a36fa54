"""The fault harness's TCP proxy: forwards, cuts (resets what is open, refuses what comes), restores."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from localkafka.proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(payload)
        return s.recv(4096)


def _dead(s: socket.socket) -> bool:
    """True when the connection was reset or closed by the other end."""
    try:
        s.sendall(b"again")
        return s.recv(4096) == b""
    except OSError:
        return True


def _new_connection_dies(port: int) -> bool:
    try:
        fresh = socket.create_connection(("127.0.0.1", port), timeout=3)
    except OSError:  # reset before the handshake was seen through
        return True
    with fresh:
        return _dead(fresh)


def test_the_proxy_forwards_cuts_and_restores(echo_port: int) -> None:
    with TcpProxy(echo_port) as proxy:
        assert _roundtrip(proxy.port) == b"ping"
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        held.sendall(b"held")
        assert held.recv(4096) == b"held"

        proxy.cut()
        assert _dead(held), "the open connection was reset"
        held.close()
        assert _new_connection_dies(proxy.port), "a new one is closed at once"

        proxy.restore()
        assert _roundtrip(proxy.port, b"back") == b"back"
