"""A signed GitHub push goes in; every lifecycle event of its run comes out, signed, in order.

The path: ingress (signature, 202 after Kafka's ack) → inbound → dispatcher
(binding match, transactional) → workflow-commands → local engine →
workflow-events → delivery → a receiver that verifies each request with the
independent ``standardwebhooks`` package. The flow and its assertions are in
:mod:`tests.e2e.flow`, shared with the run on a secured broker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings
from shared.topics import Topics
from tests.e2e.flow import signed_push_reaches_the_subscriber


@pytest.mark.kafka
@pytest.mark.slow
async def test_signed_push_runs_the_workflow_and_every_event_reaches_the_subscriber(
    settings: Settings, topics: Topics, fixtures_dir: Path, tmp_path: Path
) -> None:
    await signed_push_reaches_the_subscriber(settings, topics, fixtures_dir, tmp_path)
