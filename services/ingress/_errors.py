"""The ingress' refusals: each one maps to one HTTP status and a short reason."""

from __future__ import annotations

from shared.errors import HooklineError


class Refused(HooklineError):
    """A request the ingress answers with a 4xx (or 503); ``outcome`` labels the metrics."""

    status_code = 400
    outcome = "malformed"

    def __init__(self, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class MalformedRequest(Refused):
    status_code = 400
    outcome = "malformed"


class Unauthorized(Refused):
    status_code = 401
    outcome = "unauthorized"


class Forbidden(Refused):
    status_code = 403
    outcome = "forbidden"


class UnknownWebhook(Refused):
    status_code = 404
    outcome = "not_found"


class BodyTooLarge(Refused):
    status_code = 413
    outcome = "too_large"


class UnsupportedMediaType(Refused):
    status_code = 415
    outcome = "unsupported_media_type"


class RateLimited(Refused):
    status_code = 429
    outcome = "rate_limited"


class Unavailable(Refused):
    status_code = 503
    outcome = "unavailable"
