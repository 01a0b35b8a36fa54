"""Newest-first pages over a view table: combinable filters and an opaque cursor.

Every list the view serves is ordered by (time, id) descending; a page's cursor
is the (time, id) of its last row, and the next page starts strictly below it,
so rows written meanwhile never shift a page. The SQL is built from fixed column
names only; values always travel as parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .viewdb import to_us
from .web import decode_cursor, encode_cursor, invalid


@dataclass
class Page:
    """A query under construction: ``where`` clauses and their parameters."""

    table: str
    time_column: str
    id_column: str
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def equal(self, column: str, value: Any) -> Page:
        if value is not None:
            self.where.append(f"{column} = ?")
            self.params.append(value)
        return self

    def one_of(self, column: str, values: Sequence[Any] | None) -> Page:
        if values:
            self.where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            self.params.extend(values)
        return self

    def between(self, since: datetime | None, until: datetime | None) -> Page:
        if since is not None:
            self.where.append(f"{self.time_column} >= ?")
            self.params.append(to_us(since))
        if until is not None:
            self.where.append(f"{self.time_column} < ?")
            self.params.append(to_us(until))
        return self

    def clause(self, sql: str, *params: Any) -> Page:
        self.where.append(sql)
        self.params.extend(params)
        return self

    def after(self, cursor: str | None) -> Page:
        if cursor is not None:
            value = decode_cursor(cursor)
            if not (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], int)
                and isinstance(value[1], str)
            ):
                raise invalid(["query", "cursor"], "not a cursor this API gave")
            self.where.append(f"({self.time_column}, {self.id_column}) < (?, ?)")
            self.params.extend(value)
        return self

    def fetch(
        self, conn: sqlite3.Connection, columns: str, limit: int
    ) -> tuple[list[sqlite3.Row], str | None]:
        """Up to ``limit`` rows, newest first, and the next page's cursor (None at the end)."""
        where = f"WHERE {' AND '.join(self.where)}" if self.where else ""
        sql = (
            f"SELECT {columns} FROM {self.table} {where} "  # noqa: S608 (fixed names only)
            f"ORDER BY {self.time_column} DESC, {self.id_column} DESC LIMIT ?"
        )
        cursor = conn.execute(sql, (*self.params, limit + 1))
        cursor.row_factory = sqlite3.Row
        rows: list[sqlite3.Row] = cursor.fetchall()
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = encode_cursor([last[self.time_column], last[self.id_column]])
        return rows, next_cursor


def dict_rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
