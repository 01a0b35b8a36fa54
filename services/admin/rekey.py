"""``POST /v1/admin/rekey``: every stored secret and header sealed again by the first key.

After a new key is put first in ``HOOKLINE_SECRET_KEY`` (``NEW,OLD``), a rekey
writes a new version of each webhook and subscription whose secrets or header
values are sealed by another key (or by none: plaintext headers of older
records, ``v1:`` ciphertexts without a key id); once it reports nothing failed,
the old key can be removed. Its writes go through the one writer of ``config``
(this API: the lock, the If-Match-free compare under it, the view's catch-up),
one entity at a time so other writes interleave, and it is audited as any admin
mutation. Running it again rewrites nothing (idempotent). Every admin replica
must hold the new key first: a replica still encrypting with the old one would
write records a later rekey has to rewrite again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from shared.crypto import SecretBox
from shared.entities import Entity, Subscription, Webhook
from shared.errors import SecretError

from .context import AdminContext
from .web import model_response


class RekeyOut(BaseModel):
    key_id: str = Field(description="the id of the key everything is now sealed by")
    examined: int = Field(description="webhooks and subscriptions looked at")
    rewritten: int = Field(description="written again, sealed by the first key")
    current: int = Field(description="already sealed by the first key: left as they were")
    failed: list[str] = Field(
        description="entities (kind/id) holding a value no configured key opens"
    )


def resealed(box: SecretBox, entity: Entity) -> Entity | None:
    """``entity`` with every secret and header value sealed by the first key, or ``None``
    when it is already. Raises :class:`SecretError` when a value opens with no key."""
    update: dict[str, object] = {}
    secrets = getattr(entity, "secrets", None)
    if secrets and not all(box.is_current(s.ciphertext) for s in secrets):
        update["secrets"] = [
            s.model_copy(update={"ciphertext": box.reseal(s.ciphertext, entity_key=entity.key)})
            for s in secrets
        ]
    if isinstance(entity, Subscription):
        stale = any(not box.is_current(v) for v in entity.encrypted_headers.values())
        if stale or entity.headers:
            sealed = {
                name: box.reseal(value, entity_key=entity.header_key(name))
                for name, value in entity.encrypted_headers.items()
            }
            for name, plain in entity.headers.items():  # older records: plaintext
                sealed.setdefault(name, box.encrypt(plain, entity_key=entity.header_key(name)))
            update.update(encrypted_headers=sealed, headers={})
    return entity.model_copy(update=update) if update else None


class Rekey:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def run(self, request: Request) -> Response:
        ctx, store = self.ctx, self.ctx.store
        examined = rewritten = current = 0
        failed: list[str] = []
        await store.sync()
        for kind in (Webhook, Subscription):
            for listed in sorted(ctx.view.all(kind), key=lambda e: e.id):
                async with store.lock:
                    await store.sync()
                    entity = ctx.view.get(kind, listed.id)
                    if entity is None:
                        continue  # deleted meanwhile
                    examined += 1
                    try:
                        updated = resealed(ctx.box, entity)
                    except SecretError:
                        failed.append(entity.key)
                        continue
                    if updated is None:
                        current += 1
                        continue
                    await store.put(
                        updated.model_copy(
                            update={"version": entity.version + 1, "updated_at": datetime.now(UTC)}
                        )
                    )
                    rewritten += 1
        out = RekeyOut(
            key_id=ctx.box.primary_key_id,
            examined=examined,
            rewritten=rewritten,
            current=current,
            failed=failed,
        )
        return model_response(out)
