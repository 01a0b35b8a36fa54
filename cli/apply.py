"""``hookline apply -f FILE``: make the configuration what a YAML file says.

The file lists ``workflows``, ``webhooks`` and ``subscriptions`` (each entry
with an ``id``, and the fields of the admin API's bodies). Strings may name
environment variables as ``${NAME}`` or ``${NAME:-default}`` (``$${`` is a
literal ``${``), so secrets stay out of git.

Each entry is sent as a ``PUT`` to the admin API, which compares it with the
current state and writes only what differs (a secret the file leaves out is
kept; one it names is compared with the current one, decrypted server-side).
So a second run reports every entity ``unchanged`` and writes nothing.
``--dry-run`` asks the same with ``?dry_run=true`` and writes nothing;
``--prune`` deletes what the file no longer lists.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from shared.errors import ConfigurationError, HooklineError
from shared.settings import Settings

KINDS = ("workflows", "webhooks", "subscriptions")  # applied in this order, pruned in reverse
SINGULAR = {"workflows": "workflow", "webhooks": "webhook", "subscriptions": "subscription"}
_VARIABLE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Entry:
    kind: str
    id: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{SINGULAR[self.kind]}/{self.id}"


def substitute(value: Any, env: Mapping[str, str], missing: set[str]) -> Any:
    """``value`` with ``${NAME}`` replaced in every string; unknown names go to ``missing``."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            escaped, name, default = match.groups()
            if escaped:
                return match.group(0)[1:]
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.add(name)
            return ""

        return _VARIABLE.sub(replace, value)
    if isinstance(value, list):
        return [substitute(v, env, missing) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, env, missing) for k, v in value.items()}
    return value


def load(path: Path, env: Mapping[str, str]) -> list[Entry]:
    """The file's entries, variables substituted; :class:`ConfigurationError` when unusable."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not YAML: {exc}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigurationError(f"{path}: expected a mapping of {', '.join(KINDS)}")
    unknown = set(document) - {*KINDS, "version"}
    if unknown:
        raise ConfigurationError(f"{path}: unknown sections {sorted(unknown)}; expected {KINDS}")
    missing: set[str] = set()
    entries: list[Entry] = []
    for kind in KINDS:
        items = document.get(kind) or []
        if not isinstance(items, list):
            raise ConfigurationError(f"{path}: {kind} must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
                raise ConfigurationError(f"{path}: {kind}[{i}] needs an id")
            body = substitute(item, env, missing)
            entries.append(Entry(kind, item["id"], body))
    if missing:
        raise ConfigurationError(
            f"{path} names environment variables that are not set: {', '.join(sorted(missing))}"
        )
    seen = Counter((e.kind, e.id) for e in entries)
    twice = [f"{SINGULAR[k]}/{i}" for (k, i), n in seen.items() if n > 1]
    if twice:
        raise ConfigurationError(f"{path}: listed more than once: {', '.join(twice)}")
    return entries


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    # An RFC 9457 problem document: what went wrong, and for a 422 each failing field.
    detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
    errors = body.get("errors") if isinstance(body, dict) else None
    parts = [f"HTTP {response.status_code}: {detail}"]
    for error in errors or []:
        loc = ".".join(str(p) for p in error.get("loc", [])[1:]) or "body"
        parts.append(f"{loc}: {error.get('msg')}")
    return "; ".join(parts)


class Applier:
    def __init__(self, client: httpx.Client, out: TextIO, *, dry_run: bool) -> None:
        self.client = client
        self.out = out
        self.dry_run = dry_run
        self.counts: Counter[str] = Counter()
        self.failed = 0

    def say(self, verb: str, name: str, note: str = "") -> None:
        self.out.write(f"{verb:<10} {name}{'  ' + note if note else ''}\n")

    def put(self, entry: Entry) -> None:
        params = {"dry_run": "true"} if self.dry_run else None
        response = self.client.put(f"/v1/{entry.kind}/{entry.id}", json=entry.body, params=params)
        if response.status_code not in (200, 201):
            self.failed += 1
            self.say("failed", entry.name, _error_text(response))
            return
        result = response.headers.get("hookline-result", "updated")
        self.counts[result] += 1
        note = ""
        if changed := response.headers.get("hookline-changed-fields"):
            note = f"({changed.replace(',', ', ')})"
        self.say(result if not self.dry_run else f"{result}?", entry.name, note)
        generated = response.json().get("secret")
        if generated and "secret" not in entry.body and not self.dry_run:
            # A secret hookline generated is shown once; this is that once.
            self.out.write(
                f"           secret: {generated}  (shown once; keep it for the receiver)\n"
            )

    def ids(self, kind: str) -> list[str]:
        found: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            response = self.client.get(f"/v1/{kind}", params=params)
            if response.status_code != 200:
                raise HooklineError(f"listing {kind} failed: {_error_text(response)}")
            page = response.json()
            found += [item["id"] for item in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def prune(self, entries: list[Entry]) -> None:
        listed = {(e.kind, e.id) for e in entries}
        for kind in reversed(KINDS):
            for entity_id in self.ids(kind):
                if (kind, entity_id) in listed:
                    continue
                name = f"{SINGULAR[kind]}/{entity_id}"
                if self.dry_run:
                    self.counts["deleted"] += 1
                    self.say("deleted?", name)
                    continue
                response = self.client.delete(f"/v1/{kind}/{entity_id}")
                if response.status_code in (204, 404):
                    self.counts["deleted"] += 1
                    self.say("deleted", name)
                else:
                    self.failed += 1
                    self.say("failed", name, _error_text(response))


def main(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    tokens = [t.get_secret_value() for t in settings.admin_token if t.get_secret_value()]
    if not tokens:
        raise ConfigurationError("hookline apply needs HOOKLINE_ADMIN_TOKEN (an admin API token)")
    entries = load(Path(args.file), os.environ)
    url = (getattr(args, "url", None) or f"http://127.0.0.1:{settings.admin_port}").rstrip("/")
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            applier = Applier(client, stream, dry_run=bool(args.dry_run))
            for entry in entries:
                applier.put(entry)
            if args.prune:
                applier.prune(entries)
    except httpx.HTTPError as exc:
        raise HooklineError(f"cannot reach the admin API at {url}: {exc}") from exc
    counts = applier.counts
    summary = ", ".join(
        f"{counts[k]} {k}"
        for k in ("created", "updated", "unchanged", "deleted")
        if counts[k] or k == "unchanged"
    )
    if applier.failed:
        summary += f", {applier.failed} failed"
    stream.write(f"{summary}{' (dry run: nothing written)' if args.dry_run else ''}\n")
    return 1 if applier.failed else 0
