"""The entry point's process tuning: applied by it alone, and undone on leaving."""

from __future__ import annotations

import gc
import logging

from services.delivery.main import GC_YOUNG_THRESHOLD, tuned_process
from shared.settings import Settings
from shared.startup import quiet_client_logs
from shared.topics import Topics
from testkit.receivers import Receiver


async def test_the_service_leaves_the_interpreter_as_it_was(
    settings: Settings, topics: Topics, run_service: object
) -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    async with Receiver(), run_service():  # type: ignore[operator]
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_tuned_process_freezes_and_raises_the_young_threshold_until_it_is_left() -> None:
    before = gc.get_threshold()
    with tuned_process():
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_entry_point_keeps_httpx_s_request_lines_with_whole_urls_out_of_the_log() -> None:
    httpx_log = logging.getLogger("httpx")
    before = httpx_log.level
    try:
        quiet_client_logs()
        assert not httpx_log.isEnabledFor(logging.INFO)
    finally:
        httpx_log.setLevel(before)
