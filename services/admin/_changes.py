"""What a write changes: a merge patch over the current fields, and the fields that differ."""

from __future__ import annotations

from typing import Any

from shared.entities import Entity

META = {"id", "version", "created_at", "updated_at"}


def changed_fields(current: Entity, new: Entity) -> list[str]:
    before = current.model_dump(exclude=META)
    after = new.model_dump(exclude=META)
    names = [k for k in after if before.get(k) != after[k]]
    renamed = {"secrets": "secret", "encrypted_headers": "headers"}
    return list(dict.fromkeys(renamed.get(n, n) for n in names))


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A merge patch at the top level: a present field replaces, ``null`` resets to the default.

    Nested objects (a rate limit, the headers) are replaced whole, not merged, so what a
    patch says about a field is all there is to know about it.
    """
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result
