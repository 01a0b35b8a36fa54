"""The admin API (``hookline admin``, port ``HOOKLINE_ADMIN_PORT``, 8081): configuration as
events on ``config``, the delivery log, redelivery and recovery. A service of its own,
never exposed to the internet. See ``docs/admin-api.md``.

``create_admin_app(settings)`` builds the Starlette app; ``services.admin.main.run``
serves it.
"""

from __future__ import annotations

from .app import create_admin_app
from .delivery_log import DeliveryLog, DeliveryRecord

__all__ = ["DeliveryLog", "DeliveryRecord", "create_admin_app"]
