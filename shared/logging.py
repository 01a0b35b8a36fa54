"""JSON structured logging: one object per line, secrets never written.

Fields given through ``extra=`` become top-level keys. Any key whose name says
it holds a credential is replaced by ``[redacted]`` before it is written,
whatever the caller passed.

Every record is formatted here, the third-party libraries' (httpx, httpcore,
aiohttp, aiokafka, uvicorn) included, and every text in it (the message with its
arguments, string fields, a traceback) has its URLs redacted: the user info, the
query string and the fragment of a URL, and the query string of a request path,
become ``[redacted]``, as does an ``Authorization`` header's value. Receivers' URLs
often carry a token there. The third-party loggers are held at WARNING unless
``HOOKLINE_LOG_LEVEL`` is DEBUG, and are redacted at DEBUG as at any level.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TextIO

import orjson

from shared import tracing

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_SCALARS = frozenset({int, float, bool, type(None)})
_SENSITIVE = ("secret", "token", "password", "authorization", "signature", "cookie", "api_key")


@lru_cache(maxsize=4096)  # every line asks this of the same few keys
def _is_sensitive(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SENSITIVE)


def is_sensitive(key: str) -> bool:
    """Whether a field named ``key`` holds a credential (and is never written)."""
    return _is_sensitive(key)


# scheme://[user[:password]@]host[:port][/path][?query][#fragment]
_URL = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]{0,15}://)"
    r"(?P<userinfo>[^\s/?#@\"'<>]*@)?"
    r"(?P<rest>[^\s?#\"'<>]*)"
    r"(?P<query>\?[^\s#\"'<>]*)?"
    r"(?P<fragment>#[^\s\"'<>]*)?"
)
# A bare request path with a query string: what an access log or a request line holds.
_PATH_QUERY = re.compile(r"(?<![\w:/?=&%.-])(/[^\s?#\"'<>]*)\?[^\s#\"'<>]*")
_AUTHORIZATION = re.compile(
    r"((?:proxy-)?authorization[\"']?\s*[:=,]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',}]+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def _redact_url(match: re.Match[str]) -> str:
    out = match["head"] + (f"{REDACTED}@" if match["userinfo"] else "") + match["rest"]
    if match["query"]:
        out += f"?{REDACTED}"
    if match["fragment"]:
        out += f"#{REDACTED}"
    return out


def redact_text(text: str) -> str:
    """``text`` with URLs' user info, query strings and fragments, and Authorization
    values, replaced by ``[redacted]``."""
    if "://" in text:
        text = _URL.sub(_redact_url, text)
    if "?" in text:
        text = _PATH_QUERY.sub(rf"\1?{REDACTED}", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(rf"\1{REDACTED}", text)
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with credential-named keys masked, nested dicts included, and
    secrets in URLs removed from every string (see :func:`redact_text`)."""
    if isinstance(value, str):
        return redact_text(value)
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
            "msg": redact_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if _is_sensitive(key):
                entry[key] = "[redacted]"
            else:
                # Numbers are kept as they are (most fields are; walking each of them cost
                # a line a tenth of its time); text may hold a URL's secret, containers a
                # credential-named key.
                kind = type(value)
                if kind in _SCALARS:
                    entry[key] = value
                elif kind is str:
                    entry[key] = redact_text(value)
                else:
                    entry[key] = redact(value)
        if tracing.enabled:
            ids = tracing.log_ids()
            if ids is not None:
                entry["trace_id"], entry["span_id"] = ids
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = redact_text(
                "".join(traceback.format_exception(*record.exc_info))[-4000:]
            )
        if record.stack_info:
            entry["stack"] = redact_text(record.stack_info)[-4000:]
        return orjson.dumps(entry, default=lambda v: redact_text(str(v))).decode()


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
    # The HTTP libraries log every request with its URL at INFO (httpx) or DEBUG: only
    # their warnings, unless the whole service is at DEBUG (redacted there as anywhere).
    # aiokafka is chatty at INFO about rebalances that are routine for us, so it is held
    # there too.
    for name in ("httpx", "httpcore", "aiohttp", "hpack", "h11", "aiokafka"):
        logging.getLogger(name).setLevel(
            logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
        )
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


class RepeatLimiter(logging.Filter):
    """Lets one record per ``interval`` through for each (logger, message template).

    A Kafka client that cannot reach its broker logs the same few lines at every retry,
    hundreds a second across a service's clients during an outage. The first record of
    a kind is written at once; the ones that follow within ``interval`` are counted and
    dropped, and the next one written after it carries the count as ``repeated``.
    Digits in a template count as one (some clients put node ids and ports in the text).
    """

    def __init__(
        self,
        prefixes: tuple[str, ...],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._interval = interval
        self._clock = clock
        self._next: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, _template(str(record.msg)))
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        if len(self._next) > 4096:  # templates are few; this only bounds a pathological case
            self._next.clear()
            self._dropped.clear()
        self._next[key] = now + self._interval
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.repeated = dropped
            record.repeated_within_s = self._interval
        return True


@lru_cache(maxsize=1024)
def _template(text: str) -> str:
    return "".join("#" if c.isdigit() else c for c in text[:200])


def limit_repeats(prefixes: tuple[str, ...] = ("aiokafka",), interval: float = 30.0) -> None:
    """Put a :class:`RepeatLimiter` on every handler of the root logger (call after
    :func:`configure_logging`): the Kafka client's own loggers write at most one line per
    template per ``interval`` while a broker is away."""
    limiter = RepeatLimiter(prefixes, interval)
    for handler in logging.getLogger().handlers:
        handler.addFilter(limiter)
