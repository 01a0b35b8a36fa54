"""JSON Schemas of every topic message, exported for services in other languages.

``python -m shared.schemas`` rewrites the files; a test fails when they are stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from shared.cloudevents import EXTENSIONS
from shared.entities import ENTITY_TYPES
from shared.messages import TOPIC_MESSAGES, Message

SCHEMA_DIR = Path(__file__).resolve().parent
ALL_MESSAGES: tuple[type[Message], ...] = (*TOPIC_MESSAGES, *ENTITY_TYPES.values())


def schema_of(model: type[Message]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://hookline.dev/schemas/{model.ce_type}.json",
        "x-ce-type": model.ce_type,
        "x-ce-extensions": {
            name: {"type": "string", "description": text} for name, text in EXTENSIONS.items()
        },
        **schema,
    }


def rendered() -> dict[str, bytes]:
    """File name → bytes, exactly as they should be on disk."""
    return {
        f"{model.ce_type}.json": orjson.dumps(
            schema_of(model), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        )
        + b"\n"
        for model in ALL_MESSAGES
    }


def export(folder: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, content in rendered().items():
        path = folder / name
        path.write_bytes(content)
        written.append(path)
    return written
