"""The dispatcher: inbound webhook events → workflow runs, exactly once inside Kafka.

Public surface:

* :class:`Dispatcher` — consumes ``inbound``, writes ``RunRequested`` commands,
  ``status.changed`` (queued) events and the run ledger in one transaction per batch.
* :class:`LocalEngine` / :class:`KafkaEngine` — the engine adapters.
* :func:`run_id_for`, :func:`matching_bindings`, :func:`filter_matches` — the pure rules.
* ``services.dispatcher.main.run(settings)`` — ``hookline dispatcher``.
"""

from shared.errors import InvalidFilter, NodeFailed

from ._dispatcher import Dispatcher
from ._engine import KafkaEngine, LocalEngine
from ._ledger import RunLedger, StartedRun
from ._matching import (
    RUN_NAMESPACE,
    compile_filter,
    filter_document,
    filter_matches,
    jmespath_truthy,
    matching_bindings,
    run_id_for,
)
from ._nodes import NodePolicy, NodeRunner

__all__ = [
    "RUN_NAMESPACE",
    "Dispatcher",
    "InvalidFilter",
    "KafkaEngine",
    "LocalEngine",
    "NodeFailed",
    "NodePolicy",
    "NodeRunner",
    "RunLedger",
    "StartedRun",
    "compile_filter",
    "filter_document",
    "filter_matches",
    "jmespath_truthy",
    "matching_bindings",
    "run_id_for",
]
