"""What the fault load needs configured: a workflow, webhooks bound to it and not, a
subscription; and the secrets they sign with."""

from __future__ import annotations

from shared.entities import Entity
from testkit.config import subscription, webhook, workflow

GITHUB_SECRET = "fault-github-secret"
RECEIVER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WORKFLOW = "wf-fault"
# Several webhooks of each kind: the ingress keys records by webhook id, so these spread
# the load over the partitions as many webhooks do in production.
BOUND = [f"gh-bound-{i}" for i in range(6)]
UNBOUND = [f"gh-free-{i}" for i in range(6)]


def entities(subscriber_url: str) -> list[Entity]:
    """The workflow, the webhooks (bound and not) and the subscription the load needs."""
    return [
        workflow(WORKFLOW, nodes=[{"id": "step", "kind": "log"}]),
        *[
            webhook(
                name,
                provider="github",
                secrets=[GITHUB_SECRET],
                bindings=[{"workflow_id": WORKFLOW, "events": ["push"]}],
            )
            for name in BOUND
        ],
        *[webhook(name, provider="github", secrets=[GITHUB_SECRET]) for name in UNBOUND],
        subscription("sub-fault", url=subscriber_url, secrets=[RECEIVER_SECRET]),
    ]
