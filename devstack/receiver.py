"""A small receiver for ``hookline dev``: verifies each delivery and prints one line.

It checks the Standard Webhooks signature with the independent
``standardwebhooks`` package, so the demo shows a receiver's view of hookline.
Run: ``python -m devstack.receiver --port 8090`` with ``HOOKLINE_DEV_RECEIVER_SECRET``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_receiver_app(secret: str) -> Starlette:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    verifier = Webhook(secret)
    seen: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            print(f"REJECTED  {request.headers.get('webhook-id')}: {exc}", flush=True)
            return JSONResponse({"error": "bad signature"}, status_code=401)
        event = orjson.loads(body)
        data = event.get("data", {})
        entry = {
            "webhook_id": request.headers.get("webhook-id"),
            "type": event.get("type"),
            "run_id": data.get("run_id"),
            "workflow_id": data.get("workflow_id"),
        }
        seen.append(entry)
        detail = data.get("node_id") or data.get("to") or ""
        print(
            f"verified  {entry['type']:<20} {detail:<10} run={entry['run_id']} "
            f"webhook-id={entry['webhook_id']}",
            flush=True,
        )
        return Response(status_code=204)

    async def recent(_: Request) -> Response:
        return JSONResponse(list(seen))

    return Starlette(
        routes=[
            Route("/hooks/{name}", receive, methods=["POST"]),
            Route("/", recent, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hookline's development receiver")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    secret = os.environ.get("HOOKLINE_DEV_RECEIVER_SECRET")
    if not secret:
        print("HOOKLINE_DEV_RECEIVER_SECRET is not set", file=sys.stderr)
        return 2
    uvicorn.run(
        create_receiver_app(secret),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
