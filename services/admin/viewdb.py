"""The admin service's embedded database: a view of Kafka that is rebuilt from the topics.

Why SQLite (WAL mode): it is in the standard library, it is one file per replica
that needs no server of its own, WAL lets readers run while the writer writes,
and its indexes answer the filtered, newest-first lists the API serves. Kafka
stays the only source of truth: the file holds rows *and* the offsets they were
read up to, written in one transaction, so a restart resumes where it stopped
and a lost or foreign file is simply made again from the topics.

Threads: one writer thread owns the one write connection (the materializer's
batches, retention deletes); reads run on a small pool whose threads each keep
a connection of their own. Nothing touches SQLite on the event loop.

Lifecycle: ``async with ViewDatabase(path)`` opens the file (creating it, or
deleting and recreating one of another schema version: a view has nothing to
migrate, only to rebuild), then serves :meth:`write` and :meth:`read`; leaving
the context closes every connection and stops the threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from shared.errors import ConfigurationError

log = logging.getLogger("hookline.admin.view")

T = TypeVar("T")

# Bump when the tables change: an older file is then dropped and rebuilt from Kafka.
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE offsets (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition)
) WITHOUT ROWID;

CREATE TABLE deliveries (
  delivery_id TEXT PRIMARY KEY, message_id TEXT NOT NULL, subscription_id TEXT NOT NULL,
  event_type TEXT NOT NULL, workflow_id TEXT, run_id TEXT,
  source_topic TEXT, source_partition INTEGER, source_offset INTEGER, body TEXT,
  outcome TEXT NOT NULL, attempt_count INTEGER NOT NULL, status_code INTEGER,
  next_attempt_at INTEGER, first_attempt_at INTEGER NOT NULL, last_attempt_at INTEGER NOT NULL
);
CREATE INDEX deliveries_by_time ON deliveries (last_attempt_at, delivery_id);
CREATE INDEX deliveries_by_subscription
  ON deliveries (subscription_id, last_attempt_at, delivery_id);
CREATE INDEX deliveries_by_outcome ON deliveries (outcome, last_attempt_at, delivery_id);
-- A subscription's failures is the list operators ask for most: one seek, in order.
CREATE INDEX deliveries_by_subscription_outcome
  ON deliveries (subscription_id, outcome, last_attempt_at, delivery_id);
CREATE INDEX deliveries_by_workflow ON deliveries (workflow_id, last_attempt_at, delivery_id);
CREATE INDEX deliveries_by_run ON deliveries (run_id);

CREATE TABLE attempts (
  delivery_id TEXT NOT NULL, subscription_id TEXT NOT NULL, attempt INTEGER NOT NULL,
  outcome TEXT NOT NULL, status_code INTEGER, error TEXT, latency_ms REAL,
  response_excerpt TEXT, next_attempt_at INTEGER, attempted_at INTEGER NOT NULL, url TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
CREATE INDEX attempts_by_subscription ON attempts (subscription_id, attempted_at);

CREATE TABLE inbound_events (
  id TEXT PRIMARY KEY, partition INTEGER NOT NULL, offset INTEGER NOT NULL, ce_id TEXT,
  webhook_id TEXT NOT NULL, provider TEXT NOT NULL, event_type TEXT NOT NULL,
  provider_event_id TEXT NOT NULL, received_at INTEGER NOT NULL, source_ip TEXT,
  content_type TEXT, headers TEXT NOT NULL, payload_encoding TEXT, payload TEXT,
  verification TEXT, replay_id TEXT, replay_of TEXT, duplicate_of TEXT
);
CREATE INDEX inbound_by_time ON inbound_events (received_at, id);
CREATE INDEX inbound_by_webhook ON inbound_events (webhook_id, received_at, id);
CREATE INDEX inbound_by_provider_id ON inbound_events (webhook_id, provider_event_id);
CREATE INDEX inbound_by_replay ON inbound_events (replay_id, replay_of);

CREATE TABLE runs (
  run_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, inbound_event_id TEXT NOT NULL,
  webhook_id TEXT NOT NULL, provider_event_id TEXT NOT NULL, replay_id TEXT,
  status TEXT NOT NULL, queued_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
);
CREATE INDEX runs_by_inbound ON runs (inbound_event_id);
CREATE INDEX runs_by_replay ON runs (replay_id);

CREATE TABLE dead_letters (
  id TEXT PRIMARY KEY, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
  source_topic TEXT, source_partition INTEGER, source_offset INTEGER,
  reason TEXT, code TEXT, service TEXT, key TEXT, headers TEXT NOT NULL,
  excerpt TEXT, size INTEGER NOT NULL, dead_lettered_at INTEGER NOT NULL
);
CREATE INDEX dead_letters_by_time ON dead_letters (dead_lettered_at, id);
CREATE INDEX dead_letters_by_source ON dead_letters (source_topic, dead_lettered_at, id);
CREATE INDEX dead_letters_by_code ON dead_letters (code, dead_lettered_at, id);

CREATE TABLE operations (
  key TEXT PRIMARY KEY, id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
  requested_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, dead_letter_id TEXT,
  state TEXT NOT NULL
);
CREATE INDEX operations_by_dead_letter ON operations (dead_letter_id);

CREATE TABLE audit (
  id TEXT PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, role TEXT,
  action TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, resource TEXT NOT NULL,
  resource_id TEXT, change_digest TEXT NOT NULL, source_ip TEXT, request_id TEXT NOT NULL,
  outcome TEXT NOT NULL, status INTEGER NOT NULL, count INTEGER NOT NULL
);
CREATE INDEX audit_by_time ON audit (at, id);
CREATE INDEX audit_by_actor ON audit (actor, at, id);
CREATE INDEX audit_by_resource ON audit (resource, resource_id, at, id);
CREATE INDEX audit_by_outcome ON audit (outcome, at, id);
"""


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a time without a zone is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def from_us(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1_000_000, UTC)


def _connect(path: Path, cache_kib: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable enough for a view: a lost tail is read again from Kafka, since
    # the offsets it would have stored are lost with it.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class ViewDatabase:
    """One SQLite file; a writer thread and a pool of reader threads."""

    def __init__(self, path: Path, *, readers: int = 2, cache_kib: int = 16 * 1024) -> None:
        self.path = path
        self._readers = readers
        self._cache_kib = cache_kib
        self._writer: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._owner: int | None = None

    def _claim(self) -> None:
        """Hold the file for this process alone: two replicas writing one view would each
        store offsets the other's rows do not match (each needs its own file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigurationError(
                f"the operations view {self.path} is in use by another process; give each "
                "admin replica a file of its own (HOOKLINE_ADMIN_VIEW_PATH)"
            ) from None
        self._owner = fd

    async def __aenter__(self) -> Self:
        self._claim()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="view-writer")
        self._reader_pool = ThreadPoolExecutor(self._readers, thread_name_prefix="view-reader")
        loop = asyncio.get_running_loop()
        try:
            self._write_conn = await loop.run_in_executor(self._writer, self._open)
        except BaseException:
            self._shutdown()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        for pool in (self._writer, self._reader_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        with self._lock:
            conns, self._read_conns = self._read_conns, []
        for conn in [*conns, *([self._write_conn] if self._write_conn else [])]:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._write_conn = None
        self._writer = self._reader_pool = None
        if self._owner is not None:
            os.close(self._owner)  # releases the lock
            self._owner = None

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, self._cache_kib)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                log.warning(
                    "view database of another version; rebuilding it from the topics",
                    extra={"path": str(self.path), "version": version},
                )
                conn.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                conn = _connect(self.path, self._cache_kib)
            conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._cache_kib // 4)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._lock:
                self._read_conns.append(conn)
        return conn

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the write connection, in the writer thread (one at a time)."""
        if self._writer is None or self._write_conn is None:
            raise RuntimeError("the view database is not open")
        conn = self._write_conn
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, conn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a read connection, in a reader thread."""
        if self._reader_pool is None:
            raise RuntimeError("the view database is not open")

        def run() -> T:
            return fn(self._reader())

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)
