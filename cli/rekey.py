"""``hookline rekey``: ask the admin API to seal every stored secret by the first key.

It goes through the admin API (``POST /v1/admin/rekey``) rather than to Kafka
itself, so ``config`` keeps one writer and the rekey is in the audit trail. It
needs an admin token (``HOOKLINE_ADMIN_TOKEN`` on the machine it runs on).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import httpx

from shared.errors import ConfigurationError, HooklineError
from shared.settings import Settings


def main(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    tokens = [t.get_secret_value() for t in settings.admin_token if t.get_secret_value()]
    if not tokens:
        raise ConfigurationError("hookline rekey needs HOOKLINE_ADMIN_TOKEN (an admin token)")
    url = (getattr(args, "url", None) or f"http://127.0.0.1:{settings.admin_port}").rstrip("/")
    try:
        response = httpx.post(
            f"{url}/v1/admin/rekey",
            headers={"Authorization": f"Bearer {tokens[0]}"},
            timeout=max(60.0, settings.publish_timeout * 4),
        )
    except httpx.HTTPError as exc:
        raise HooklineError(f"cannot reach the admin API at {url}: {exc}") from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise HooklineError(f"rekey refused ({response.status_code}): {detail}")
    report = response.json()
    stream.write(
        f"key {report['key_id']}: {report['examined']} examined, {report['rewritten']} "
        f"rewritten, {report['current']} already current, {len(report['failed'])} failed\n"
    )
    for key in report["failed"]:
        stream.write(f"  failed: {key} (no configured key opens it)\n")
    if report["failed"]:
        stream.write("keep the old key until these are fixed (rotate their secrets)\n")
    return 1 if report["failed"] else 0
