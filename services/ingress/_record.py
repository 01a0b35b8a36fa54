"""The Kafka record of a verified webhook, built without a pydantic round trip.

``shared.cloudevents.encode`` dumps a model field by field; for an inbound event
that means walking the whole provider payload (often tens of KiB of JSON) once
more, only to write back what the request already carried. Here the small
fields are dumped with orjson and the payload is spliced in as JSON text: the
request body itself when it was a JSON body (it has just been parsed, so it is
valid JSON), else the parsed value dumped once. What a consumer decodes is the
same ``WebhookReceived`` that ``encode`` would have written (a unit test holds
the two side by side).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from shared.cloudevents import CONTENT_TYPE, SPEC_VERSION, KafkaRecord
from shared.entities import Webhook
from shared.messages import PayloadEncoding, Verification, WebhookReceived

_CE_TYPE = WebhookReceived.ce_type.encode()
_PAYLOAD = b',"payload":'


def received_record(
    *,
    webhook_id: str,
    provider: str,
    event_type: str,
    provider_event_id: str,
    received_at: datetime,
    source_ip: str | None,
    content_type: str,
    headers: dict[str, str],
    payload_encoding: PayloadEncoding,
    payload: Any,
    payload_json: bytes | None,
    ce_id: str,
    verification: Verification | None = None,
) -> KafkaRecord:
    """The CloudEvents record of one ``WebhookReceived``, keyed by the webhook id.

    ``payload_json`` is the payload as JSON text when the caller has it (the
    verified body); it must decode to ``payload``. ``received_at`` is aware (UTC).
    """
    head = orjson.dumps(
        {
            "webhook_id": webhook_id,
            "provider": provider,
            "event_type": event_type,
            "provider_event_id": provider_event_id,
            "received_at": received_at,
            "source_ip": source_ip,
            "content_type": content_type,
            "headers": headers,
            "payload_encoding": payload_encoding,
            "verification": verification,
        }
    )
    data = payload_json if payload_json is not None else orjson.dumps(payload)
    # ``head`` is a JSON object: drop its closing brace and append the payload member.
    value = b"".join((head[:-1], _PAYLOAD, data, b"}"))
    key = webhook_id.encode()
    return KafkaRecord(
        key=key,
        value=value,
        headers=[
            ("ce_specversion", SPEC_VERSION),
            ("ce_id", ce_id.encode()),
            ("ce_source", b"/webhooks/" + key),
            ("ce_type", _CE_TYPE),
            ("ce_time", received_at.isoformat().replace("+00:00", "Z").encode()),
            ("content-type", CONTENT_TYPE),
        ],
    )


def verification_used(
    webhook: Webhook, provider: str, headers: Mapping[str, str], now: datetime
) -> Verification:
    """The scheme that verified an accepted request, told from what it carried.

    Called only once verification passed, so the credentials present are the ones that
    were checked (``_handler._verify`` tries them in the same order): a webhook with no
    active secret that allows unsigned posts verified nothing.
    """
    if not any(secret.active(now) for secret in webhook.secrets) and webhook.allow_unsigned:
        return "unsigned"
    if provider == "github":
        return "github-sha256" if "x-hub-signature-256" in headers else "github-sha1"
    if provider == "gitlab":
        return "gitlab-signature" if "webhook-signature" in headers else "gitlab-token"
    if provider == "slack":
        return "slack-v0"
    return "standard-webhooks"
