"""Fixtures for the delivery tests: a running service over this test's topics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from services.delivery import DeliveryService
from shared.settings import Settings
from shared.topics import Topics


@pytest.fixture
def run_service(
    settings: Settings, topics: Topics
) -> Callable[..., AbstractAsyncContextManager[DeliveryService]]:
    """``async with run_service(**setting_overrides) as service:`` — joined and ready.

    ``stall_after`` and ``abandon_after`` go to the service itself, not to its settings.
    """

    @asynccontextmanager
    async def run(
        resolver: Any = None,
        stall_after: float = 0.25,
        abandon_after: float = 2.0,
        **overrides: Any,
    ) -> AsyncIterator[DeliveryService]:
        tuned = settings.model_copy(update=overrides)
        async with DeliveryService(
            tuned, resolver=resolver, stall_after=stall_after, abandon_after=abandon_after
        ) as service:
            await service.wait_joined()
            yield service

    return run
