"""Which bound workflows an inbound event starts: event patterns, then the optional filter.

The filter is a JMESPath expression evaluated against a small document
(``event_type``, ``payload``, ``headers``, ``webhook_id``, ``provider``). A
truthy result (JMESPath's truthiness: ``false``, ``null``, ``""``, ``[]`` and
``{}`` are false, every number is true) is a match. An expression that does not
compile, or fails while it runs, never raises: it is logged and counts as no
match, so a bad binding cannot stop dispatching for anyone else.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

import jmespath
import orjson
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from shared.entities import Binding
from shared.errors import InvalidFilter
from shared.messages import WebhookReceived

log = logging.getLogger(__name__)

# Fixed forever: changing it would change every run id and break redelivery dedupe.
RUN_NAMESPACE = uuid.UUID("5b7a3c1e-2f4d-5e8a-9c6b-0d1e2f3a4b5c")


def run_id_for(
    webhook_id: str, provider_event_id: str, workflow_id: str, replay_id: str | None = None
) -> str:
    """The deterministic run id: UUIDv5 of (webhook id, provider event id, workflow id).

    The name hashed is the UTF-8 bytes of the compact JSON array of the parts (orjson:
    no spaces, non-ASCII characters as themselves, ``"`` and ``\\`` and control
    characters escaped). A replay appends its id as a fourth element, so a replayed run
    differs from the original run and from every other replay's, while the same replay
    of the same event always gives the same id.
    """
    # A JSON array keeps the parts unambiguous whatever characters they hold.
    parts = [webhook_id, provider_event_id, workflow_id]
    if replay_id is not None:
        parts.append(replay_id)
    return str(uuid.uuid5(RUN_NAMESPACE, orjson.dumps(parts).decode()))


@functools.lru_cache(maxsize=1024)
def compile_filter(expression: str) -> ParsedResult:
    """The compiled filter, cached; raises :class:`InvalidFilter` with the parser's reason."""
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise InvalidFilter(str(exc)) from exc


def filter_document(event: WebhookReceived) -> dict[str, Any]:
    """What a filter sees."""
    return {
        "event_type": event.event_type,
        "payload": event.payload,
        "headers": event.headers,
        "webhook_id": event.webhook_id,
        "provider": event.provider,
    }


def jmespath_truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def filter_matches(expression: str | None, document: dict[str, Any]) -> bool:
    """True when there is no filter or the filter's result is truthy; errors mean no match."""
    if expression is None or not expression.strip():
        return True
    try:
        compiled = compile_filter(expression)
    except InvalidFilter as exc:
        log.warning(
            "binding filter does not compile; no match",
            extra={"filter": expression, "reason": str(exc)},
        )
        return False
    try:
        return jmespath_truthy(compiled.search(document))
    except (JMESPathError, TypeError, ValueError) as exc:
        log.warning(
            "binding filter failed; no match", extra={"filter": expression, "reason": str(exc)}
        )
        return False


def matching_bindings(bindings: list[Binding], event: WebhookReceived) -> list[Binding]:
    """The bindings whose event patterns and filter both accept ``event``, in order, one per workflow."""
    document: dict[str, Any] | None = None
    seen: set[str] = set()
    out: list[Binding] = []
    for binding in bindings:
        if binding.workflow_id in seen or not binding.matches_event(event.event_type):
            continue
        if binding.filter is not None:
            document = document if document is not None else filter_document(event)
            if not filter_matches(binding.filter, document):
                continue
        seen.add(binding.workflow_id)
        out.append(binding)
    return out
