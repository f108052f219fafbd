"""SQLite side of ``memstrata migrate``: every table of ``base.TABLES`` dumped row by row
in primary-key order, and loaded back with its keys. Mixed into ``SQLiteStore``; same
connection and transaction discipline.

- Dumps page by primary key (``WHERE (pk) > (last) ORDER BY pk LIMIT n``), one short
  read per batch, so a dump of a large store never holds the connection's lock between
  batches. Writes that land during a dump can make it inconsistent; ``migrate``'s
  verification (a second read of both sides) then reports the mismatch.
- Loads insert the given keys as they are. The FTS5 indexes of episodes, sessions and
  notes are kept in step by the insert triggers of ``migrations.py``.
- Foreign keys are not checked while a batch loads: a note may be superseded by a note
  of a later batch (``notes.superseded_by`` points forward), which no per-batch check
  can accept. The rows come from a store whose own constraints held them, and
  ``migrate`` verifies the copy against that store.
- A load never merges: the first batch of a table needs the table empty, and each later
  batch needs the table to hold exactly what this store object loaded into it so far.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, StoreError
from .base import TABLES

# Primary key of each table in TABLES (the order dump_table pages by).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "api_keys": ("key_id",),
    "tenants": ("namespace", "user_id"),
    "sessions": ("key",),
    "episodes": ("key",),
    "embeddings": ("episode_key",),
    "pending": ("episode_key",),
    "notes": ("key",),
    "note_sources": ("note_key", "episode_key"),
    "note_vectors": ("note_key",),
    "links": ("source_key", "target_key", "kind"),
    "note_history": ("key",),
    "summaries": ("namespace", "user_id", "session_key"),
}


def columns_of(table: str) -> tuple[str, ...]:
    """The canonical columns of ``table``; an unknown name is the caller's error."""
    cols = TABLES.get(table)
    if cols is None:
        raise InvalidInputError(f"unknown table {table!r}; the tables are: {', '.join(TABLES)}")
    return cols


def missing_sqlite_file(url: str) -> str | None:
    """The path named by ``url`` when it is a SQLite file (``sqlite:///path`` or a plain
    path) that does not exist; None otherwise. Opening such a path creates an empty store,
    which is right for a copy's target and wrong for its source."""
    text = str(url)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif "://" in text:
        return None
    if text in ("", ":memory:"):
        return None
    return None if Path(text).expanduser().exists() else text


class CopyMixin:
    def finish_load(self) -> None:
        """Nothing is deferred in SQLite: FTS5 is kept in step by the insert triggers."""
    def dump_table(self, table: str, *, batch: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        cols = columns_of(table)
        if batch < 1:
            raise InvalidInputError(f"batch must be at least 1, got {batch}")
        pk = PRIMARY_KEYS[table]
        at = [cols.index(k) for k in pk]
        head = f"SELECT {', '.join(cols)} FROM {table}"
        tail = f" ORDER BY {', '.join(pk)} LIMIT ?"
        after = f" WHERE ({', '.join(pk)}) > ({', '.join('?' * len(pk))})"
        last: tuple[Any, ...] | None = None
        while True:
            with self._read() as c:  # type: ignore[attr-defined]
                if last is None:
                    rows = c.execute(head + tail, (batch,)).fetchall()
                else:
                    rows = c.execute(head + after + tail, (*last, batch)).fetchall()
            if rows:
                yield rows
            if len(rows) < batch:
                return
            last = tuple(rows[-1][i] for i in at)

    def load_table(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        cols = columns_of(table)
        for n, row in enumerate(rows):
            if len(row) != len(cols):
                raise InvalidInputError(f"load {table}: row {n} has {len(row)} values, the table has "
                                        f"{len(cols)} columns ({', '.join(cols)})")
        loaded: dict[str, int] = self.__dict__.setdefault("_loaded_rows", {})
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        conn: sqlite3.Connection = self._conn  # type: ignore[attr-defined]
        with self._lock, self._translate(f"load {table}"):  # type: ignore[attr-defined]
            conn.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set before BEGIN
            try:
                with self._write() as c:  # type: ignore[attr-defined]
                    present = c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    if present != loaded.get(table, 0):
                        raise StoreError(
                            f"load {table}: the table already holds {present} row(s) that this load did not "
                            "write; a load goes into an empty store only (nothing was merged)")
                    try:
                        c.executemany(sql, rows)
                    except sqlite3.IntegrityError as exc:
                        raise StoreError(f"load {table}: {exc} (duplicate keys in the rows?); "
                                         "this batch was not written") from exc
            finally:
                conn.execute("PRAGMA foreign_keys=ON")
        loaded[table] = loaded.get(table, 0) + len(rows)
