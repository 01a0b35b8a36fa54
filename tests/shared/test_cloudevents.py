"""CloudEvents binary mode: attributes as headers; every malformed shape is a PoisonMessage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.cloudevents import decode, decode_any, encode
from shared.errors import InvalidPayload, MissingHeader, UnknownEventType
from shared.messages import StatusChanged, WorkflowStarted

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EVENT = StatusChanged(
    workflow_id="w", run_id="r", occurred_at=NOW, **{"from": "queued"}, to="running"
)


def test_encode_puts_attributes_in_headers_and_data_in_value():
    rec = encode(EVENT, key="r", source="/dispatcher", event_id="e1", time=NOW)
    headers = dict(rec.headers)
    assert headers["ce_type"] == b"status.changed"
    assert headers["ce_time"] == b"2026-01-02T03:04:05Z"
    assert b'"from":"queued"' in (rec.value or b"")
    assert rec.key == b"r"


def test_decode_validates_and_keeps_extensions():
    rec = encode(EVENT, key="r", source="/x", extensions={"traceparent": "00-abc"})
    event = decode(rec.headers, rec.value, StatusChanged)
    assert event.data == EVENT
    assert event.extensions == {"traceparent": "00-abc"}


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda h, v: ([x for x in h if x[0] != "ce_id"], v), MissingHeader),
        (lambda h, v: ([x for x in h if x[0] != "ce_type"], v), MissingHeader),
        (lambda h, v: ([(k, b"nope" if k == "ce_type" else b) for k, b in h], v), UnknownEventType),
        (lambda h, v: (h, b"[1,"), InvalidPayload),
        (lambda h, v: (h, None), InvalidPayload),
        (lambda h, v: (h, b'{"to": "exploded"}'), InvalidPayload),
        (lambda h, v: ([(k, b"\xff" if k == "ce_type" else b) for k, b in h], v), InvalidPayload),
        (
            lambda h, v: ([(k, b"yesterday" if k == "ce_time" else b) for k, b in h], v),
            InvalidPayload,
        ),
    ],
)
def test_malformed_records_raise_the_matching_poison_error(mutate, error):
    rec = encode(EVENT, key="r", source="/x")
    headers, value = mutate(list(rec.headers), rec.value)
    with pytest.raises(error):
        decode_any(headers, value)


def test_decode_refuses_a_type_outside_the_expected_set():
    rec = encode(EVENT, key="r", source="/x")
    with pytest.raises(UnknownEventType):
        decode(rec.headers, rec.value, WorkflowStarted)
