"""One exception tree for hookline: every error class the code raises on purpose.

::

    HooklineError
    ├── ConfigurationError        settings or environment unusable (missing Java, bad key)
    ├── BrokerUnavailable         Kafka did not answer in time
    │   └── PublishTimeout        a write was not acknowledged within its deadline
    ├── PoisonMessage             a record that cannot be parsed or validated (→ dlq)
    │   ├── MissingHeader         a required ``ce_*`` header is absent
    │   ├── UnknownEventType      ``ce_type`` names no known message
    │   └── InvalidPayload        the value is not JSON or fails its schema
    ├── SecretError               a secret cannot be decrypted (wrong key, tampered)
    ├── SignatureRejected         a webhook request not signed by a current secret (ingress)
    ├── ClientDisconnected        the client left before its body was read (no one to answer)
    ├── DestinationRefused        an outbound URL or address the destination policy refuses
    │   └── DestinationUnresolved the host resolves to nothing (nothing to connect to)
    ├── InvalidFilter             a binding's JMESPath filter does not compile (dispatcher)
    ├── NodeFailed                a local-engine node failed; its code and message are the run's
    └── HttpProblem               an HTTP error answer: an RFC 9457 problem document
        ├── MalformedRequest      400 malformed
        ├── Unauthorized          401 unauthorized
        ├── Forbidden             403 forbidden
        ├── NotFound              404 not_found
        ├── MethodNotAllowed      405 method_not_allowed
        ├── RequestTimeout        408 request_timeout (the ingress: a slow client's headers or body)
        ├── Conflict              409 (a base: the write cannot be done in the present state)
        │   ├── AlreadyExists     409 already_exists
        │   ├── SubscriptionGone  409 subscription_gone
        │   ├── NotRedeliverable  409 not_redeliverable
        │   ├── NotRetryable      409 not_retryable
        │   └── IdInUse           409 id_in_use
        ├── Gone                  410 gone
        ├── VersionConflict       412 version_conflict
        ├── BodyTooLarge          413 too_large
        ├── UnsupportedMediaType  415 unsupported_media_type
        ├── ValidationFailed      422 invalid (with field errors)
        ├── RateLimited           429 rate_limited
        ├── InternalError         500 internal
        └── Unavailable           503 unavailable

Each :class:`HttpProblem` subclass is one problem type, answered by the ingress and
the admin API alike as ``application/problem+json``: ``type`` is
:data:`PROBLEM_TYPE_BASE` and the slug, ``title`` is fixed per type, ``status`` is
the HTTP status, ``detail`` says what went wrong this time (never a submitted value:
it may be a secret). ``docs/design.md`` lists the types.

What is not here is a standard exception used with its standard meaning: a
``TimeoutError`` for a wait that ran out, a ``RuntimeError`` or ``NotImplementedError``
for a programming error, a library's own (``KafkaError``) passed through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypedDict


class HooklineError(Exception):
    """The root of every error hookline raises on purpose; made with one message."""

    @property
    def reason(self) -> str:
        """The message: short, fit for a log line or a dead-letter header."""
        return str(self)


class ConfigurationError(HooklineError):
    """Settings or the environment make the requested action impossible."""


class BrokerUnavailable(HooklineError):
    """Kafka did not answer in time."""


class PublishTimeout(BrokerUnavailable):
    """A produce was not acknowledged (acks=all) within its deadline."""


class PoisonMessage(HooklineError):
    """A record that cannot be parsed or validated; it belongs in the dead-letter topic."""

    reason_code = "poison"


class MissingHeader(PoisonMessage):
    reason_code = "missing_header"


class UnknownEventType(PoisonMessage):
    reason_code = "unknown_type"


class InvalidPayload(PoisonMessage):
    reason_code = "invalid_payload"


class SecretError(HooklineError):
    """A stored secret could not be decrypted with the configured key."""


class SignatureRejected(HooklineError):
    """The request is not signed by any current secret of the webhook; the ingress
    answers it with :class:`Unauthorized`."""


class ClientDisconnected(HooklineError):
    """The client went away before its body was read; there is no one to answer."""


class DestinationRefused(HooklineError):
    """The URL, or an address its host resolves to, is not one hookline may call
    (``shared.destinations`` holds the rule)."""


class DestinationUnresolved(DestinationRefused):
    """The host does not resolve; refused like a forbidden address (there is nothing the
    rule could allow), while a caller may still tell it apart from one."""


class InvalidFilter(HooklineError):
    """A binding's filter expression does not compile; the binding then matches nothing."""


class NodeFailed(HooklineError):
    """A node of the local engine failed; ``code`` and ``message`` travel in the run's
    ``error.occurred`` and ``workflow.failed`` events."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- HTTP problems (RFC 9457) ----------------------------------------------------------------

PROBLEM_TYPE_BASE = "https://hookline.dev/problems/"


class FieldError(TypedDict):
    """One failing field of a 422: where (``["body", "url"]``), what, and the error's kind."""

    loc: list[str | int]
    msg: str
    type: str


class HttpProblem(HooklineError):
    """An answer other than success. Subclasses fix ``status``, ``slug`` and ``title``;
    an instance says ``detail`` and may carry field ``errors`` and response ``headers``
    (``Retry-After``, ``WWW-Authenticate``, ``ETag``, ``Allow``)."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)

    @property
    def type_uri(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug

    def document(self) -> dict[str, Any]:
        """The problem document: ``type``, ``title``, ``status``, ``detail`` (and ``errors``)."""
        doc: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            doc["errors"] = self.errors
        return doc


class MalformedRequest(HttpProblem):
    status, slug, title = 400, "malformed", "Malformed request"


class Unauthorized(HttpProblem):
    status, slug, title = 401, "unauthorized", "Unauthorized"


class Forbidden(HttpProblem):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(HttpProblem):
    status, slug, title = 404, "not_found", "Not found"


class MethodNotAllowed(HttpProblem):
    status, slug, title = 405, "method_not_allowed", "Method not allowed"


class RequestTimeout(HttpProblem):
    status, slug, title = 408, "request_timeout", "Request timeout"


class Conflict(HttpProblem):
    status, slug, title = 409, "conflict", "Conflict"


class AlreadyExists(Conflict):
    slug, title = "already_exists", "Already exists"


class SubscriptionGone(Conflict):
    slug, title = "subscription_gone", "Subscription gone"


class NotRedeliverable(Conflict):
    slug, title = "not_redeliverable", "Not redeliverable"


class NotRetryable(Conflict):
    """A dead letter that cannot go back where it came from."""

    slug, title = "not_retryable", "Not retryable"


class IdInUse(Conflict):
    """A request id (``Idempotency-Key``) already names a different request."""

    slug, title = "id_in_use", "Id in use"


class Gone(HttpProblem):
    """What the id named existed, but Kafka's retention has removed it."""

    status, slug, title = 410, "gone", "Gone"


class VersionConflict(HttpProblem):
    status, slug, title = 412, "version_conflict", "Version conflict"


class BodyTooLarge(HttpProblem):
    status, slug, title = 413, "too_large", "Body too large"


class UnsupportedMediaType(HttpProblem):
    status, slug, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(HttpProblem):
    status, slug, title = 422, "invalid", "Validation failed"


class RateLimited(HttpProblem):
    status, slug, title = 429, "rate_limited", "Rate limited"


class InternalError(HttpProblem):
    status, slug, title = 500, "internal", "Internal error"


class Unavailable(HttpProblem):
    status, slug, title = 503, "unavailable", "Service unavailable"


# The problem a bare HTTP status stands for (Starlette's own 404 and 405, and the like).
PROBLEM_FOR_STATUS: dict[int, type[HttpProblem]] = {
    cls.status: cls
    for cls in (
        MalformedRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        Conflict,
        Gone,
        VersionConflict,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        InternalError,
        Unavailable,
    )
}
