"""The server processes a benchmark starts: a free port for one, waiting until it is
ready, stopping it, and its CPU time (and the local broker's, beside it on this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from localkafka import LocalKafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(
    port: int,
    process: asyncio.subprocess.Process,
    timeout: float = 60,
    *,
    path: str = "/readyz",
    method: str = "GET",
    ready_status: int = 200,
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                answer = await http.request(method, f"http://127.0.0.1:{port}{path}")
                if answer.status_code == ready_status:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("server not ready in time")


async def _stop(server: asyncio.subprocess.Process) -> None:
    if server.returncode is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(server.wait(), 30)
    except TimeoutError:
        server.kill()
        await server.wait()


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of every process below it (workers), each thread included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total + sum(_cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _broker_pid(bootstrap: str) -> int | None:
    """The local launcher's broker on this port, if it is one (its CPU is this machine's)."""
    host, _, port = bootstrap.rpartition(":")
    with contextlib.suppress(ValueError):
        return LocalKafka(host=host, port=int(port)).status().pid
    return None
