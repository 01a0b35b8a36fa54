"""JSON logs: one object per line, credential-named fields redacted at any depth."""

from __future__ import annotations

import io
import logging

import orjson

from shared.logging import configure_logging


def test_log_lines_are_json_and_secrets_are_redacted():
    stream = io.StringIO()
    configure_logging("test", stream=stream)
    logging.getLogger("t").info(
        "hello", extra={"webhook_id": "w1", "secret": "s3", "headers": {"Authorization": "x"}}
    )
    entry = orjson.loads(stream.getvalue().splitlines()[-1])
    assert entry["msg"] == "hello" and entry["service"] == "test"
    assert entry["webhook_id"] == "w1"
    assert entry["secret"] == "[redacted]"
    assert entry["headers"] == {"Authorization": "[redacted]"}
    logging.getLogger().handlers.clear()


def test_text_format_is_one_readable_line_and_still_redacts():
    stream = io.StringIO()
    configure_logging("test", stream=stream, fmt="text")
    logging.getLogger("t").warning("hello there", extra={"webhook_id": "w1", "token": "tok"})
    line = stream.getvalue().splitlines()[-1]
    assert "WARNING" not in line and "warning hello there" in line
    assert "webhook_id=w1" in line and "token=[redacted]" in line
    assert "tok " not in line + " "
    logging.getLogger().handlers.clear()
