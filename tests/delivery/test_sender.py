"""The sender: what a request leaves behind once its outcome is returned."""

from __future__ import annotations

import gc
from collections import Counter

import pytest

from services.delivery import DestinationGuard, Sender
from testkit.receivers import Receiver

REQUESTS = 50


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_requests_leave_no_cyclic_garbage(transport: str) -> None:
    """The service raises the collector's threshold on the grounds that a delivery makes
    no reference cycles: a cycle here (httpx's response and its stream refer to each
    other) would pile up between collections instead of being freed as it is dropped."""
    async with Receiver() as receiver:
        guard = DestinationGuard(allow_private=True, allow_insecure=True)
        async with Sender(guard, transport=transport) as sender:  # type: ignore[arg-type]
            await sender.send(receiver.url(), {}, b"{}")  # the pool's connection, once
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                outcomes = [await sender.send(receiver.url(), {}, b"{}") for _ in range(REQUESTS)]
                gc.collect()
                garbage = Counter(type(o).__qualname__ for o in gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
    assert all(o.status_code == 200 for o in outcomes)
    assert not garbage, f"cyclic garbage after {REQUESTS} requests: {garbage.most_common(5)}"
