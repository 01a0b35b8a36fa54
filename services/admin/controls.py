"""A subscription's delivery controls in the admin API: their shapes and their bounds.

``retry_schedule`` (seconds between attempts) holds at most ``HOOKLINE_MAX_RETRY_ATTEMPTS``
- 1 gaps, each above 0 and at most the longest gap of ``HOOKLINE_RETRY_SCHEDULE`` (the
longest retry tier); ``timeout`` is above 0 and at most ``HOOKLINE_MAX_REQUEST_TIMEOUT``.
The bounds are the settings of the admin process; the delivery service holds a
subscription to its own settings again when it sends. ``client_certificate`` is a PEM
chain and its unencrypted PEM key: checked, then the key is stored encrypted, never
shown again (its fingerprint, subject and expiry are).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from shared.certificates import MAX_PEM, check_identity
from shared.crypto import constant_time_equals
from shared.entities import ClientCertificate, StoredSecret, Subscription
from shared.errors import SecretError
from shared.settings import Settings

from .web import parse

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .resources import Resource

    _Base = Resource[Subscription]
else:
    _Base = object

Pem = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PEM)]
Gap = Annotated[float, Field(gt=0, description="seconds")]


class ClientCertificateIn(BaseModel):
    """A client certificate for mutual TLS with the receiver."""

    model_config = ConfigDict(extra="forbid")
    certificate: Pem = Field(description="PEM: the certificate, then any intermediates")
    key: Pem = Field(
        description="PEM: its private key, unencrypted (stored encrypted; never shown again)",
        json_schema_extra={"writeOnly": True},
    )

    @field_validator("key")
    @classmethod
    def _belongs(cls, value: str, info: ValidationInfo) -> str:
        certificate = info.data.get("certificate")
        if certificate is not None:
            check_identity(certificate, value)
        return value


class ClientCertificateOut(BaseModel):
    certificate: str
    fingerprint: str = Field(description="SHA-256 of the certificate (DER), hex")
    subject: str
    not_after: datetime


def check_schedule(value: list[float] | None, settings: Settings | None) -> list[float] | None:
    if value is None or settings is None:
        return value
    most = settings.max_retry_attempts - 1
    if len(value) > most:
        raise ValueError(
            f"at most {most} retries (HOOKLINE_MAX_RETRY_ATTEMPTS is {settings.max_retry_attempts})"
        )
    longest = settings.max_retry_gap
    for gap in value:
        if not 0 < gap <= longest:
            raise ValueError(
                f"each gap is above 0 and at most {longest:g} s, the longest retry tier's "
                "(HOOKLINE_RETRY_SCHEDULE)"
            )
    return value


def check_timeout(value: float | None, settings: Settings | None) -> float | None:
    if value is None or settings is None:
        return value
    if not 0 < value <= settings.max_request_timeout:
        raise ValueError(
            f"the timeout is above 0 and at most {settings.max_request_timeout:g} s "
            "(HOOKLINE_MAX_REQUEST_TIMEOUT)"
        )
    return value


class SubscriptionControls(_Base):
    """What the subscriptions resource adds for the controls: the client certificate's
    stored form (and its write-only key on a patch), and pause and resume."""

    def build(
        self, entity_id: str, body: Any, current: Subscription | None, now: datetime
    ) -> tuple[Subscription, str | None]:
        entity, shown = super().build(entity_id, body, current, now)
        certificate = self._certificate(entity, body, current)
        if certificate is not None:
            entity = entity.model_copy(update={"client_certificate": certificate})
        return entity, shown

    def _certificate(
        self, entity: Subscription, body: Any, current: Subscription | None
    ) -> ClientCertificate | None:
        """The stored form of the body's client certificate: the current one when it is the
        same certificate and key (so applying the same file twice changes nothing)."""
        given: ClientCertificateIn | None = body.client_certificate
        if given is None:
            return None
        held = current.client_certificate if current is not None else None
        entity_key = entity.client_key_entity
        if held is not None and held.certificate == given.certificate:
            try:
                plain = self.ctx.box.decrypt(held.key.ciphertext, entity_key=entity_key)
            except SecretError:
                plain = None
            if plain is not None and constant_time_equals(plain, given.key):
                return held
        facts = check_identity(given.certificate, given.key)
        return ClientCertificate(
            certificate=given.certificate,
            key=StoredSecret(
                ciphertext=self.ctx.box.encrypt(given.key, entity_key=entity_key),
                hint="…",
                created_at=datetime.now(UTC),
            ),
            fingerprint=facts.fingerprint,
            subject=facts.subject,
            not_after=facts.not_after,
        )

    def patch_base(self, current: Subscription, fields: set[str]) -> dict[str, Any]:
        data = super().patch_base(current, fields - {"client_certificate"})
        held = current.client_certificate
        if held is not None and "client_certificate" in fields:
            # Write-only: the key comes back as the body gave it, so an unrelated patch
            # keeps the certificate as it is.
            plain = self.ctx.box.decrypt(held.key.ciphertext, entity_key=current.client_key_entity)
            data["client_certificate"] = {"certificate": held.certificate, "key": plain}
        return data

    async def pause(self, request: Request) -> Response:
        """Deliveries of a paused subscription wait (none is lost) until it is resumed."""
        return await self._set_paused(request, True)

    async def resume(self, request: Request) -> Response:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: Request, paused: bool) -> Response:
        entity_id = self.require(request.path_params["id"]).id
        fields = set(self.in_model.model_fields) - {"secret"}

        def toggled(current: Subscription) -> BaseModel:
            base = {**self.patch_base(current, fields), "paused": paused, "id": entity_id}
            return parse(self.in_model, base, "body", self.context())

        return self.respond(await self.write(request, entity_id, toggled, must_exist=True))
