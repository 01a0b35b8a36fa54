"""Webhooks, subscriptions and workflows: create, read, list, replace, patch, rotate, delete.

One :class:`Resource` per entity kind (:mod:`.entity_resources`) holds what
differs between kinds (the models, the list filters, how secrets are made); the
flows are shared:

- a write validates, takes the store's lock, catches the view up, checks
  ``If-Match`` against the current version, builds the new state and, when it
  differs from the current one, writes it with the version bumped;
- a ``PUT`` of the same state writes nothing and answers ``Hookline-Result:
  unchanged`` (that is what makes ``hookline apply`` idempotent);
- a new secret (given, generated or rotated) is encrypted with the entity key
  as associated data, shown whole in that one answer, and only as a hint
  afterwards; rotation keeps the older secrets valid for the grace period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from ulid import ULID

from shared.crypto import constant_time_equals, mask
from shared.entities import Entity, StoredSecret
from shared.errors import AlreadyExists, SecretError

from ._changes import changed_fields, merge_patch
from .context import AdminContext
from .models import ID_RE, ListQuery, SecretInfo, WriteQuery
from .web import (
    check_if_match,
    decode_cursor,
    encode_cursor,
    entity_headers,
    invalid,
    json_response,
    model_response,
    not_found,
    parse,
    parse_query,
    read_json,
)

log = logging.getLogger("hookline.admin")

E = TypeVar("E", bound=Entity)
MAX_STORED_SECRETS = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome(Generic[E]):
    entity: E
    status: int
    result: str  # created | updated | unchanged
    changed: list[str]
    secret: str | None = None


class Resource(Generic[E]):
    """The generic flows; subclasses say what is particular to their kind."""

    kind: type[E]
    plural: str
    label: str
    id_prefix: str
    in_model: type[BaseModel]
    out_model: type[BaseModel]
    list_model: type[BaseModel]
    query_model: type[ListQuery]
    rotate_model: type[BaseModel] | None = None

    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    # -- what subclasses provide ----------------------------------------------------------

    def spec(self, body: Any, current: E | None) -> dict[str, Any]:
        """The entity's fields (id, meta and secrets aside) from a validated body."""
        data: dict[str, Any] = body.model_dump(exclude={"id", "secret"})
        return data

    def matches(self, entity: E, query: Any) -> bool:
        return True

    def out(self, entity: E, secret: str | None = None) -> BaseModel:
        data = entity.model_dump(exclude={"secrets", "encrypted_headers"})
        if "secrets" in self.out_model.model_fields:
            data["secrets"] = secret_infos(getattr(entity, "secrets", []))
            data["secret"] = secret
        return self.out_model.model_validate(data)

    def new_secret(self, entity: E) -> str | None:
        """A generated secret when the entity needs one and has none active, else ``None``."""
        return None

    def patch_base(self, current: E, fields: set[str]) -> dict[str, Any]:
        """``current``'s writable fields as a body would give them (what a patch merges into)."""
        data: dict[str, Any] = current.model_dump(mode="json", include=fields)
        return data

    # -- helpers --------------------------------------------------------------------------

    @property
    def has_secrets(self) -> bool:
        return "secrets" in self.kind.model_fields

    def context(self) -> dict[str, Any]:
        return {"settings": self.ctx.settings}

    def current(self, entity_id: str) -> E | None:
        if not ID_RE.fullmatch(entity_id):
            return None
        return self.ctx.view.get(self.kind, entity_id)

    def require(self, entity_id: str) -> E:
        entity = self.current(entity_id)
        if entity is None:
            raise not_found(f"{self.label} {entity_id!r}")
        return entity

    def respond(self, outcome: Outcome[E]) -> Response:
        headers = entity_headers(
            outcome.entity,
            **{"Hookline-Result": outcome.result},
        )
        if outcome.changed:
            headers["Hookline-Changed-Fields"] = ",".join(outcome.changed)
        if outcome.status == 201:
            headers["Location"] = f"/v1/{self.plural}/{outcome.entity.id}"
        return model_response(
            self.out(outcome.entity, outcome.secret), outcome.status, headers=headers
        )

    def _stored(self, entity_id: str, plain: str, now: datetime) -> StoredSecret:
        key = f"{self.kind.kind}/{entity_id}"
        return StoredSecret(
            ciphertext=self.ctx.box.encrypt(plain, entity_key=key), hint=mask(plain), created_at=now
        )

    def _rotated(
        self, entity_id: str, current: list[StoredSecret], plain: str, now: datetime
    ) -> list[StoredSecret]:
        """``current`` with the active ones expiring after the grace period, and ``plain`` added."""
        grace = now + timedelta(seconds=self.ctx.settings.secret_grace_period)
        kept: list[StoredSecret] = []
        for stored in current:
            if not stored.active(now):
                continue  # expired already: no longer worth keeping
            if stored.expires_at is None or stored.expires_at > grace:
                stored = stored.model_copy(update={"expires_at": grace})
            kept.append(stored)
        kept.append(self._stored(entity_id, plain, now))
        return kept[-MAX_STORED_SECRETS:]

    def _is_current_secret(self, entity: E, plain: str) -> bool:
        try:
            active = self.ctx.view.secrets(entity)  # type: ignore[arg-type]
        except SecretError:
            return False
        return bool(active) and constant_time_equals(active[0], plain)

    # -- the flows ------------------------------------------------------------------------

    def build(
        self, entity_id: str, body: Any, current: E | None, now: datetime
    ) -> tuple[E, str | None]:
        """The new state from ``body`` over ``current``; and the secret shown, if one is new."""
        spec = self.spec(body, current)
        fields: dict[str, Any] = {**spec, "id": entity_id}
        shown: str | None = None
        if current is None:
            fields.update(version=1, created_at=now, updated_at=now)
        else:
            fields.update(
                version=current.version + 1, created_at=current.created_at, updated_at=now
            )
        if self.has_secrets:
            stored: list[StoredSecret] = list(getattr(current, "secrets", [])) if current else []
            given: str | None = getattr(body, "secret", None)
            if given is not None and not (
                current is not None and self._is_current_secret(current, given)
            ):
                stored = self._rotated(entity_id, stored, given, now)
                shown = given
            fields["secrets"] = stored
        entity = self.kind.model_validate(fields)
        if self.has_secrets:
            generated = self.new_secret(entity)
            if generated is not None:
                entity = entity.model_copy(
                    update={"secrets": self._rotated(entity_id, fields["secrets"], generated, now)}
                )
                shown = generated
        return entity, shown

    async def write(
        self,
        request: Request,
        entity_id: str,
        body: Any,
        *,
        create_only: bool = False,
        must_exist: bool = False,
        dry_run: bool = False,
    ) -> Outcome[E]:
        """Write ``body`` (or ``body(current)``, for a patch) over the current state."""
        store = self.ctx.store
        async with store.lock:
            await store.sync()
            current = self.current(entity_id)
            if create_only and current is not None:
                raise AlreadyExists(f"{self.label} {entity_id!r} already exists")
            if must_exist and current is None:
                raise not_found(f"{self.label} {entity_id!r}")
            check_if_match(request, current)
            if callable(body):
                body = body(current)  # computed under the lock, from the latest state
            now = utcnow()
            entity, shown = self.build(entity_id, body, current, now)
            if current is None:
                if not dry_run:
                    entity = await store.put(entity)  # type: ignore[assignment]
                    log.info(f"{self.label} created", extra={"id": entity_id})
                return Outcome(entity, 201, "created", [], None if dry_run else shown)
            changed = changed_fields(current, entity)
            if not changed:
                return Outcome(current, 200, "unchanged", [])
            if not dry_run:
                entity = await store.put(entity)  # type: ignore[assignment]
                log.info(f"{self.label} updated", extra={"id": entity_id, "fields": changed})
            return Outcome(entity, 200, "updated", changed, None if dry_run else shown)

    # -- handlers -------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body = parse(self.in_model, await read_json(request), "body", self.context())
        entity_id = getattr(body, "id", None) or f"{self.id_prefix}{str(ULID()).lower()}"
        return self.respond(await self.write(request, entity_id, body, create_only=True))

    async def get(self, request: Request) -> Response:
        entity = self.require(request.path_params["id"])
        return model_response(self.out(entity), headers=entity_headers(entity))

    async def list_all(self, request: Request) -> Response:
        query = parse_query(request, self.query_model)
        after = ""
        if query.cursor is not None:
            cursor = decode_cursor(query.cursor)
            if not isinstance(cursor, str):
                raise invalid(["query", "cursor"], "not a cursor this API gave")
            after = cursor
        items = sorted(
            (e for e in self.ctx.view.all(self.kind) if e.id > after and self.matches(e, query)),
            key=lambda e: e.id,
        )
        page = items[: query.limit]
        next_cursor = encode_cursor(page[-1].id) if len(items) > query.limit else None
        listing = self.list_model.model_validate(
            {"items": [self.out(e) for e in page], "next_cursor": next_cursor}
        )
        data = listing.model_dump(mode="json", by_alias=True)
        for item in data["items"]:
            item.pop("secret", None)
        return json_response(data)

    async def replace(self, request: Request) -> Response:
        entity_id = path_id(request)
        query = parse_query(request, WriteQuery)
        body = parse(self.in_model, await read_json(request), "body", self.context())
        check_body_id(body, entity_id)
        return self.respond(await self.write(request, entity_id, body, dry_run=query.dry_run))

    async def patch(self, request: Request) -> Response:
        patch = await read_json(request)
        if not isinstance(patch, dict):
            raise invalid(["body"], "a merge patch is a JSON object", "dict_type")
        return await self._patched(request, patch)

    async def enable(self, request: Request) -> Response:
        return await self._patched(request, {"enabled": True})

    async def disable(self, request: Request) -> Response:
        return await self._patched(request, {"enabled": False})

    @property
    def can_be_disabled(self) -> bool:
        return "enabled" in self.kind.model_fields

    async def _patched(self, request: Request, patch: dict[str, Any]) -> Response:
        entity_id = self.require(request.path_params["id"]).id
        if patch.get("id") is not None and patch["id"] != entity_id:
            raise invalid(["body", "id"], "the body's id differs from the path's")
        fields = set(self.in_model.model_fields) - {"secret"}

        def patched(current: E) -> BaseModel:
            base = self.patch_base(current, fields)
            merged = {**merge_patch(base, patch), "id": entity_id}
            return parse(self.in_model, merged, "body", self.context())

        return self.respond(await self.write(request, entity_id, patched, must_exist=True))

    async def delete(self, request: Request) -> Response:
        entity_id = self.require(request.path_params["id"]).id
        store = self.ctx.store
        async with store.lock:
            await store.sync()
            current = self.require(entity_id)
            check_if_match(request, current)
            await store.delete(current)
        log.info(f"{self.label} deleted", extra={"id": entity_id})
        return Response(status_code=204)

    async def rotate(self, request: Request) -> Response:
        assert self.rotate_model is not None
        entity_id = self.require(request.path_params["id"]).id
        raw: Any = {}
        if (await request.body()).strip():
            raw = await read_json(request)
        body = parse(self.rotate_model, raw, "body")
        store = self.ctx.store
        async with store.lock:
            await store.sync()
            current = self.require(entity_id)
            check_if_match(request, current)
            now = utcnow()
            plain: str | None = getattr(body, "secret", None) or self.generate(current)
            assert plain is not None
            stored = self._rotated(entity_id, list(getattr(current, "secrets", [])), plain, now)
            entity = current.model_copy(
                update={"secrets": stored, "version": current.version + 1, "updated_at": now}
            )
            entity = await store.put(entity)  # type: ignore[assignment]
        log.info(f"{self.label} secret rotated", extra={"id": entity_id})
        return self.respond(Outcome(entity, 200, "updated", ["secret"], plain))

    def generate(self, entity: E) -> str | None:
        return None


# -- helpers ---------------------------------------------------------------------------------


def secret_infos(stored: list[StoredSecret]) -> list[SecretInfo]:
    now = utcnow()
    ordered = sorted(stored, key=lambda s: s.created_at, reverse=True)
    return [
        SecretInfo(
            hint=s.hint, created_at=s.created_at, expires_at=s.expires_at, active=s.active(now)
        )
        for s in ordered
    ]


def path_id(request: Request) -> str:
    entity_id: str = request.path_params["id"]
    if not ID_RE.fullmatch(entity_id):
        raise invalid(["path", "id"], "an id is letters, digits, '.', '_', ':' and '-'")
    return entity_id


def check_body_id(body: Any, entity_id: str) -> None:
    given = getattr(body, "id", None)
    if given is not None and given != entity_id:
        raise invalid(["body", "id"], "the body's id differs from the path's")
