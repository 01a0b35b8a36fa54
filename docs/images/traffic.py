"""The run's entities and its traffic: signed GitHub pushes and Standard Webhooks posts,
some badly signed or for an unknown webhook, to three subscribers of differing health."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any

import httpx

from shared.standard_webhooks import sign
from testkit import FIXTURES
from testkit.config import put_entities, subscription, webhook, workflow
from testkit.receivers import Receiver

GITHUB_SECRET = "screenshot-github"
GENERIC_SECRET = "whsec_" + "c2NyZWVuc2hvdC1nZW5lcmljLXNlY3JldA=="
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def entities(bootstrap: str, topics: Any, receiver: Receiver) -> None:
    await put_entities(
        bootstrap,
        topics.config,
        workflow(
            "wf-ci",
            nodes=[
                {"id": "checkout", "kind": "log"},
                {"id": "build", "kind": "sleep", "config": {"seconds": 0.05}},
                {"id": "notify", "kind": "log"},
            ],
        ),
        webhook(
            "gh-main",
            provider="github",
            secrets=[GITHUB_SECRET],
            bindings=[{"workflow_id": "wf-ci", "events": ["push"]}],
        ),
        webhook(
            "billing",
            provider="generic",
            secrets=[GENERIC_SECRET],
            bindings=[{"workflow_id": "wf-ci", "events": ["invoice.paid"]}],
        ),
        subscription("sub-ok", url=receiver.url("/ok"), secrets=[RECEIVER_SECRET], events=["*"]),
        subscription(
            "sub-flaky",
            url=receiver.url("/flaky"),
            secrets=[RECEIVER_SECRET],
            events=["workflow.completed", "status.changed"],
        ),
        subscription(
            "sub-down",
            url=receiver.url("/down"),
            secrets=[RECEIVER_SECRET],
            events=["workflow.completed"],
        ),
    )


def _github(body: bytes, good: bool) -> dict[str, str]:
    secret = GITHUB_SECRET if good else "wrong"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": f"sha256={digest}",
    }


def _generic(body: bytes) -> dict[str, str]:
    msg = f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    return {
        "content-type": "application/json",
        "x-webhook-event": "invoice.paid",
        "webhook-id": msg,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(msg, now, body, GENERIC_SECRET),
    }


async def traffic(base: str, receiver: Receiver, seconds: float) -> None:
    push = (FIXTURES / "github" / "push" / "payload.json").read_bytes()
    invoice = json.dumps({"type": "invoice.paid", "data": {"amount": 4200}}).encode()
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while (elapsed := time.monotonic() - started) < seconds:
            # The load rises and falls; the third subscriber is down in the middle third.
            down = seconds / 3 < elapsed < 2 * seconds / 3
            receiver.script("/down", [503] * 1000 if down else [])
            receiver.script("/flaky", [500] if random.random() < 0.35 else [])
            rate = 4 + 3 * abs(((elapsed / 60) % 2) - 1)
            roll = random.random()
            if roll < 0.70:
                await http.post(
                    "/webhooks/gh-main/github", content=push, headers=_github(push, True)
                )
            elif roll < 0.88:
                await http.post("/webhooks/billing", content=invoice, headers=_generic(invoice))
            elif roll < 0.96:
                await http.post(
                    "/webhooks/gh-main/github", content=push, headers=_github(push, False)
                )
            else:
                await http.post("/webhooks/nope/github", content=push, headers=_github(push, True))
            await asyncio.sleep(1 / rate)
