"""The public port against slow and idle clients: deadlines and a connection bound.

The one module of the ingress that reaches into uvicorn's internals, and why:
uvicorn has a keep-alive timeout but no deadline for a request's headers or body,
and its ``limit_concurrency`` answers a plain-text 503 it does not count. A client
that sends a webhook's headers with ``Content-Length: 100000`` and then one byte
every few seconds keeps its connection, and the task reading it, for as long as it
likes. :func:`edge_protocol` subclasses uvicorn's httptools protocol (``http=``
takes a class, a public switch) and overrides its parser callbacks:

- ``data_received``: a request's first bytes arm the header deadline;
- ``on_headers_complete``: the body deadline replaces it, and a connection over
  the bound has its request answered 503 (the protocol's ``app`` is swapped for
  that request, since uvicorn reads ``self.app`` there);
- ``on_message_complete``: the body is in, nothing is armed (the app's own
  deadline, the publish timeout, bounds the answer);
- ``connection_made`` / ``connection_lost``: the open-connection gauge, the bound,
  and a new connection's deadline (uvicorn arms nothing until a first response).

When a deadline passes the protocol writes a 408 problem document and closes the
connection if the request can still be answered; it marks the request's cycle
disconnected (``cycle.disconnected``, ``cycle.message_event``), so the app's pending
``receive()`` returns ``http.disconnect`` and whatever it sends is dropped, and it
tells the app why in ``scope["extensions"]["hookline.request_timeout"]``. A body
still trickling in after the app answered (a 404 never reads it), or one of a request
queued behind another's answer (uvicorn's ``pipeline``), is closed without an answer.
``tests/ingress/test_uvicorn_internals.py`` fails when a uvicorn upgrade moves any
of these.

Not covered here: a TLS handshake is the event loop's, before uvicorn sees the
connection; it is bounded by the loop's 60 s default (uvicorn passes no
``ssl_handshake_timeout``), and such connections are not counted until it is done.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.errors import HttpProblem, RequestTimeout, Unavailable

from . import _metrics as metrics
from ._reply import problem_reply

Phase = Literal["headers", "body"]
#: Where the app learns that its request ran out of time (an ASGI scope extension).
TIMEOUT_EXTENSION = "hookline.request_timeout"
REFUSED_RETRY_AFTER = 1


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Seconds for a request's headers, then its body; connections one process keeps."""

    header_timeout: float
    body_timeout: float
    max_connections: int


def _raw_answer(problem: HttpProblem) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, written by the protocol itself."""
    body = orjson.dumps(problem.document())
    head = [
        f"HTTP/1.1 {problem.status} {problem.title}".encode(),
        b"content-type: application/problem+json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    head += [f"{k.lower()}: {v}".encode("latin-1") for k, v in problem.headers.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def _refuse(scope: Any, receive: Any, send: Any) -> None:
    """The answer on a connection over the bound: 503, then the connection closes."""
    reply = problem_reply(Unavailable("too many open connections", retry_after=REFUSED_RETRY_AFTER))
    reply.headers = (*reply.headers, (b"connection", b"close"))
    metrics.CONNECTIONS_REFUSED.inc()
    await reply.send(send)


class _EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a connection bound."""

    limits: ClassVar[EdgeLimits]
    _answers: ClassVar[dict[Phase, bytes]]

    # The deadline in force (loop time), or None between a body's end and the next request.
    # One timer per connection, moved only when a deadline comes sooner than it: arming
    # and clearing a deadline for each request costs a clock read, not a timer.
    _due: float | None = None
    _timer: asyncio.TimerHandle | None = None
    _timer_at = 0.0
    _phase: Phase = "headers"
    _heard = False  # some bytes of the next request have arrived
    _refused = False
    _counted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        metrics.OPEN_CONNECTIONS.inc()
        self._counted = True
        # ``connections`` is the server's set of open connections, this one included.
        self._refused = len(self.connections) > self.limits.max_connections
        self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            metrics.OPEN_CONNECTIONS.dec()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._due is None:
            # Between requests (a keep-alive connection's next one, or a pipelined one):
            # its headers are due within the deadline, whatever uvicorn's idle timer did.
            self._arm("headers")
        if self._phase == "headers":
            self._heard = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._arm("body")
        if self._refused:
            self.app = _refuse
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._due = None
        self._heard = False
        super().on_message_complete()

    def _arm(self, phase: Phase) -> None:
        seconds = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
        self._phase = phase
        self._due = due = self.loop.time() + seconds
        if self._timer is None or due < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self.loop.call_at(due, self._check), due

    def _check(self) -> None:
        self._timer = None
        if self._due is None:
            return  # the request it was set for arrived in time; none is pending
        if self.loop.time() < self._due:  # a later deadline replaced the one it was set for
            self._timer, self._timer_at = self.loop.call_at(self._due, self._check), self._due
            return
        self._due = None
        self._expired(self._phase)

    def _expired(self, phase: Phase) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if phase == "headers":
            if cycle is not None and not cycle.response_complete:
                # A pipelined request stalls behind one being answered: no answer can
                # overtake that one; the connection closes after it.
                cycle.keep_alive = False
                metrics.REQUEST_TIMEOUTS.labels("headers").inc()
                return
            if self._heard:
                self.transport.write(self._answers["headers"])
            metrics.REQUEST_TIMEOUTS.labels("headers").inc()
            self.transport.close()
            return
        metrics.REQUEST_TIMEOUTS.labels("body").inc()
        # A pipelined request queued behind another's answer (``pipeline``) cannot be
        # answered before it: that connection is only closed.
        if cycle is not None and not cycle.response_started and not self.pipeline:
            extensions = cycle.scope.setdefault("extensions", {})
            extensions[TIMEOUT_EXTENSION] = {"phase": "body", "seconds": self.limits.body_timeout}
            self.transport.write(self._answers["body"])
            # The app's receive() now returns http.disconnect; its sends are dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def edge_protocol(limits: EdgeLimits) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=``, with these limits."""
    answers: dict[Phase, bytes] = {
        "headers": _raw_answer(
            RequestTimeout(
                f"the request's headers did not arrive within {limits.header_timeout:g} s"
            )
        ),
        "body": _raw_answer(
            RequestTimeout(f"the request's body did not arrive within {limits.body_timeout:g} s")
        ),
    }

    class EdgeProtocol(_EdgeProtocol):
        pass

    EdgeProtocol.limits = limits
    EdgeProtocol._answers = answers
    return EdgeProtocol
