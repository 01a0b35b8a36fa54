"""The consumer loop's settling of hand-ons queued without a task (no broker needed)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaError

from services.delivery._loop import ConsumerLoop
from services.delivery._offsets import PartitionLedger
from shared.cloudevents import KafkaRecord

WRITES = [("retry-1", KafkaRecord(b"sub", b"{}", []))]


class _Deliverer:
    """Only what the settling path calls: the full write, recorded."""

    def __init__(self) -> None:
        self.written_again: list[Any] = []

    async def write_durably(self, writes: list[Any]) -> None:
        self.written_again.append(writes)


def _loop(deliverer: _Deliverer) -> ConsumerLoop:
    # Never entered: no consumer is made, nothing connects.
    return ConsumerLoop(
        "127.0.0.1:1",
        "t",
        group_id="g",
        max_unsettled=10,
        deliverer=deliverer,  # type: ignore[arg-type]
    )


async def test_an_acknowledged_hand_on_settles_its_record() -> None:
    deliverer = _Deliverer()
    loop, ledger = _loop(deliverer), PartitionLedger()
    ledger.take(5, 2)
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    acked.set_result(None)
    loop._written(ledger, 5, WRITES, acked)
    assert ledger.pending == {5: 1}
    assert deliverer.written_again == []


async def test_a_hand_on_whose_batch_failed_is_written_again_before_it_settles() -> None:
    deliverer = _Deliverer()
    loop, ledger = _loop(deliverer), PartitionLedger()
    ledger.take(5, 1)
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(KafkaError("not acknowledged"))
    loop._written(ledger, 5, WRITES, failed)
    assert ledger.unsettled == 1  # not on the failure itself
    await asyncio.wait_for(asyncio.gather(*list(loop._in_flight)), 5)
    assert deliverer.written_again == [WRITES]
    assert ledger.unsettled == 0
