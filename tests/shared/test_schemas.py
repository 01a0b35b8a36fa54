"""The exported JSON Schemas match the models (run ``make schemas`` when this fails)."""

from __future__ import annotations

import orjson

from shared.schemas import ALL_MESSAGES, SCHEMA_DIR, rendered


def test_exported_schemas_are_current():
    expected = rendered()
    on_disk = {p.name: p.read_bytes() for p in SCHEMA_DIR.glob("*.json")}
    stale = sorted(n for n in expected if on_disk.get(n) != expected[n])
    extra = sorted(set(on_disk) - set(expected))
    assert not stale and not extra, f"stale: {stale}, unexpected: {extra}; run `make schemas`"


def test_every_message_has_a_schema_naming_its_ce_type():
    names = {orjson.loads(b)["x-ce-type"] for b in rendered().values()}
    assert names == {m.ce_type for m in ALL_MESSAGES}


def test_status_changed_schema_uses_the_wire_name_from():
    schema = orjson.loads((SCHEMA_DIR / "status.changed.json").read_bytes())
    assert "from" in schema["properties"] and "from_" not in schema["properties"]
