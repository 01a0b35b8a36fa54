"""Where a hung test's coroutines wait: their stacks, printed just before pytest-timeout
ends the test (its own dump shows threads only, and an event loop waiting shows as one
thread in ``select``)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def dump_tasks() -> None:
    # The set of live tasks is read from another thread: racy, and good enough for a
    # last look at a test that is about to fail anyway.
    tasks = [t for t in list(asyncio.tasks._all_tasks) if not t.done()]  # type: ignore[attr-defined]
    print(f"\n+++ {len(tasks)} pending asyncio tasks +++", file=sys.stdout)
    for task in tasks:
        print(f"--- {task.get_name()}", file=sys.stdout)
        # Down the chain of awaits: where the task is suspended, not only where it began.
        awaited: object = task.get_coro()
        for _ in range(40):
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                print(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
            if awaited is None:
                break


@contextmanager
def tasks_dumped_after(seconds: float) -> Iterator[None]:
    timer = threading.Timer(seconds, dump_tasks)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
