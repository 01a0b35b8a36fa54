"""What ``services/ingress/_edge.py`` assumes of uvicorn's httptools protocol; these fail
when a uvicorn upgrade moves it (the deadlines would then silently stop, or the 503 past
the bound would answer the app instead). ``test_edge.py`` holds the behaviour."""

from __future__ import annotations

import asyncio
import inspect

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from services.ingress._edge import EdgeLimits, _EdgeProtocol, edge_protocol

OVERRIDDEN = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_headers_complete",
    "on_message_complete",
)


def test_the_callbacks_the_edge_protocol_overrides_are_uvicorns_own() -> None:
    for name in OVERRIDDEN:
        assert name in HttpToolsProtocol.__dict__, f"uvicorn no longer defines {name}"
        assert name in _EdgeProtocol.__dict__
    # The request's app is read from the protocol in on_headers_complete: swapping it
    # there is how a connection over the bound gets the 503 instead of the app.
    assert "self.app" in inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "self.connections" in inspect.getsource(HttpToolsProtocol.connection_made)
    # Pipelined requests wait in ``pipeline``; a deadline must not answer over another's.
    assert "self.pipeline" in inspect.getsource(HttpToolsProtocol.__init__)
    # uvicorn's keep-alive timer is disarmed by any data and armed again only after a
    # response: without the header deadline a trickling client is never timed out.
    assert "_unset_keepalive_if_required" in inspect.getsource(HttpToolsProtocol.data_received)


def test_a_request_cycle_has_the_state_a_deadline_reads_and_sets() -> None:
    cycle = RequestResponseCycle(
        scope={},  # type: ignore[typeddict-item]
        transport=None,  # type: ignore[arg-type]
        flow=None,  # type: ignore[arg-type]
        logger=None,  # type: ignore[arg-type]
        access_logger=None,  # type: ignore[arg-type]
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    for name in ("response_started", "response_complete", "disconnected", "keep_alive"):
        assert isinstance(getattr(cycle, name), bool), name
    assert isinstance(cycle.message_event, asyncio.Event)
    assert "extensions" not in cycle.scope  # set by the deadline, read by the app
    # receive() answers http.disconnect once the cycle is marked disconnected.
    assert "self.disconnected" in inspect.getsource(RequestResponseCycle.receive)


def test_uvicorn_takes_the_protocol_class_as_is() -> None:
    protocol = edge_protocol(EdgeLimits(header_timeout=1, body_timeout=1, max_connections=1))
    config = uvicorn.Config(lambda *a: None, http=protocol, lifespan="off", log_config=None)
    config.load()
    assert config.http_protocol_class is protocol
