"""The operations data's part of the operation table (routes and OpenAPI alike)."""

from __future__ import annotations

from .context import AdminContext
from .deadletters import DeadLetterHandlers
from .deliveries import DeliveryHandlers
from .endpoint_health import HealthHandlers
from .inbound import InboundHandlers
from .opsmodels import (
    DeadLetterDetail,
    DeadLetterList,
    DeadLetterQuery,
    DeadLetterRetryOut,
    DeliveryDetail,
    DeliveryList,
    DeliveryQuery,
    HealthOut,
    InboundDetail,
    InboundList,
    InboundQuery,
    OperationList,
    OperationOut,
    OperationQuery,
    RecoverIn,
    RecoverOut,
    RedeliveryOut,
    ReplayIn,
)
from .replays import ReplayJobs
from .routes import Answer, Operation
from .testevents import TestEventHandlers

VIEW_ERRORS = (503,)  # the view is catching up


def operations_data(ctx: AdminContext) -> list[Operation]:
    deliveries = DeliveryHandlers(ctx)
    inbound = InboundHandlers(ctx)
    dead = DeadLetterHandlers(ctx)
    jobs = ReplayJobs(ctx)
    health = HealthHandlers(ctx)
    tests = TestEventHandlers(ctx)
    page = "A page, newest first."
    return [
        Operation(
            "GET",
            "/v1/deliveries",
            deliveries.list_all,
            "list_deliveries",
            "List deliveries, newest first; filters combine",
            "deliveries",
            {200: Answer(page, DeliveryList)},
            query=DeliveryQuery,
            errors=VIEW_ERRORS,
        ),
        Operation(
            "GET",
            "/v1/deliveries/{id}",
            deliveries.get,
            "get_delivery",
            "Get a delivery and its attempts",
            "deliveries",
            {200: Answer("The delivery.", DeliveryDetail)},
            errors=VIEW_ERRORS,
        ),
        Operation(
            "POST",
            "/v1/deliveries/{id}/redeliver",
            deliveries.redeliver,
            "redeliver",
            "Send a delivery again, with the same webhook-id",
            "deliveries",
            {202: Answer("Handed to the delivery service.", RedeliveryOut)},
            errors=(409, 503),
        ),
        Operation(
            "POST",
            "/v1/subscriptions/{id}/recover",
            jobs.recover,
            "recover_subscription",
            "Send again what failed for a subscription in a window, read from workflow-events",
            "deliveries",
            {
                200: Answer("A recovery with this id exists: its state.", RecoverOut),
                202: Answer("Started (done, when it was quick).", RecoverOut),
            },
            body=RecoverIn,
            errors=(409, 503),
        ),
        Operation(
            "POST",
            "/v1/subscriptions/{id}/test",
            tests.send,
            "test_subscription",
            "Send a test event to this subscription alone (signed, retried, logged)",
            "deliveries",
            {202: Answer("Handed to the delivery service.", RedeliveryOut)},
            errors=(409, 503),
        ),
        Operation(
            "GET",
            "/v1/subscriptions/{id}/health",
            health.get,
            "subscription_health",
            "Success rate, latency, failures and breaker of a subscription (5 m, 1 h, 1 d)",
            "deliveries",
            {200: Answer("Its health.", HealthOut)},
            errors=VIEW_ERRORS,
        ),
        Operation(
            "POST",
            "/v1/webhooks/{id}/replay",
            jobs.replay,
            "replay_webhook",
            "Dispatch a webhook's inbound events of a window again, as new runs",
            "replays",
            {
                200: Answer("A replay with this id exists: its state.", OperationOut),
                202: Answer("Started.", OperationOut),
            },
            body=ReplayIn,
            errors=(409, 503),
        ),
        Operation(
            "GET",
            "/v1/replays",
            jobs.list_all,
            "list_replays",
            "List replays and recoveries, newest first",
            "replays",
            {200: Answer(page, OperationList)},
            query=OperationQuery,
            errors=VIEW_ERRORS,
        ),
        Operation(
            "GET",
            "/v1/replays/{id}",
            jobs.get,
            "get_replay",
            "Get a replay or a recovery and its progress",
            "replays",
            {200: Answer("Its state.", OperationOut)},
            errors=VIEW_ERRORS,
        ),
        Operation(
            "GET",
            "/v1/inbound-events",
            inbound.list_all,
            "list_inbound_events",
            "List inbound events, newest first; filters combine",
            "inbound-events",
            {200: Answer(page, InboundList)},
            query=InboundQuery,
            errors=VIEW_ERRORS,
        ),
        Operation(
            "GET",
            "/v1/inbound-events/{id}",
            inbound.get,
            "get_inbound_event",
            "Get an inbound event: headers, body, verification, the runs it started",
            "inbound-events",
            {200: Answer("The inbound event.", InboundDetail)},
            errors=VIEW_ERRORS,
        ),
        Operation(
            "GET",
            "/v1/dead-letters",
            dead.list_all,
            "list_dead_letters",
            "List dead-lettered records, newest first",
            "dead-letters",
            {200: Answer(page, DeadLetterList)},
            query=DeadLetterQuery,
            errors=VIEW_ERRORS,
        ),
        Operation(
            "GET",
            "/v1/dead-letters/{id}",
            dead.get,
            "get_dead_letter",
            "Get a dead-lettered record: its headers and an excerpt",
            "dead-letters",
            {200: Answer("The dead letter.", DeadLetterDetail)},
            errors=VIEW_ERRORS,
        ),
        Operation(
            "POST",
            "/v1/dead-letters/{id}/retry",
            dead.retry,
            "retry_dead_letter",
            "Put a dead-lettered record back on its source topic",
            "dead-letters",
            {
                200: Answer("A retry with this Idempotency-Key exists.", DeadLetterRetryOut),
                202: Answer("Written back.", DeadLetterRetryOut),
            },
            errors=(409, 410, 503),
        ),
    ]
