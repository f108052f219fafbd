"""PostgreSQL side of ``memstrata migrate``: every table of ``base.TABLES`` dumped in
primary-key order and loaded back with its keys. Mixed into ``PostgresStore``.

- A dump reads through one server-side cursor: one consistent snapshot of the table,
  fetched in batches.
- Turn vectors travel as little-endian float16 bytes (``halfvec`` is float16 in the
  database, so nothing is rounded either way); the columns the schema copies next to
  them (tenant, event time, dimension) are filled from the episode on load, and the
  HNSW index of the dimension is made first.
- Generated columns (the tsvectors) are computed by the database as rows arrive. After
  a load of a table with identity keys, its sequence moves past the largest key, so new
  rows never reuse one.
- ``notes.superseded_by`` may point at a note of a later batch: those references wait
  (the column stays NULL) until the note they name is loaded, so foreign keys stay on.
- A load never merges: the first batch of a table needs the table empty, and each later
  batch needs it to hold exactly what this store object loaded so far (as in SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError, StoreError
from .sqlite_copy import PRIMARY_KEYS, columns_of

if TYPE_CHECKING:
    import psycopg

_IDENTITY = ("sessions", "episodes", "notes", "note_history")


class PgCopyMixin:
    if TYPE_CHECKING:
        _pool: Any

        def _translate(self, what: str) -> AbstractContextManager[None]: ...
        def _write(self, what: str, tenant: Any = None, *,
                   create: bool = False) -> AbstractContextManager[psycopg.Cursor[Any]]: ...
        def build_graphs(self, *, work_mem: str | None = None) -> int: ...

    def dump_table(self, table: str, *, batch: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        from .postgres import halfvec_bytes  # noqa: PLC0415

        cols = columns_of(table)
        if batch < 1:
            raise InvalidInputError(f"batch must be at least 1, got {batch}")
        select = ", ".join("halfvec_send(vec)" if (table, c) == ("embeddings", "vec") else c for c in cols)
        with self._translate(f"dump {table}"), self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(name=f"memstrata_dump_{table}")
            cur.execute(f"SELECT {select} FROM {table} ORDER BY {', '.join(PRIMARY_KEYS[table])}")  # noqa: S608
            while rows := cur.fetchmany(batch):
                if table == "embeddings":
                    yield [(k, m, halfvec_bytes(v)) for k, m, v in rows]
                else:
                    yield [tuple(r) for r in rows]

    def finish_load(self) -> None:
        """Build the HNSW graphs of the tenants the load made big enough for one
        (``postgres_graphs``), with 512 MB of maintenance memory. Until then (or if a load
        stops half-way) dense search scans exactly, and the next search or add of such a
        tenant queues its graph anyway."""
        self.build_graphs(work_mem="512MB")

    def load_table(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        from .postgres import vec_literal  # noqa: PLC0415

        cols = columns_of(table)
        for n, row in enumerate(rows):
            if len(row) != len(cols):
                raise InvalidInputError(f"load {table}: row {n} has {len(row)} values, the table has "
                                        f"{len(cols)} columns ({', '.join(cols)})")
        loaded: dict[str, int] = self.__dict__.setdefault("_loaded_rows", {})
        waiting: dict[int, int] = self.__dict__.setdefault("_waiting_supersede", {})
        # (No vector graph is kept up to date during a load: a load goes into an empty store,
        # which has none, and finish_load builds them once at the end; kept up to date row by
        # row, 100k vectors took 540 s to load, built after, ~70-150 s.)
        with self._write(f"load {table}") as cur:
            present = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            if present != loaded.get(table, 0):
                raise StoreError(f"load {table}: the table already holds {present} row(s) that this load did not "
                                 "write; a load goes into an empty store only (nothing was merged)")
            if not rows:
                return
            if table == "embeddings":
                blobs = [bytes(r[2]) for r in rows]
                cur.execute(
                    "INSERT INTO embeddings (episode_key, model_id, vec, dims, namespace, user_id, event_time) "
                    "SELECT u.k, u.m, u.v::halfvec, u.d, e.namespace, e.user_id, e.event_time "
                    "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::int[]) AS u(k, m, v, d) "
                    "LEFT JOIN episodes e ON e.key = u.k",
                    ([r[0] for r in rows], [r[1] for r in rows],
                     [vec_literal(np.frombuffer(b, "<f2")) for b in blobs], [len(b) // 2 for b in blobs]))
            else:
                values = [tuple(r) for r in rows]
                if table == "notes":
                    at = cols.index("superseded_by")
                    for r in values:
                        if r[at] is not None:
                            waiting[int(r[0])] = int(r[at])
                    values = [(*r[:at], None, *r[at + 1:]) for r in values]
                marks = ", ".join(["%s"] * len(cols))
                cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", values)  # noqa: S608
                if table == "notes" and waiting:
                    done = cur.execute(
                        "UPDATE notes n SET superseded_by = u.t FROM unnest(%s::bigint[], %s::bigint[]) AS u(k, t) "
                        "WHERE n.key = u.k AND EXISTS (SELECT 1 FROM notes x WHERE x.key = u.t) RETURNING n.key",
                        (list(waiting), list(waiting.values()))).fetchall()
                    for (key,) in done:
                        waiting.pop(int(key), None)
            if table in _IDENTITY:
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'key'), "
                            f"GREATEST((SELECT max(key) FROM {table}), 1))")
        loaded[table] = loaded.get(table, 0) + len(rows)
