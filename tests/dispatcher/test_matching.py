"""Binding patterns, filters and run ids: pure rules, no broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.dispatcher import (
    RUN_NAMESPACE,
    filter_matches,
    jmespath_truthy,
    matching_bindings,
    run_id_for,
)
from shared.entities import Binding, event_pattern_matches
from shared.messages import WebhookReceived


def received(event_type: str = "push", payload: Any = None, **fields: Any) -> WebhookReceived:
    return WebhookReceived(
        webhook_id=fields.pop("webhook_id", "gh-main"),
        provider=fields.pop("provider", "github"),
        event_type=event_type,
        provider_event_id=fields.pop("provider_event_id", "d-1"),
        received_at=datetime.now(UTC),
        payload=payload if payload is not None else {},
        **fields,
    )


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "push", True),
        ("*", "pull_request.opened", True),
        ("push", "push", True),
        ("push", "push.created", False),
        ("push", "pull_request", False),
        ("pull_request.*", "pull_request.opened", True),
        ("pull_request.*", "pull_request", True),
        ("pull_request.*", "pull_request_review.submitted", False),
        ("pull_request.opened", "pull_request.opened", True),
        ("pull_request.opened", "pull_request.closed", False),
        ("issue*", "issues.opened", True),
        ("Push", "push", False),
    ],
)
def test_event_pattern_matches_event_type(pattern: str, event_type: str, expected: bool) -> None:
    assert event_pattern_matches(pattern, event_type) is expected
    assert Binding(workflow_id="wf", events=[pattern]).matches_event(event_type) is expected


PUSH_MAIN = {"ref": "refs/heads/main", "commits": [{"id": "a"}], "repository": {"name": "api"}}
PUSH_TAG = {"ref": "refs/tags/v1", "commits": [], "repository": {"name": "web"}}


@pytest.mark.parametrize(
    ("expression", "payload", "expected"),
    [
        (None, PUSH_MAIN, True),
        ("", PUSH_MAIN, True),
        ("payload.ref == 'refs/heads/main'", PUSH_MAIN, True),
        ("payload.ref == 'refs/heads/main'", PUSH_TAG, False),
        ("starts_with(payload.ref, 'refs/tags/')", PUSH_TAG, True),
        ("length(payload.commits) > `0`", PUSH_MAIN, True),
        ("length(payload.commits) > `0`", PUSH_TAG, False),
        ("payload.commits", PUSH_TAG, False),  # empty list is false
        ("payload.commits", PUSH_MAIN, True),
        ("payload.missing", PUSH_MAIN, False),  # null is false
        ("`0`", PUSH_MAIN, True),  # numbers are true in JMESPath
        ("payload.repository.name == 'api' && event_type == 'push'", PUSH_MAIN, True),
        ("contains(['api', 'web'], payload.repository.name)", PUSH_TAG, True),
        ("provider == 'github' && webhook_id == 'gh-main'", PUSH_MAIN, True),
        ("headers.\"x-github-event\" == 'push'", PUSH_MAIN, True),
        # Invalid expressions and runtime type errors never raise: no match.
        ("payload.ref ==", PUSH_MAIN, False),
        ("[[[", PUSH_MAIN, False),
        ("length(payload.ref.nope.`1`)", PUSH_MAIN, False),
        ("abs(payload.ref)", PUSH_MAIN, False),
    ],
)
def test_filter_decides_match(expression: str | None, payload: Any, expected: bool) -> None:
    document = {
        "event_type": "push",
        "payload": payload,
        "headers": {"x-github-event": "push"},
        "webhook_id": "gh-main",
        "provider": "github",
    }
    assert filter_matches(expression, document) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        ("", False),
        ([], False),
        ({}, False),
        (0, True),
        ("x", True),
        ([0], True),
        (True, True),
    ],
)
def test_jmespath_truthiness(value: Any, expected: bool) -> None:
    assert jmespath_truthy(value) is expected


@pytest.mark.parametrize(
    ("bindings", "event_type", "payload", "expected"),
    [
        ([Binding(workflow_id="a", events=["push"])], "push", PUSH_MAIN, ["a"]),
        ([Binding(workflow_id="a", events=["push"])], "issues.opened", PUSH_MAIN, []),
        (
            [
                Binding(workflow_id="ci", events=["push", "pull_request.*"]),
                Binding(
                    workflow_id="release",
                    events=["push"],
                    filter="starts_with(payload.ref, 'refs/tags/')",
                ),
                Binding(workflow_id="all", events=["*"]),
            ],
            "push",
            PUSH_MAIN,
            ["ci", "all"],
        ),
        (
            [
                Binding(workflow_id="ci", events=["push"]),
                Binding(
                    workflow_id="release",
                    events=["push"],
                    filter="starts_with(payload.ref, 'refs/tags/')",
                ),
            ],
            "push",
            PUSH_TAG,
            ["ci", "release"],
        ),
        # One run per workflow even when two bindings name it.
        (
            [Binding(workflow_id="a", events=["push"]), Binding(workflow_id="a", events=["*"])],
            "push",
            PUSH_MAIN,
            ["a"],
        ),
        # A broken filter costs only its own binding.
        (
            [
                Binding(workflow_id="bad", events=["*"], filter="(("),
                Binding(workflow_id="ok", events=["*"]),
            ],
            "push",
            PUSH_MAIN,
            ["ok"],
        ),
        ([], "push", PUSH_MAIN, []),
    ],
)
def test_matching_bindings_selects_workflows(
    bindings: list[Binding], event_type: str, payload: Any, expected: list[str]
) -> None:
    matched = matching_bindings(bindings, received(event_type, payload))
    assert [b.workflow_id for b in matched] == expected


def test_run_id_is_uuid5_of_webhook_event_and_workflow() -> None:
    first = run_id_for("gh-main", "delivery-1", "wf-ci")
    assert first == run_id_for("gh-main", "delivery-1", "wf-ci")
    parsed = uuid.UUID(first)
    assert parsed.version == 5
    assert first == str(uuid.uuid5(RUN_NAMESPACE, '["gh-main","delivery-1","wf-ci"]'))
    others = {
        run_id_for("gh-other", "delivery-1", "wf-ci"),
        run_id_for("gh-main", "delivery-2", "wf-ci"),
        run_id_for("gh-main", "delivery-1", "wf-cd"),
        # Parts that would collide if simply concatenated stay distinct.
        run_id_for("gh-main", "delivery-1w", "f-ci"),
    }
    assert first not in others and len(others) == 4
