"""Child processes of hookline: start, wait until ready, stop in order, or kill.

``hookline dev`` runs the services this way with their output prefixed on the
terminal; the end-to-end and fault suites run replicas this way with their
output in files, and SIGKILL them to prove nothing is lost.

Children never outlive their supervisor. Each runs in a session of its own, so a
Ctrl-C reaches the supervisor alone and it stops them in order; and each asks
the kernel for SIGTERM when the supervisor dies, so they stop even when it is
killed. Output that cannot be written (the terminal or a ``| tee`` went away) is
dropped, never an error: the supervisor must live on to stop its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

HOOKLINE = [sys.executable, "-m", "cli"]

_PR_SET_PDEATHSIG = 1
# Output is passed on in lines; a longer one in pieces of this size.
LINE_LIMIT = 1 << 16


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when its parent dies (Linux).

    The kernel ties this to the thread that forks, so call it from the main thread.
    Elsewhere it returns None: the supervisor's own stop is then the only guard.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


class Output:
    """A text stream for prefixed child output that stops writing, quietly, once it fails."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe or terminal: drop what follows
            self._stream = None


class ServiceProcess:
    """One child process; output goes to ``log_path`` or, prefixed, to ``echo``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready_url: str | None = None,
        log_path: Path | None = None,
        echo: IO[str] | Output | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.ready_url = ready_url
        self.log_path = log_path
        self.echo = echo if isinstance(echo, Output) else Output(echo)
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        if self.running:
            return
        self.starts += 1
        stdout: int | IO[bytes]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            # Opening a local log file is quick; the child keeps its own descriptor.
            stdout = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230
        else:
            stdout = asyncio.subprocess.PIPE
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C goes to the supervisor, which stops us in order
                preexec_fn=die_with_parent(),
            )
        finally:
            if not isinstance(stdout, int):
                stdout.close()
        if self.proc.stdout is not None:
            self._pump = asyncio.create_task(self._copy_output(self.proc.stdout))

    async def _copy_output(self, stream: asyncio.StreamReader) -> None:
        """Pass the child's output on, line by line, until it closes its end.

        Reads to the end whatever the child writes and whatever happens to the output:
        a child blocked on a full pipe could not stop (nor could its exit be awaited).
        So no ``readline`` (it raises on a line over its limit): chunks are split
        here, and a line longer than ``LINE_LIMIT`` is passed on in pieces.
        """
        prefix = f"{self.name:<10} | "
        pending = b""
        while chunk := await stream.read(LINE_LIMIT):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) >= LINE_LIMIT:
                lines.append(pending)
                pending = b""
            for line in lines:
                self.echo.write(prefix + line.decode(errors="replace") + "\n")
        if pending:
            self.echo.write(prefix + pending.decode(errors="replace") + "\n")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``ready_url`` answers 200 (or only that the process lives, without one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited with {self.returncode()}")
                if self.ready_url is None:
                    return
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.ready_url)).status_code == 200:
                        return
                if loop.time() > deadline:
                    raise TimeoutError(f"{self.name} not ready at {self.ready_url} in {timeout}s")
                await asyncio.sleep(0.1)

    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    async def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                await self.kill()
        await self._finish_pump()
        return self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL the process (and anything it started), as a crash would."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        await self._finish_pump()

    async def _finish_pump(self) -> None:
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 2.0)
            self._pump = None
