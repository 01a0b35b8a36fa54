"""The admin API (``hookline admin``, port ``HOOKLINE_ADMIN_PORT``, 8081): configuration as
events on ``config``; the operations data (deliveries, inbound events, dead letters,
per-subscription health) from an embedded view of the topics; redelivery, recovery,
replays and dead-letter retries. A service of its own,
never exposed to the internet. See ``docs/admin-api.md``.

``create_admin_app(settings)`` builds the Starlette app; ``services.admin.main.run``
serves it.
"""

from __future__ import annotations

from .app import create_admin_app

__all__ = ["create_admin_app"]
