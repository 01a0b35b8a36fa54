"""Held deliveries of one ``workflow-events`` partition, at the replica that reads it.

A delivery is *held* when it must wait for something other than a retry tier's gap: its
subscription is paused, its run's previous event (``ordering: "run"``) is not delivered
or given up yet, or its rate limit holds it back for longer than a wait in memory. A
held delivery is an entry on ``delivery-holds`` (:class:`~shared.messages.DeliveryHeld`,
keyed ``<subscription>/<offset>``, on the partition of its source record), written
before its source record settles; it carries no body: the event is read again from its
source record when the delivery is let go (``workflow-events``' retention bounds how long
a delivery can be held). One replica owns a partition of ``workflow-events`` at a time,
and it alone writes that partition's entries: it reads them back when it is assigned the
partition (:class:`~services.delivery._holdbook.HoldBook`), before any of its records.

Ordered delivery per run (:class:`Chain`): a run's deliveries to one subscription go one
at a time, in offset order. The first goes out as it is read; those read while it is out
wait in memory, their records unsettled. When the one out must wait (it failed and waits
for its retry, its lane stalled, its breaker is open, its subscription is paused or rate
limited), it is held again instead of going to a retry tier, and the ones behind it are
written as held entries too, so their records settle: the run waits in the hold store,
not in the partition. When the one out is delivered or given up (exhausted, disabled,
deleted), the next one goes. After a restart the entries come back in offset order, and
a record read again whose delivery is held already is not taken twice.

:class:`Ticket` is what a delivery the hold store answers for carries (``Due.ticket``,
and the origin it settles through): where it waits when it must wait again, and what its
outcome releases.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from services.delivery._codec import Due
from services.delivery._commit import PartitionLedger
from shared.messages import HoldReason

if TYPE_CHECKING:
    from services.delivery._holdbook import HoldBook
    from services.delivery._record import Write


@dataclass(slots=True)
class Held:
    """A live entry of ``delivery-holds``."""

    subscription_id: str
    offset: int
    run_id: str | None
    attempt: int
    first_attempted_at: datetime
    due_at: datetime | None
    reason: HoldReason
    out: bool = False  # let go: its outcome is awaited

    @property
    def key(self) -> str:
        return f"{self.subscription_id}/{self.offset}"


@dataclass(slots=True)
class Pending:
    """A chain's delivery waiting in memory behind the one out; its record unsettled."""

    ledger: PartitionLedger
    offset: int
    due: Due


Item = Pending | Held


def _offset(item: Item) -> int:
    return item.offset


class Chain:
    """One run's deliveries to one ordered subscription: one out at a time, in offset order."""

    __slots__ = ("active", "key", "waiting")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        # The one out (a ticket), or the one held waiting for its retry or resume.
        self.active: Ticket | Held | None = None
        self.waiting: list[Item] = []

    @property
    def durable(self) -> bool:
        """Whether the chain waits in the hold store (so newcomers are written there too)."""
        return isinstance(self.active, Held) or any(isinstance(w, Held) for w in self.waiting)

    def insert(self, item: Item) -> None:
        bisect.insort(self.waiting, item, key=_offset)


class Ticket:
    """A delivery the hold store answers for; its origin (``settle(offset)``) as well."""

    __slots__ = ("again", "chain", "held", "ledger", "part")

    def __init__(
        self,
        part: HoldPartition,
        chain: Chain | None,
        *,
        ledger: PartitionLedger | None = None,
        held: Held | None = None,
    ) -> None:
        self.part = part
        self.chain = chain
        self.ledger = ledger  # its source record, when it was read from the topic just now
        self.held = held  # its entry, when it has one
        self.again: Held | None = None  # set when its outcome holds it again

    def hold_again(self, due: Due, reason: HoldReason, due_at: datetime | None) -> list[Write]:
        """The write that holds ``due`` again (an entry under its key); none once the
        partition has moved to another replica, which answers for it from now on."""
        if self.part.revoked:
            return []
        offset = due.source[2]
        held = Held(
            due.subscription_id,
            offset,
            self.chain.key[1] if self.chain is not None else None,
            due.attempt,
            due.first_attempted_at,
            due_at,
            reason,
        )
        self.again = held
        self.part.book.remember(self.part, held, due)
        return [self.part.book.entry_write(self.part, held)]

    def closing(self, writes: list[Write]) -> list[Write]:
        """``writes`` and, when its entry goes with this outcome, the entry's tombstone."""
        if self.again is None and self.held is not None and not self.part.revoked:
            return [*writes, self.part.book.tombstone_write(self.part, self.held)]
        return writes

    def settle(self, offset: int) -> None:
        if self.ledger is not None:
            self.ledger.settle(offset)
        self.part.settled(self)


class HoldPartition:
    """The held deliveries and ordered chains of one owned ``workflow-events`` partition."""

    def __init__(self, book: HoldBook, tp: TopicPartition) -> None:
        self.book = book
        self.tp = tp
        self.ready = False  # its entries have been read back
        self.revoked = False
        self.entries: dict[str, Held] = {}
        self.chains: dict[tuple[str, str], Chain] = {}

    def has(self, subscription_id: str, offset: int) -> bool:
        return f"{subscription_id}/{offset}" in self.entries

    # -- read back at assignment ----------------------------------------------------------

    def restore(self, entries: list[Held]) -> None:
        """Take the entries read back; chains resume from their lowest offset."""
        for held in sorted(entries, key=_offset):
            self.entries[held.key] = held
            if held.run_id is None:
                self.book.arm(self, held)
                continue
            key = (held.subscription_id, held.run_id)
            chain = self.chains.get(key)
            if chain is None:
                chain = self.chains[key] = Chain(key)
                chain.active = held
            else:
                chain.insert(held)
        for chain in self.chains.values():
            active = chain.active
            assert isinstance(active, Held)
            if active.due_at is None and active.reason == "ordered":
                self._start(chain, active)  # the one before it ended before the restart
            else:
                self.book.arm(self, active)
        self.ready = True

    # -- the intake: a run's next delivery to an ordered subscription ---------------------

    async def offer(self, ledger: PartitionLedger, offset: int, due: Due, run_id: str) -> None:
        key = (due.subscription_id, run_id)
        if f"{due.subscription_id}/{offset}" in self.entries:
            ledger.settle(offset)  # read again after a restart: held already
            return
        chain = self.chains.get(key)
        if chain is None:
            chain = self.chains[key] = Chain(key)
            await self._go(chain, Pending(ledger, offset, due))
        elif chain.durable:
            chain.insert(self._write_waiting(ledger, offset, due, run_id))
        else:
            chain.insert(Pending(ledger, offset, due))

    def _write_waiting(self, ledger: PartitionLedger, offset: int, due: Due, run: str) -> Held:
        held = Held(
            due.subscription_id, offset, run, due.attempt, due.first_attempted_at, None, "ordered"
        )
        self.entries[held.key] = held
        self.book.remember(self, held, due)
        self.book.write_entry(ledger, offset, due, self, held)
        return held

    async def _go(self, chain: Chain, item: Pending) -> None:
        ticket = Ticket(self, chain, ledger=item.ledger)
        chain.active = ticket
        await self.book.admit(ticket, item.offset, replace(item.due, ticket=ticket))

    def _start(self, chain: Chain, item: Item) -> None:
        """Send ``item`` as the chain's one out (from a callback: no waiting here)."""
        if isinstance(item, Pending):
            ticket = Ticket(self, chain, ledger=item.ledger)
            chain.active = ticket
            self.book.spawn_admit(ticket, item.offset, replace(item.due, ticket=ticket))
        else:
            item.out = True
            ticket = Ticket(self, chain, held=item)
            chain.active = ticket
            self.book.release(ticket)

    # -- outcomes ---------------------------------------------------------------------------

    def hold(
        self, ledger: PartitionLedger, due: Due, reason: HoldReason, at: datetime | None
    ) -> tuple[Ticket, list[Write]]:
        """Hold a delivery read from this partition that has no entry yet (paused, or rate
        limited); the ticket is its origin: it settles the record and keeps the entry."""
        ticket = Ticket(self, None, ledger=ledger)
        return ticket, ticket.hold_again(due, reason, at)

    def settled(self, ticket: Ticket) -> None:
        """A delivery's outcome is durable: keep it held, or let the next one go."""
        if self.revoked:
            return
        chain = ticket.chain
        held = ticket.again
        if held is not None:
            self.entries[held.key] = held
            if chain is not None:
                chain.active = held
                self._write_pending(chain)
            self.book.arm(self, held)
            return
        if ticket.held is not None:
            self.entries.pop(ticket.held.key, None)
        if chain is None or chain.active is not ticket:
            return
        chain.active = None
        if chain.waiting:
            self._start(chain, chain.waiting.pop(0))
        elif self.chains.get(chain.key) is chain:
            del self.chains[chain.key]

    def _write_pending(self, chain: Chain) -> None:
        """The one out is held again: those waiting in memory behind it are held too."""
        for i, item in enumerate(chain.waiting):
            if isinstance(item, Pending):
                run = chain.key[1]
                chain.waiting[i] = self._write_waiting(item.ledger, item.offset, item.due, run)

    def due(self, held: Held) -> None:
        """``held``'s time came (or its subscription was resumed): let it go."""
        if self.revoked or held.out or self.entries.get(held.key) is not held:
            return
        if held.run_id is not None:
            chain = self.chains.get((held.subscription_id, held.run_id))
            if chain is not None:
                if chain.active is held:
                    self._start(chain, held)
                return  # it waits its turn
        held.out = True
        self.book.release(Ticket(self, None, held=held))

    def release_all(self, subscription_id: str, *, paused_only: bool) -> None:
        """Let ``subscription_id``'s held deliveries go (resumed, changed, or deleted)."""
        for held in [h for h in self.entries.values() if h.subscription_id == subscription_id]:
            if paused_only and held.reason != "paused":
                continue
            self.due(held)

    def unchain(self, subscription_id: str) -> None:
        """``subscription_id`` no longer wants order: its waiting deliveries all go now."""
        for key, chain in list(self.chains.items()):
            if key[0] != subscription_id:
                continue
            waiting, chain.waiting = chain.waiting, []
            for item in waiting:
                if isinstance(item, Pending):
                    self.book.spawn_admit(item.ledger, item.offset, item.due)
                else:
                    item.run_id = None
                    self.book.arm(self, item)
            if isinstance(chain.active, Held):
                chain.active.run_id = None
                self.book.arm(self, chain.active)
            del self.chains[key]

    def revoke(self) -> None:
        self.revoked = True
        self.entries.clear()
        self.chains.clear()
