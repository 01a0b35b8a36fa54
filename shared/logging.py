"""JSON structured logging: one object per line, secrets never written.

Fields given through ``extra=`` become top-level keys. Any key whose name says
it holds a credential is replaced by ``[redacted]`` before it is written,
whatever the caller passed.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TextIO

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_SCALARS = frozenset({str, int, float, bool, type(None)})
_SENSITIVE = ("secret", "token", "password", "authorization", "signature", "cookie", "api_key")


@lru_cache(maxsize=4096)  # every line asks this of the same few keys
def _is_sensitive(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SENSITIVE)


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with credential-named keys masked, nested dicts included."""
    if depth > 6:
        return value
    if isinstance(value, dict):
        return {
            k: "[redacted]" if _is_sensitive(str(k)) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if _is_sensitive(key):
                entry[key] = "[redacted]"
            else:
                # Only containers can hold a credential-named key: a scalar is kept as it is
                # (most fields are; walking each of them cost a line a tenth of its time).
                entry[key] = value if type(value) in _SCALARS else redact(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info))[-4000:]
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(JsonFormatter):
    """One readable line per record for a terminal: time, level, message, then key=value."""

    def format(self, record: logging.LogRecord) -> str:
        entry = orjson.loads(super().format(record))
        head = f"{entry.pop('ts')[11:23]} {entry.pop('level'):<7} {entry.pop('msg')}"
        for key in ("service", "logger", "color_message"):
            entry.pop(key, None)
        exc = entry.pop("exc", None)
        fields = " ".join(f"{k}={v}" for k, v in entry.items())
        line = f"{head}  {fields}" if fields else head
        return f"{line}\n{exc}" if exc else line


def configure_logging(
    service: str, level: str = "INFO", stream: TextIO | None = None, fmt: str = "json"
) -> None:
    """Route every logger to one handler on ``stream`` (stderr by default), JSON or text."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(TextFormatter(service) if fmt == "text" else JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about rebalances that are routine for us.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


class LogEvery:
    """At most one line per ``interval`` seconds for a condition that may repeat fast.

    A fetch that fails, or a write the broker will not take, can fail hundreds of times
    a second; the first failure is always told, then one line per interval saying how
    many were left out in between.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._next = 0.0
        self._left_out = 0

    def due(self) -> int | None:
        """The number of occurrences left out since the last line, when one is due now;
        None when this one is to be left out too."""
        now = self._clock()
        if now < self._next:
            self._left_out += 1
            return None
        self._next = now + self._interval
        left_out, self._left_out = self._left_out, 0
        return left_out
