"""The audit trail of admin actions: who did what to which resource, from where, and how
it ended. One JSON log line per entry on ``hookline.admin.audit`` (never a body or a
secret: a change is known by its digest)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime

log = logging.getLogger("hookline.admin.audit")


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    method: str
    resource: str
    resource_id: str | None
    change_digest: str | None
    at: datetime
    source_ip: str | None
    request_id: str
    outcome: str


class AuditTrail:
    async def record(self, entry: AuditEntry) -> None:
        fields = asdict(entry)
        fields["at"] = entry.at.isoformat()
        log.info("audit", extra={"audit": fields})
