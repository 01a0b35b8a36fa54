"""The admin API (port ``HOOKLINE_ADMIN_PORT``, 8081): configuration as events on ``config``.

``create_admin_app(settings)`` builds the Starlette app the ``hookline ingress``
process serves on its second port; ``app_from_env`` builds it from the
environment for ``uvicorn --factory``. See ``docs/admin-api.md``.
"""

from __future__ import annotations

from .app import app_from_env, create_admin_app
from .delivery_log import DeliveryLog, DeliveryRecord

__all__ = ["DeliveryLog", "DeliveryRecord", "app_from_env", "create_admin_app"]
