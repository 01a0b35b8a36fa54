"""What the tests and the benchmarks share: the test credentials, free ports, the
fixtures folder, config entities written straight to Kafka, topic readers and
waits, and real HTTP receivers on loopback.

Neither ``tests`` nor ``bench`` imports the other; both import this.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

TEST_SECRET_KEY = "dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG0="  # base64 of 32 test bytes
TEST_ADMIN_TOKEN = "test-admin-token-0123456789"

# The project's copy of the real provider payloads and published signature vectors.
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def free_port_range(count: int = 6) -> int:
    """A loopback port whose next ``count - 1`` ports are free too (a three-node cluster's
    brokers and controllers, two each)."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 2)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


def free_port_pair() -> int:
    """A free loopback port whose successor is free too (a broker and its controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")
