"""The ingress benchmark's servers, run in a helper process (``python -m bench.ingress
serve``): the real ingress app, or a bare Starlette handler that answers 202 without doing
anything, on uvicorn or on granian; and the certificate the HTTPS side serves.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

KINDS = ("bare", "hookline")


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def accept(request: Request) -> Response:
        await request.body()
        return JSONResponse({"id": request.headers.get("x-github-delivery")}, status_code=202)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks/{webhook_id}/github", accept, methods=["POST"]),
            Route("/readyz", healthz),
        ]
    )


def _app(kind: str) -> Any:
    from shared.logging import configure_logging
    from shared.settings import Settings

    if kind == "hookline":
        from services.ingress.main import serving_app

        # Production logging: one JSON line per request (written to /dev/null here).
        configure_logging("ingress", "INFO")
        return serving_app(Settings())
    return _bare_app()


def granian_app() -> Any:
    """The app for granian, which imports it by name in its worker process."""
    return _app(os.environ["HOOKLINE_BENCH_KIND"])


def serve(kind: str, port: int, server: str) -> None:
    """``kind`` on ``server``: uvicorn as ``hookline ingress`` runs it (its workers too,
    from ``HOOKLINE_INGRESS_WORKERS``), or granian with the same app."""
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces, Loops

        os.environ["HOOKLINE_BENCH_KIND"] = kind
        Granian(
            "bench._ingress_server:granian_app",
            factory=True,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            loop=Loops.uvloop,
            workers=1,
            log_enabled=False,
        ).serve()
        return
    if kind == "hookline":
        from services.ingress.main import run
        from shared.settings import Settings

        os.environ.update(HOOKLINE_HOST="127.0.0.1", HOOKLINE_INGRESS_PORT=str(port))
        run(Settings())
        return
    import uvicorn
    import uvloop

    config = uvicorn.Config(
        _app(kind),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(uvicorn.Server(config).serve())


def _certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for localhost signed by it: (CA, certificate, key) files."""
    from cryptography.hazmat.primitives import serialization

    from localkafka.security import make_ca, make_server_cert

    ca_key, ca_cert = make_ca("hookline bench CA")
    key, cert = make_server_cert(ca_key, ca_cert, ["localhost"], ["127.0.0.1"])
    files = (folder / "ca.pem", folder / "tls.crt", folder / "tls.key")
    files[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
