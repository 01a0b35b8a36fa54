"""The supervisor's output pump and its output: a child never blocks on a full pipe.

A child whose output nobody reads stops at its next write once the pipe (64 KiB)
is full, and then cannot even stop. So the supervisor reads every byte a child
writes, whatever the child writes (a line longer than any buffer) and whatever
happens to the supervisor's own output (a reader that went away).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys

import pytest

from devstack.supervisor import Output, ServiceProcess

pytestmark = pytest.mark.timeout(60)

LONG = 1 << 20  # 1 MiB on one line: sixteen times asyncio's default line limit


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def run_to_exit(process: ServiceProcess, timeout: float = 20.0) -> int | None:
    await process.start()
    assert process.proc is not None
    try:
        await asyncio.wait_for(process.proc.wait(), timeout)
    except TimeoutError:
        # Not process.kill(): its wait would hang on the pipe nobody reads.
        os.kill(process.proc.pid, signal.SIGKILL)
        raise AssertionError(f"{process.name} blocked on its output for {timeout}s") from None
    return await process.stop()


async def test_a_line_longer_than_any_buffer_is_passed_on_and_the_child_finishes():
    out = io.StringIO()
    code = f"import sys; sys.stdout.write('x' * {LONG} + '\\n'); print('done', flush=True)"
    process = ServiceProcess("long", child(code), echo=out)
    assert await run_to_exit(process) == 0
    text = out.getvalue()
    assert text.count("x") == LONG
    assert text.splitlines()[-1] == "long       | done"
    assert all(line.startswith("long       | ") for line in text.splitlines())


async def test_output_without_a_reader_is_dropped_and_the_child_is_still_read():
    read, write = os.pipe()
    os.close(read)  # the terminal, or `| tee`, went away
    stream = os.fdopen(write, "w")
    out = Output(stream)
    out.write("nobody reads this\n")  # no error: dropped
    code = f"for i in range({LONG // 64}): print('y' * 63)"
    process = ServiceProcess("chatty", child(code), echo=out)
    try:
        assert await run_to_exit(process) == 0
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def test_output_stops_writing_after_its_first_failure():
    class Failing(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            Failing.writes += 1
            raise BrokenPipeError("gone")

    out = Output(Failing())
    out.write("one\n")
    out.write("two\n")
    assert Failing.writes == 1
