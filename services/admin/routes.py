"""The admin API's operations: one table that makes both the routes and the OpenAPI document.

Each :class:`Operation` names its method, path, handler and the pydantic models
of its body, query and answers; :func:`starlette_routes` groups them by path
(so a wrong method gets a 405 with the right ``Allow``) and
:func:`services.admin.openapi.openapi_document` describes the same table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shared.errors import HooklineError, HttpProblem, Unavailable
from shared.problems import PROBLEM_JSON, problem_response

from .audit import AuditTrail
from .auth import Action
from .context import AdminContext
from .deliveries import DeliveryHandlers
from .entity_resources import RESOURCES, SubscriptionResource
from .guard import guarded
from .models import WriteQuery
from .problems import Problem
from .publish_models import PublishedOut, PublishEventIn
from .resources import Resource
from .subscription_models import SubscriptionOut

log = logging.getLogger("hookline.admin")

Handler = Callable[[Request], Awaitable[Response]]

REQUESTS = Counter(
    "hookline_admin_requests_total",
    "Admin API requests by operation and status.",
    ["operation", "status"],
)
LATENCY = Histogram(
    "hookline_admin_request_seconds",
    "Admin API request latency by operation.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None
    headers: tuple[str, ...] = ()
    media: str = "application/json"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    answers: dict[int, Answer]
    body: type[BaseModel] | None = None
    body_required: bool = True
    merge_patch: bool = False
    query: type[BaseModel] | None = None
    if_match: bool = False
    errors: tuple[int, ...] = field(default=())
    # Who may call it, and how the audit trail names it (see auth.py, audit.py).
    action: Action | None = None  # read for a GET, admin for the rest, unless given
    resource: str = ""
    audit_as: str = ""

    @property
    def needs(self) -> Action:
        """The action a role must allow to call this operation."""
        if self.action is not None:
            return self.action
        return "read" if self.method == "GET" else "admin"

    @property
    def audited(self) -> bool:
        """Mutations and operational actions are audited; reads only when refused."""
        return self.method != "GET"

    @property
    def audit_action(self) -> str:
        return self.audit_as or self.operation_id

    def all_answers(self) -> dict[int, Answer]:
        """The operation's own answers and the errors it can give."""
        out = dict(self.answers)
        codes = {401, 403, *self.errors}
        if self.body is not None:
            codes |= {400, 413, 415, 422}
        if self.query is not None:
            codes.add(422)
        if self.if_match:
            codes.add(412)
        if "{id}" in self.path:
            codes.add(404)
        for code in sorted(codes):
            out.setdefault(
                code,
                Answer(ERROR_TEXT[code], Problem, ERROR_HEADERS.get(code, ()), PROBLEM_JSON),
            )
        return out


ERROR_TEXT = {
    400: "The body is not JSON.",
    401: "No valid bearer token.",
    403: "The token's role may not do this.",
    404: "No such entity.",
    409: "It exists already, or cannot be done in its present state.",
    410: "Kafka no longer holds the record.",
    412: "`If-Match` names a version that is not the current one.",
    413: "The body is too large.",
    415: "The body is not JSON.",
    422: "Validation failed; `errors` lists the failing fields.",
    503: "Kafka did not answer in time; the outcome of a write is unknown (retry with `If-Match`).",
}
ERROR_HEADERS = {412: ("ETag",), 503: ("Retry-After",), 401: ("WWW-Authenticate",)}
WRITE_HEADERS = ("ETag", "Hookline-Result", "Hookline-Changed-Fields")


def entity_operations(resource: Resource[object]) -> list[Operation]:  # type: ignore[type-var]
    kind, plural = resource.label, resource.plural
    base, item = f"/v1/{plural}", f"/v1/{plural}/{{id}}"
    out_model, tag = resource.out_model, plural
    ops = [
        Operation(
            "GET",
            base,
            resource.list_all,
            f"list_{plural}",
            f"List {plural} (by id, paged)",
            tag,
            {200: Answer(f"A page of {plural}.", resource.list_model)},
            query=resource.query_model,
            resource=kind,
            audit_as=f"{kind}.list",
        ),
        Operation(
            "POST",
            base,
            resource.create,
            f"create_{kind}",
            f"Create a {kind}",
            tag,
            {
                201: Answer(
                    "Created; a new secret is shown whole in this answer only.",
                    out_model,
                    ("ETag", "Location"),
                )
            },
            body=resource.in_model,
            errors=(409, 503),
            resource=kind,
            audit_as=f"{kind}.create",
        ),
        Operation(
            "GET",
            item,
            resource.get,
            f"get_{kind}",
            f"Get a {kind}",
            tag,
            {200: Answer(f"The {kind}; secrets as hints only.", out_model, ("ETag",))},
            resource=kind,
            audit_as=f"{kind}.get",
        ),
        Operation(
            "PUT",
            item,
            resource.replace,
            f"put_{kind}",
            f"Replace a {kind}, or create it; the same state again changes nothing",
            tag,
            {
                200: Answer(
                    "Replaced, or unchanged (`Hookline-Result`).", out_model, WRITE_HEADERS
                ),
                201: Answer("Created.", out_model, ("ETag", "Location", "Hookline-Result")),
            },
            body=resource.in_model,
            query=WriteQuery,
            if_match=True,
            errors=(503,),
            resource=kind,
            audit_as=f"{kind}.replace",
        ),
        Operation(
            "PATCH",
            item,
            resource.patch,
            f"patch_{kind}",
            f"Change some fields of a {kind} (JSON merge patch)",
            tag,
            {200: Answer("Patched, or unchanged.", out_model, WRITE_HEADERS)},
            body=resource.in_model,
            merge_patch=True,
            if_match=True,
            errors=(503,),
            resource=kind,
            audit_as=f"{kind}.update",
        ),
        Operation(
            "DELETE",
            item,
            resource.delete,
            f"delete_{kind}",
            f"Delete a {kind} (a tombstone)",
            tag,
            {204: Answer("Deleted.")},
            if_match=True,
            errors=(503,),
            resource=kind,
            audit_as=f"{kind}.delete",
        ),
    ]
    if resource.rotate_model is not None:
        ops.append(
            Operation(
                "POST",
                f"{item}/rotate-secret",
                resource.rotate,
                f"rotate_{kind}_secret",
                f"Rotate a {kind}'s secret; the old ones stay valid for the grace period",
                tag,
                {
                    200: Answer(
                        "Rotated; the new secret is shown whole in this answer only.",
                        out_model,
                        WRITE_HEADERS,
                    )
                },
                body=resource.rotate_model,
                body_required=False,
                if_match=True,
                errors=(409, 503),
                resource=kind,
                audit_as=f"{kind}.rotate_secret",
            )
        )
    if resource.can_be_disabled:
        ops += [
            Operation(
                "POST",
                f"{item}/{verb}",
                resource.enable if verb == "enable" else resource.disable,
                f"{verb}_{kind}",
                f"{verb.capitalize()} a {kind} (an operator may; the same again changes nothing)",
                tag,
                {200: Answer(f"{verb.capitalize()}d, or unchanged.", out_model, WRITE_HEADERS)},
                body_required=False,
                if_match=True,
                errors=(503,),
                action="operate",
                resource=kind,
                audit_as=f"{kind}.{verb}",
            )
            for verb in ("enable", "disable")
        ]
    return ops


def operations(ctx: AdminContext) -> list[Operation]:
    ops: list[Operation] = []
    for factory in RESOURCES:
        ops += entity_operations(factory(ctx))
    deliveries = DeliveryHandlers(ctx)
    subscriptions = SubscriptionResource(ctx)
    ops += [
        Operation(
            "POST",
            f"/v1/subscriptions/{{id}}/{verb}",
            handler,
            f"{verb}_subscription",
            summary,
            "subscriptions",
            {
                200: Answer(
                    f"{verb.capitalize()}d, or unchanged (`Hookline-Result`).",
                    SubscriptionOut,
                    WRITE_HEADERS,
                )
            },
            if_match=True,
            errors=(503,),
            action="operate",
            resource="subscription",
            audit_as=f"subscription.{verb}",
        )
        for verb, handler, summary in (
            (
                "pause",
                subscriptions.pause,
                "Pause a subscription: its deliveries wait, none is lost (within retention)",
            ),
            ("resume", subscriptions.resume, "Resume a paused subscription: what waited goes out"),
        )
    ]
    ops += [
        Operation(
            "POST",
            "/v1/events",
            deliveries.publish_event,
            "publish_event",
            "Publish a workflow lifecycle event (to workflow-events, keyed by run id)",
            "events",
            {202: Answer("Acknowledged by Kafka.", PublishedOut)},
            body=PublishEventIn,
            errors=(503,),
            resource="event",
            audit_as="event.publish",
        ),
    ]
    # The operations data (deliveries, inbound events, dead letters, replays, health);
    # imported here because its table is built from this module's Operation.
    from .opsroutes import operations_data

    return ops + operations_data(ctx)


def _instrument(op: Operation, trail: Callable[[], AuditTrail]) -> Handler:
    name = op.operation_id

    async def run(request: Request) -> Response:
        try:
            return await op.handler(request)
        except HttpProblem as problem:
            return problem_response(problem)
        except HooklineError as exc:
            # Kafka or a secret the key does not open: the operator's to fix, the client's
            # to retry.
            return problem_response(Unavailable(str(exc), retry_after=1))

    guard = guarded(op, trail, run)

    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        response = await guard(request)
        REQUESTS.labels(name, str(response.status_code)).inc()
        LATENCY.labels(name).observe(time.perf_counter() - started)
        return response

    return handle


def starlette_routes(ops: Sequence[Operation], trail: Callable[[], AuditTrail]) -> list[BaseRoute]:
    """One route per path; the method picks the operation, behind its role and audit."""
    by_path: dict[str, dict[str, Handler]] = {}
    for op in ops:
        by_path.setdefault(op.path, {})[op.method] = _instrument(op, trail)
    routes: list[BaseRoute] = []
    for path, handlers in by_path.items():

        def dispatch(table: dict[str, Handler]) -> Handler:
            async def endpoint(request: Request) -> Response:
                method = "GET" if request.method == "HEAD" else request.method
                return await table[method](request)

            return endpoint

        routes.append(Route(path, dispatch(handlers), methods=list(handlers)))
    return routes
