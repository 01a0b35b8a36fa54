"""Fixtures for the end-to-end tests."""

from __future__ import annotations

import os

import pytest

from testkit.secure import SecureBroker, session_secure_broker


@pytest.fixture(scope="session")
def secure_broker(request: pytest.FixtureRequest) -> SecureBroker:
    """A SASL_SSL broker with the ACL table enforced (one for the whole session)."""
    if os.environ.get("HOOKLINE_TESTS_NO_KAFKA"):
        pytest.skip("no Kafka broker in this session")
    return session_secure_broker(request.addfinalizer)
