"""PostgreSQL store: psycopg 3 with a connection pool, pgvector HNSW, tsvector full text.

Choices and why (the schema and its reasons are in ``postgres_schema``):
- Every write is one transaction that first locks the tenant's row in ``tenants``
  (``SELECT ... FOR UPDATE``): writers of one tenant, in any process, queue there, so
  session positions and revisions never collide, and every write takes its locks in the
  same order (tenant first), so two writers cannot deadlock.
- Revisions start at the wall clock in microseconds and go up by one per write, as in
  SQLite: a revision a cache holds is never repeated after an erase.
- Dense search runs in the database (``dense_turns``): a tenant with fewer than
  ``exact_below`` matching vectors is scanned exactly; a bigger one goes through its own
  HNSW graph (``postgres_graphs``: made in the background when a tenant reaches that
  size, so small tenants' writes pay no graph upkeep) with
  ``hnsw.iterative_scan=relaxed_order``, so a time window (or a second model) still
  yields ``limit`` rows, re-sorted outside. Until the graph is built, or should it come
  back short, the exact scan answers.
- ``snapshot`` leaves turn vectors in the database and gives session centroids instead.
- Deletes leave dead tuples to autovacuum; ``erase_tenant`` runs VACUUM on the tables it
  touched. VACUUM makes the space reusable; it does not overwrite it (see erase_tenant).
"""

from __future__ import annotations

import json
import logging
import operator
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import ConflictError, StoreError
from ..model import Episode, SessionInfo, Stats
from ..timeutil import from_micros, to_micros
from .base import EpisodeDraft, Snapshot, Tenant
from .postgres_copy import PgCopyMixin
from .postgres_graphs import HNSW_MAX_DIMS, PgGraphsMixin
from .postgres_notes import PgKeysMixin, PgNotesMixin
from .postgres_schema import LATEST, MIGRATION_LOCK, MIGRATIONS
from .postgres_url import redact
from .rows import episode as _episode
from .sqlite import SESSION_KEY_ROLES, scope_token

log = logging.getLogger("memstrata.store")

_EP_COLS = (
    "e.key, e.id, e.namespace, e.user_id, e.agent_id, s.session_id, e.position, e.role, "
    "e.speaker, e.content, e.event_time, e.ingest_time, e.metadata, e.written_by"
)
_EP_JOIN = "FROM episodes e JOIN sessions s ON s.key = e.session_key"
# Postings a lexical query may rank before its most common words are left out, or only the
# tenant's newest rows are ranked (see _budget). SQLite's budget is 3,000 postings at ~1.4 us
# each; BM25 in SQL costs ~4-5 us a posting here (heap fetch of each match included), so a
# third of that keeps a lexical query near 5 ms: on a 50k-turn tenant search p50/p95
# 13/26 ms at 2,000, 10/19 ms at 1,000.
LEXICAL_BUDGET = 1_000
_MARK_STEP = 256  # _window_start
# Tables an erase deletes from (VACUUMed after it).
_TENANT_TABLES = ("embeddings", "note_vectors", "note_sources", "links", "notes", "note_history", "summaries",
                  "pending", "episodes", "sessions", "tenants")


_F16_TEXT: list[str] = []  # the text of every float16 bit pattern (vec_literal)


def vec_literal(row: np.ndarray) -> str:
    """pgvector's text form; float16 values print exactly as float32/float64. Looked up per
    bit pattern in a table of all 65,536 (built once, ~20 ms): 12 us a 384-dim row instead
    of 107 us for repr() per value, which was ~11% of an episode's write at 1M."""
    if not _F16_TEXT:
        _F16_TEXT.extend(map(repr, np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).tolist()))
    bits = np.ascontiguousarray(np.asarray(row, np.float16).ravel()).view(np.uint16).tolist()
    if not bits:
        return "[]"
    picked = operator.itemgetter(*bits)(_F16_TEXT)
    return "[" + (picked if len(bits) == 1 else ",".join(picked)) + "]"


def halfvec_bytes(sent: bytes) -> bytes:
    """halfvec_send output (int16 dims, int16 unused, big-endian float16) -> little-endian float16."""
    return np.frombuffer(sent, dtype=">f2", offset=4).astype("<f2").tobytes()


class PostgresStore(PgNotesMixin, PgKeysMixin, PgCopyMixin, PgGraphsMixin):
    """A ``Store`` in a PostgreSQL database with pgvector (``postgresql://...``)."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 30.0,
                 exact_below: int = 20_000, ef_search: int = 800, lexical_budget: int = LEXICAL_BUDGET,
                 session_key_roles: tuple[str, ...] = SESSION_KEY_ROLES) -> None:
        self.url = url
        self._shown = redact(url)
        self._session_roles = list(session_key_roles)
        self._timeout_s = timeout_s
        self.exact_below = int(exact_below)
        # HNSW candidate list: at least this, and 2 x limit. (Measured with the shared graph
        # of schema versions 1-2, where the tenant filter kept only part of what the walk
        # visited: on bench perf's 50k-of-100k tenant, recall@10 0.68 at 40, 0.88 at 200,
        # 0.93 at 400, 0.97 at 800 (5.2 ms). A tenant's own graph needs less; see scaling.md.)
        self.ef_search = int(ef_search)
        self.lexical_budget = int(lexical_budget)
        self._init_graphs()
        self._freqs: dict[str, tuple[float, dict[str, float]]] = {}
        self._vec_counts: dict[tuple[Tenant, str, int], tuple[int, int]] = {}
        self._row_counts: dict[tuple[Tenant, str], tuple[int, int]] = {}
        # (tenant, table) -> every _MARK_STEP-th key of the tenant's rows, newest first (_window_start)
        self._key_marks: dict[tuple[Tenant, str], np.ndarray] = {}
        # How dense_turns answered: "exact" scans, "hnsw" index scans, "short" index scans
        # that came back with fewer than asked and were answered exactly instead.
        self.dense_counts: Counter[str] = Counter()
        try:
            first = psycopg.connect(url, connect_timeout=max(1, int(timeout_s)))
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {self._shown}: {_first_line(exc)}") from exc
        try:
            with self._translate("open"):
                self._migrate(first)
        finally:
            first.close()
        # check: a pooled connection the server dropped (restart, idle timeout, failover) is
        # replaced when it is taken, rather than failing the caller's first query.
        self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, timeout=timeout_s,
                                    open=False, name="memstrata", check=ConnectionPool.check_connection)
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout as exc:
            raise StoreError(f"cannot open store {self._shown}: no connection within {timeout_s} s") from exc

    # -- set-up ------------------------------------------------------------------
    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # Processes opening a fresh database at once queue here; each step runs once.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > LATEST:
                raise StoreError(
                    f"store {self._shown} has schema version {version}, newer than this memstrata "
                    f"understands ({LATEST}); upgrade memstrata")
            for number in range(version + 1, LATEST + 1):
                conn.execute(MIGRATIONS[number - 1])
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))

    @property
    def schema_version(self) -> int:
        with self._read() as cur:
            row = cur.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        self._close_graphs()
        self._pool.close()

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            raise ConflictError(f"{what} failed: {_first_line(exc)}") from exc
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
            raise ConflictError(f"{what} failed: a concurrent write got there first ({_first_line(exc)})") from exc
        except psycopg.errors.DiskFull as exc:
            raise StoreError(f"{what} failed: the disk is full for {self._shown} ({_first_line(exc)}); "
                             "nothing was written") from exc
        except PoolTimeout as exc:
            raise StoreError(f"{what} failed: no connection to {self._shown} free or reachable "
                             f"within {self._timeout_s} s") from exc
        except psycopg.OperationalError as exc:
            raise StoreError(f"{what} failed: lost the connection to {self._shown} ({_first_line(exc)})") from exc
        except psycopg.Error as exc:
            raise StoreError(f"{what} failed: {_first_line(exc)}") from exc

    @contextmanager
    def _write(self, what: str, tenant: Tenant | None = None, *, create: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction; with ``tenant`` it first locks the tenant's row (made if ``create``)."""
        with self._translate(what), self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            if tenant is not None:
                self._lock_tenant(cur, tenant, create)
            yield cur

    @contextmanager
    def _read(self, *, consistent: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A read; ``consistent`` makes it one REPEATABLE READ snapshot across statements."""
        with self._translate("read"), self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            if consistent:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield cur

    def _lock_tenant(self, cur: psycopg.Cursor[Any], tenant: Tenant, create: bool) -> None:
        key = (tenant.namespace, tenant.user_id)
        while True:
            if create:
                # Revisions start at the wall clock (µs): after an erase the counter must not
                # repeat a value a cache still holds for the erased data.
                cur.execute("INSERT INTO tenants (namespace, user_id, revision) VALUES (%s, %s, %s) "
                            "ON CONFLICT DO NOTHING", (*key, time.time_ns() // 1000))
            row = cur.execute("SELECT revision FROM tenants WHERE namespace=%s AND user_id=%s FOR UPDATE",
                              key).fetchone()
            if row is not None or not create:
                return  # (an erase that committed meanwhile removed the row: make it again)

    def _bump(self, cur: psycopg.Cursor[Any], tenant: Tenant) -> None:
        cur.execute("UPDATE tenants SET revision = revision + 1 WHERE namespace=%s AND user_id=%s",
                    (tenant.namespace, tenant.user_id))

    # -- writes ------------------------------------------------------------------
    def add_episodes(
        self,
        tenant: Tenant,
        drafts: Sequence[EpisodeDraft],
        vectors: np.ndarray | None = None,
        model_id: str | None = None,
        *,
        enqueue: bool = True,
    ) -> list[Episode]:
        if not drafts:
            return []
        if vectors is not None and len(vectors) != len(drafts):
            raise StoreError(f"got {len(vectors)} vectors for {len(drafts)} episodes")
        half = None
        if vectors is not None and model_id is not None:
            half = np.asarray(vectors, dtype=np.float16).reshape(len(drafts), -1)
        token = scope_token(tenant)
        with self._write("add", tenant, create=True) as cur:
            session_keys: dict[str, int] = {}
            next_pos: dict[int, int] = {}
            cols: list[list[Any]] = [[] for _ in range(11)]
            stored: list[Episode] = []
            for draft in drafts:
                skey = session_keys.get(draft.session_id)
                if skey is None:
                    skey = self._session_key(cur, tenant, draft.session_id, token)
                    session_keys[draft.session_id] = skey
                    next_pos[skey] = cur.execute(
                        "SELECT COALESCE(MAX(position) + 1, 0) FROM episodes WHERE session_key=%s", (skey,)
                    ).fetchone()[0]
                position = draft.position if draft.position is not None else next_pos[skey]
                next_pos[skey] = max(next_pos[skey], position + 1)
                for col, value in zip(cols, (
                    draft.id, draft.agent_id, skey, position, draft.role, draft.speaker, draft.content,
                    to_micros(draft.event_time), to_micros(draft.ingest_time),
                    json.dumps(draft.metadata, ensure_ascii=False), draft.written_by,
                )):
                    col.append(value)
                stored.append(Episode(
                    id=draft.id, namespace=tenant.namespace, user_id=tenant.user_id,
                    session_id=draft.session_id, position=position, role=draft.role,  # type: ignore[arg-type]
                    content=draft.content, event_time=draft.event_time, ingest_time=draft.ingest_time,
                    speaker=draft.speaker, agent_id=draft.agent_id, metadata=draft.metadata,
                    written_by=draft.written_by,
                ))
            try:
                keys = dict(cur.execute(
                    "INSERT INTO episodes (id, namespace, user_id, agent_id, session_key, position, role, speaker, "
                    "content, event_time, ingest_time, metadata, scope, written_by) "
                    "SELECT u.id, %s, %s, u.agent_id, u.skey, u.pos, u.role, u.speaker, u.content, u.et, u.it, "
                    "u.meta, %s, u.wb FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], "
                    "%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[]) "
                    "AS u(id, agent_id, skey, pos, role, speaker, content, et, it, meta, wb) RETURNING id, key",
                    (tenant.namespace, tenant.user_id, token, *cols),
                ).fetchall())
            except psycopg.errors.UniqueViolation as exc:
                raise ConflictError("add failed: an episode with one of these ids (or this session position) "
                                    "already exists; nothing was stored") from exc
            if half is not None:
                self._store_vectors(cur, [keys[d.id] for d in drafts], half, model_id)  # type: ignore[arg-type]
            if enqueue:  # background note processing; same transaction as the episodes
                cur.execute("INSERT INTO pending (episode_key, namespace, user_id) "
                            "SELECT k, %s, %s FROM unnest(%s::bigint[]) AS k",
                            (tenant.namespace, tenant.user_id, sorted(keys.values())))
            for skey in session_keys.values():
                self._refresh_session(cur, skey)
            self._bump(cur, tenant)
        if half is not None:
            self._vectors_written(tenant, int(half.shape[1]), len(drafts))  # a graph due? (postgres_graphs)
        return stored

    def _store_vectors(self, cur: psycopg.Cursor[Any], keys: list[int], half: np.ndarray, model_id: str) -> None:
        keep = ~np.isnan(half).any(axis=1)
        rows = [(k, vec_literal(half[n])) for n, k in enumerate(keys) if keep[n]]
        if not rows:
            return
        cur.execute(
            "INSERT INTO embeddings (episode_key, model_id, vec, dims, namespace, user_id, event_time) "
            "SELECT u.k, %s, u.v::halfvec, %s, e.namespace, e.user_id, e.event_time "
            "FROM unnest(%s::bigint[], %s::text[]) AS u(k, v) JOIN episodes e ON e.key = u.k "
            "ON CONFLICT (episode_key) DO UPDATE SET model_id = EXCLUDED.model_id, vec = EXCLUDED.vec, "
            "dims = EXCLUDED.dims",
            (model_id, int(half.shape[1]), [r[0] for r in rows], [r[1] for r in rows]),
        )

    def _session_key(self, cur: psycopg.Cursor[Any], tenant: Tenant, session_id: str, token: str) -> int:
        row = cur.execute("SELECT key FROM sessions WHERE namespace=%s AND user_id=%s AND session_id=%s",
                          (tenant.namespace, tenant.user_id, session_id)).fetchone()
        if row:
            return int(row[0])
        return int(cur.execute(
            "INSERT INTO sessions (namespace, user_id, session_id, scope) VALUES (%s, %s, %s, %s) RETURNING key",
            (tenant.namespace, tenant.user_id, session_id, token)).fetchone()[0])

    def _refresh_session(self, cur: psycopg.Cursor[Any], skey: int) -> None:
        """Recompute a session's span and lexical document from its episodes (in the
        database: the text never travels)."""
        row = cur.execute(
            "UPDATE sessions SET (n_episodes, first_time, last_time, doc) = (SELECT count(*), min(event_time), "
            "max(event_time), COALESCE(string_agg(content, E'\\n' ORDER BY position) FILTER (WHERE role = ANY(%s)), "
            "string_agg(content, E'\\n' ORDER BY position), '') FROM episodes WHERE session_key=%s) "
            "WHERE key=%s RETURNING n_episodes", (self._session_roles, skey, skey)).fetchone()
        if row is not None and row[0] == 0:
            cur.execute("DELETE FROM sessions WHERE key=%s", (skey,))

    def delete_episodes(self, tenant: Tenant, episode_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(episode_ids))
        if not ids:
            return 0
        with self._write("delete", tenant) as cur:
            found = cur.execute("SELECT key, session_key FROM episodes WHERE namespace=%s AND user_id=%s "
                                "AND id = ANY(%s)", (tenant.namespace, tenant.user_id, ids)).fetchall()
            keys = [int(k) for k, _ in found]
            if keys:
                self._cascade_notes(cur, tenant, keys)
                cur.execute("DELETE FROM embeddings WHERE episode_key = ANY(%s)", (keys,))
                cur.execute("DELETE FROM note_sources WHERE episode_key = ANY(%s)", (keys,))
                cur.execute("DELETE FROM episodes WHERE key = ANY(%s)", (keys,))
                for skey in sorted({int(s) for _, s in found}):
                    self._refresh_session(cur, skey)
                self._bump(cur, tenant)
        return len(found)

    def delete_session(self, tenant: Tenant, session_id: str) -> int:
        with self._read() as cur:
            ids = [r[0] for r in cur.execute(
                "SELECT e.id FROM episodes e JOIN sessions s ON s.key = e.session_key "
                "WHERE s.namespace=%s AND s.user_id=%s AND s.session_id=%s",
                (tenant.namespace, tenant.user_id, session_id))]
        return self.delete_episodes(tenant, ids)

    def erase_tenant(self, tenant: Tenant) -> int:
        """Delete every row of the tenant in one transaction, then VACUUM the tables.

        What this does not scrub: VACUUM marks the dead tuples' space free for reuse, it
        does not overwrite it, so the text can stay in the data files' free space, in
        index pages, in the write-ahead log (until its segments are recycled), in WAL
        archives, replicas and backups. VACUUM FULL would rewrite the tables but locks
        them for every tenant; neither zeroes the freed disk blocks. A table another session
        holds a conflicting lock on (a graph build) is skipped and left to autovacuum."""
        key = (tenant.namespace, tenant.user_id)
        with self._write("erase", tenant) as cur:
            n = cur.execute("SELECT count(*) FROM episodes WHERE namespace=%s AND user_id=%s", key).fetchone()[0]
            cur.execute("DELETE FROM embeddings WHERE namespace=%s AND user_id=%s", key)
            cur.execute("DELETE FROM notes WHERE namespace=%s AND user_id=%s", key)
            for table in ("note_history", "summaries", "pending", "episodes", "sessions", "tenants"):
                cur.execute(f"DELETE FROM {table} WHERE namespace=%s AND user_id=%s", key)  # noqa: S608
        for table in ("episodes", "sessions", "notes"):
            self._key_marks.pop((tenant, table), None)
        self._forget_graphs(tenant)  # its HNSW graphs are dropped in the background
        self._vacuum(_TENANT_TABLES)
        return int(n)

    def _vacuum(self, tables: Sequence[str]) -> None:
        with self._translate("vacuum"), self._pool.connection() as conn:
            conn.commit()
            conn.autocommit = True
            try:
                # SKIP_LOCKED: a table another session holds (a tenant's graph being built
                # CONCURRENTLY holds embeddings for the whole build) is left to autovacuum
                # rather than making the erase wait for it.
                conn.execute(f"VACUUM (SKIP_LOCKED) {', '.join(tables)}")
            finally:
                conn.autocommit = False

    # -- reads -------------------------------------------------------------------
    def revision(self, tenant: Tenant) -> int:
        with self._read() as cur:
            row = cur.execute("SELECT revision FROM tenants WHERE namespace=%s AND user_id=%s",
                              (tenant.namespace, tenant.user_id)).fetchone()
        return int(row[0]) if row else 0

    def get_episode(self, tenant: Tenant, episode_id: str) -> Episode | None:
        with self._read() as cur:
            row = cur.execute(f"SELECT {_EP_COLS} {_EP_JOIN} WHERE e.id=%s AND e.namespace=%s AND e.user_id=%s",
                              (episode_id, tenant.namespace, tenant.user_id)).fetchone()
        return _episode(row) if row else None

    def episodes_by_keys(self, tenant: Tenant, keys: Sequence[int]) -> dict[int, Episode]:
        if not len(keys):
            return {}
        with self._read() as cur:
            rows = cur.execute(f"SELECT {_EP_COLS} {_EP_JOIN} WHERE e.namespace=%s AND e.user_id=%s "
                               "AND e.key = ANY(%s)", (tenant.namespace, tenant.user_id, [int(k) for k in keys]))
            return {int(r[0]): _episode(r) for r in rows}

    def list_episodes(
        self, tenant: Tenant, *, session_id: str | None = None, start: datetime | None = None,
        end: datetime | None = None, limit: int = 100, offset: int = 0,
    ) -> list[Episode]:
        where = ["e.namespace=%s", "e.user_id=%s"]
        args: list[Any] = [tenant.namespace, tenant.user_id]
        if session_id is not None:
            where.append("s.session_id=%s")
            args.append(session_id)
        if start is not None:
            where.append("e.event_time>=%s")
            args.append(to_micros(start))
        if end is not None:
            where.append("e.event_time<%s")
            args.append(to_micros(end))
        with self._read() as cur:
            rows = cur.execute(
                f"SELECT {_EP_COLS} {_EP_JOIN} WHERE {' AND '.join(where)} "
                "ORDER BY e.event_time, e.session_key, e.position LIMIT %s OFFSET %s",
                (*args, _limit(limit), max(0, int(offset)))).fetchall()
        return [_episode(r) for r in rows]

    def list_sessions(self, tenant: Tenant) -> list[SessionInfo]:
        with self._read() as cur:
            rows = cur.execute("SELECT session_id, n_episodes, first_time, last_time FROM sessions "
                               "WHERE namespace=%s AND user_id=%s ORDER BY first_time, key",
                               (tenant.namespace, tenant.user_id)).fetchall()
        return [SessionInfo(r[0], tenant.namespace, tenant.user_id, int(r[1]), from_micros(r[2]), from_micros(r[3]))
                for r in rows]

    def neighbours(self, tenant: Tenant, episode_id: str, *, radius: int = 1) -> list[Episode]:
        base = f"SELECT {_EP_COLS} {_EP_JOIN} "
        with self._read() as cur:
            row = cur.execute("SELECT session_key, position FROM episodes WHERE id=%s AND namespace=%s "
                              "AND user_id=%s", (episode_id, tenant.namespace, tenant.user_id)).fetchone()
            if row is None:
                return []
            before = cur.execute(base + "WHERE e.session_key=%s AND e.position<%s ORDER BY e.position DESC LIMIT %s",
                                 (row[0], row[1], _limit(radius))).fetchall()
            rest = cur.execute(base + "WHERE e.session_key=%s AND e.position>=%s ORDER BY e.position LIMIT %s",
                               (row[0], row[1], _limit(radius + 1))).fetchall()
        return [_episode(r) for r in [*reversed(before), *rest]]

    def neighbours_many(self, tenant: Tenant, episode_ids: Sequence[str], *,
                        radius: int = 1) -> dict[str, list[Episode]]:
        """One query for every window (context() asked one per hit: ~46 round trips)."""
        ids = list(dict.fromkeys(str(i) for i in episode_ids))
        if not ids:
            return {}
        side = f"SELECT {_EP_COLS} {_EP_JOIN} WHERE e.session_key = h.session_key AND e.position "
        with self._read() as cur:
            rows = cur.execute(
                "WITH h AS (SELECT id AS hid, session_key, position AS pos FROM episodes "
                "WHERE namespace=%s AND user_id=%s AND id = ANY(%s)) "
                "SELECT h.hid, w.* FROM h, LATERAL ("
                f"(SELECT * FROM ({side}< h.pos ORDER BY e.position DESC LIMIT %s) b) UNION ALL "
                f"(SELECT * FROM ({side}>= h.pos ORDER BY e.position LIMIT %s) a)) w",
                (tenant.namespace, tenant.user_id, ids, _limit(radius), _limit(radius + 1))).fetchall()
        out: dict[str, list[Episode]] = {}
        for row in rows:
            out.setdefault(row[0], []).append(_episode(row[1:]))
        for window in out.values():
            window.sort(key=lambda e: e.position)
        return out

    def lexical_turns(
        self, tenant: Tenant, terms: Sequence[str], *, limit: int,
        start: datetime | None = None, end: datetime | None = None,
    ) -> list[tuple[int, float]]:
        words = _terms(terms)
        if not words:
            return []
        where, args = "", []
        if start is not None:
            where += " AND event_time >= %s"
            args.append(to_micros(start))
        if end is not None:
            where += " AND event_time < %s"
            args.append(to_micros(end))
        return self._lexical("episodes", words, tenant, where, args, limit)

    def lexical_sessions(self, tenant: Tenant, terms: Sequence[str], *, limit: int) -> list[tuple[int, float]]:
        words = _terms(terms)
        return self._lexical("sessions", words, tenant, "", [], limit) if words else []

    def _lexical(self, table: str, words: list[str], tenant: Tenant, where: str, args: list[Any],
                 limit: int) -> list[tuple[int, float]]:
        """Any of the words (each one a phrase query of its own, so no input is parsed as
        tsquery syntax), ranked by BM25 (k1 1.2, b 0.75, as SQLite's FTS5); higher is
        better, ties to the older row. Very common words may be left out (``_budget``).

        The GIN index finds the rows with any word; BM25 is computed over them in SQL:
        term frequencies from the rows' tsvectors, document frequencies and N from the
        tenant (FTS5 takes them from the whole file), document length as the tsvector's
        lexeme count over its mean among the matches. ts_rank_cd (no idf) was measured
        first: LoCoMo evidence recall@10, lexical only, 0.644 against SQLite's 0.748."""
        if table == "notes":  # content (weight D) counts 1, keywords (B) 0.5
            weight = "(SELECT sum(CASE w WHEN 'B' THEN 0.5 ELSE 1.0 END) FROM unnest(u.weights) AS w)"
            matched = "unnest(c.tsv) AS u WHERE u.lexeme = ANY(lex.ls)"
        else:
            # Only the query's lexemes of each row, cut out in C: mark them with weight A
            # (the stored vectors carry none) and keep weight A. Unnesting every lexeme
            # and filtering in SQL was ~25% slower.
            weight = "cardinality(u.positions)"
            matched = "unnest(ts_filter(setweight(c.tsv, 'A', lex.ls), '{a}')) AS u"
        with self._read() as cur:
            n_rows = self._tenant_rows(cur, table, tenant)
            words, lowest = self._budget(cur, table, words, tenant, n_rows)
            if lowest is not None:  # only the tenant's newest rows (see _budget)
                where += " AND key >= %s"
                args = [*args, lowest]
                # The planner reads "key >= lowest" as a cheap primary-key range and walks
                # it, testing every row's tsvector: the window holds every tenant's rows,
                # ~50k of them for ~1k matches (17-21 ms at 58k turns). Without plain index
                # scans it intersects the GIN bitmap with the key/tenant bitmaps (4-7 ms).
                cur.execute("SELECT set_config('enable_indexscan', 'off', true)")
            rows = cur.execute(
                f"WITH q AS (SELECT {or_query(len(words))} AS q), "
                "lex AS (SELECT array_agg(DISTINCT l) AS ls FROM unnest(%s::text[]) AS w, "
                "unnest(tsvector_to_array(to_tsvector('english', w))) AS l), "
                f"cand AS MATERIALIZED (SELECT key, tsv, length(tsv) AS len FROM {table}, q "  # noqa: S608
                f"WHERE namespace=%s AND user_id=%s AND tsv @@ q.q{where}), "
                f"hits AS (SELECT c.key, c.len, u.lexeme, {weight} AS tf FROM cand c, lex, {matched}), "
                "df AS (SELECT lexeme, count(*) AS n FROM hits GROUP BY lexeme), "
                # Double precision throughout: with numeric literals the sum ran in
                # NUMERIC, a third of the query's time.
                "st AS (SELECT GREATEST(%s, (SELECT count(*) FROM cand), 1)::float8 AS n, "
                "GREATEST((SELECT avg(len) FROM cand)::float8, 1.0::float8) AS avglen) "
                "SELECT h.key, sum(ln(1.0::float8 + (st.n - df.n + 0.5::float8) / (df.n + 0.5::float8)) "
                "* h.tf * 2.2::float8 / (h.tf + 1.2::float8 * (0.25::float8 + 0.75::float8 * h.len / st.avglen))) "
                "AS score "
                "FROM hits h JOIN df USING (lexeme), st GROUP BY h.key ORDER BY score DESC, h.key LIMIT %s",
                (*words, words, tenant.namespace, tenant.user_id, *args, n_rows, _limit(limit)),
                # Planned for its values every time: psycopg prepares a statement after 5
                # runs, and the generic plan (blind to the words and the window) took 2x
                # as long at 500k turns (in-search p50/p95 28/49 -> 21/40 ms).
                prepare=False).fetchall()
        return [(int(k), float(s)) for k, s in rows]

    def _tenant_rows(self, cur: psycopg.Cursor[Any], table: str, tenant: Tenant) -> int:
        """BM25's N and the budget's row count: the tenant's turns (for turns and
        sessions: a session document costs about as much to rank as its turns) or notes;
        ``table="sessions!"``: the tenant's session rows themselves. Counting walks the
        tenant's rows (~10 ms at 500k turns), so it is kept per revision: one primary-key
        read when nothing changed."""
        row = cur.execute("SELECT revision FROM tenants WHERE namespace=%s AND user_id=%s",
                          (tenant.namespace, tenant.user_id)).fetchone()
        if row is None:
            return 0
        kind = {"notes": "notes", "sessions!": "sessions"}.get(table, "turns")
        cached = self._row_counts.get((tenant, kind))
        if cached is not None and cached[0] == row[0]:
            return cached[1]
        count = {"turns": "SELECT COALESCE(sum(n_episodes), 0) FROM sessions",
                 "sessions": "SELECT count(*) FROM sessions", "notes": "SELECT count(*) FROM notes"}[kind]
        n = int(cur.execute(f"{count} WHERE namespace=%s AND user_id=%s",  # noqa: S608 (ours)
                            (tenant.namespace, tenant.user_id)).fetchone()[0])
        if len(self._row_counts) > 10_000:
            self._row_counts.clear()
        self._row_counts[(tenant, kind)] = (int(row[0]), n)
        return n

    def _window_start(self, cur: psycopg.Cursor[Any], table: str, tenant: Tenant, own: int, newest: int) -> int | None:
        """The key of about the ``newest``-th newest row of the tenant in ``table``
        (``own``: its row count now). Read from marks (every ``_MARK_STEP``-th key,
        newest first, the row count of the time last) kept per tenant and table: an
        OFFSET walk of the tenant's key index costs ~0.15 us a row, 7-12 ms for the
        50-100k rows a common word's window spans at 500k turns, on every such query.

        Rows written since the marks were read are the ones with a key above the newest
        mark (keys only grow); they are counted (an index range, short while they are
        few) and the window shifts by them, so it keeps ending at the newest row. Rows
        deleted since are what the count then misses. The marks are read again when the
        new rows plus the deleted ones pass ``max(_MARK_STEP, 1%)`` of the tenant: a
        tenant that deletes as much as it writes, or one erased and written again (by
        this process or another), cannot keep old marks. A budget, not a result,
        depends on the window."""
        if newest < 4 * _MARK_STEP:  # a short walk: exact
            return self._key_at(cur, table, tenant, newest)
        marks = self._key_marks.get((tenant, table))
        added = 0
        if marks is not None:
            added = int(cur.execute(
                f"SELECT count(*) FROM {table} WHERE namespace=%s AND user_id=%s AND key > %s",  # noqa: S608
                (tenant.namespace, tenant.user_id, int(marks[0]))).fetchone()[0])
            deleted = max(0, int(marks[-1]) + added - own)
            if added + deleted > max(_MARK_STEP, own // 100):
                marks = None
        if marks is None:
            keys = cur.execute(
                f"SELECT key FROM (SELECT key, row_number() OVER (ORDER BY key DESC) AS r "  # noqa: S608
                f"FROM {table} WHERE namespace=%s AND user_id=%s) t "
                "WHERE r %% %s = 1 ORDER BY r", (tenant.namespace, tenant.user_id, _MARK_STEP)).fetchall()
            if not keys:
                return None
            marks = np.array([k for (k,) in keys] + [own], dtype=np.int64)
            added = 0
            if len(self._key_marks) > 1_000:
                self._key_marks.clear()
            self._key_marks[(tenant, table)] = marks
        if newest <= added:  # the window lies among the rows written since: walk them
            return self._key_at(cur, table, tenant, newest)
        i, part = divmod(newest - added, _MARK_STEP)
        if i >= len(marks) - 1:
            return None  # past the oldest mark: every row
        if i + 1 < len(marks) - 1:  # between two marks: in proportion to the keys
            return int(marks[i] - (marks[i] - marks[i + 1]) * part // _MARK_STEP)
        return int(marks[i])

    def _key_at(self, cur: psycopg.Cursor[Any], table: str, tenant: Tenant, offset: int) -> int | None:
        """The key of the tenant's ``offset``-th newest row in ``table`` (0: the newest)."""
        row = cur.execute(
            f"SELECT key FROM {table} WHERE namespace=%s AND user_id=%s "  # noqa: S608
            "ORDER BY key DESC OFFSET %s LIMIT 1", (tenant.namespace, tenant.user_id, offset)).fetchone()
        return int(row[0]) if row else None

    def _budget(self, cur: psycopg.Cursor[Any], table: str, words: list[str],
                tenant: Tenant, rows: int) -> tuple[list[str], int | None]:
        """Leave out the most common words when ranking every row that has any of them
        would cost more than ``lexical_budget`` postings (the rarest word always stays),
        as the SQLite store does: ts_rank_cd scores every matching row, and at 100k turns
        a query with two very common words took 400-700 ms. A word's share of rows comes
        from the planner's statistics of the tsvector column (most common lexemes, kept
        by ANALYZE/autovacuum), times the tenant's row count; words not among them count
        as rare. Returns the words kept, in their order, and, when the words kept still
        cost more than the budget, the lowest key to rank: the tenant's newest rows
        holding about ``lexical_budget`` postings (None: every row)."""
        if self.lexical_budget <= 0:  # no budget: every word over every row
            return words, None
        freqs = self._lexeme_freqs(cur, table)
        if not freqs:
            return words, None
        if rows * max(freqs.values()) <= self.lexical_budget:
            return words, None
        lexemes = cur.execute("SELECT array(SELECT lexeme FROM unnest(to_tsvector('english', w))) "
                              "FROM unnest(%s::text[]) WITH ORDINALITY AS u(w, i) ORDER BY i", (words,)).fetchall()
        cost = [rows * min((freqs.get(x, 0.0) for x in lex), default=0.0) for (lex,) in lexemes]
        keep: list[int] = []
        total = 0.0
        for i in sorted(range(len(words)), key=lambda i: (cost[i], words[i])):
            # Keep going until a word expected to match something is in (a word that
            # matches nothing must not be the one that stays).
            if total > 0 and total + cost[i] > self.lexical_budget:
                break
            keep.append(i)
            total += cost[i]
        lowest = None
        if total > self.lexical_budget:  # the rarest word alone: rank its newest postings
            # rows: turns for turns and sessions (see _tenant_rows), notes for notes
            own = self._tenant_rows(cur, "sessions!", tenant) if table == "sessions" else rows
            lowest = self._window_start(cur, table, tenant, own, int(own * self.lexical_budget / total))
        return [words[i] for i in sorted(keep)], lowest

    def _lexeme_freqs(self, cur: psycopg.Cursor[Any], table: str) -> dict[str, float]:
        """Share of rows holding each of the column's most common lexemes (pg_stats),
        read at most once a minute per table."""
        now = time.monotonic()
        cached = self._freqs.get(table)
        if cached is not None and now - cached[0] < 60.0:
            return cached[1]
        row = cur.execute("SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
                          "WHERE schemaname = current_schema() AND tablename = %s AND attname = 'tsv'",
                          (table,)).fetchone()
        freqs = dict(zip(row[0], row[1])) if row and row[0] else {}  # (the freqs end with 3 summary values)
        self._freqs[table] = (now, freqs)
        return freqs

    def snapshot(self, tenant: Tenant, model_id: str | None) -> Snapshot:
        key = (tenant.namespace, tenant.user_id)
        with self._read(consistent=True) as cur:
            row = cur.execute("SELECT revision FROM tenants WHERE namespace=%s AND user_id=%s", key).fetchone()
            revision = int(row[0]) if row else 0
            rows = cur.execute("SELECT key, session_key, position, event_time, role, speaker FROM episodes "
                               "WHERE namespace=%s AND user_id=%s ORDER BY session_key, position", key).fetchall()
            sessions = dict(cur.execute("SELECT key, session_id FROM sessions WHERE namespace=%s AND user_id=%s",
                                        key).fetchall())
            centroids = cur.execute(
                "SELECT e.session_key, vector_send(avg(m.vec::vector)) FROM embeddings m "
                "JOIN episodes e ON e.key = m.episode_key WHERE m.namespace=%s AND m.user_id=%s AND m.model_id=%s "
                "GROUP BY e.session_key ORDER BY e.session_key", (*key, model_id)).fetchall() if model_id else []
        n = len(rows)
        if centroids:
            mat = np.stack([np.frombuffer(c, dtype=">f4", offset=4) for _, c in centroids]).astype(np.float32)
            norms = np.linalg.norm(mat, axis=1, keepdims=True)
            mat = np.divide(mat, norms, out=np.zeros_like(mat), where=norms > 0)
        else:
            mat = np.zeros((0, 0), np.float32)
        return Snapshot(
            revision=revision,
            keys=np.fromiter((r[0] for r in rows), np.int64, n),
            session_keys=np.fromiter((r[1] for r in rows), np.int64, n),
            positions=np.fromiter((r[2] for r in rows), np.int64, n),
            times=np.fromiter((r[3] for r in rows), np.int64, n),
            roles=tuple(r[4] for r in rows),
            speakers=tuple(r[5] for r in rows),
            session_ids={int(k): v for k, v in sessions.items()},
            vectors=np.zeros((0, 0), np.float32),
            vector_rows=np.zeros(0, np.int64),
            session_vectors=(np.fromiter((int(k) for k, _ in centroids), np.int64, len(centroids)), mat),
        )

    def dense_turns(
        self, tenant: Tenant, vector: np.ndarray, model_id: str, *, limit: int,
        start: datetime | None = None, end: datetime | None = None,
    ) -> list[tuple[int, float]] | None:
        q = np.asarray(vector, np.float32).ravel()
        dims = int(q.shape[0])
        if dims == 0 or limit <= 0 or not np.isfinite(q).all():
            return []
        where = f"namespace=%s AND user_id=%s AND model_id=%s AND dims = {dims}"
        args: list[Any] = [tenant.namespace, tenant.user_id, model_id]
        if start is not None:
            where += " AND event_time >= %s"
            args.append(to_micros(start))
        if end is not None:
            where += " AND event_time < %s"
            args.append(to_micros(end))
        text = vec_literal(q)
        with self._read() as cur:
            n = self._vector_count(cur, tenant, model_id, dims, where, args, windowed=start is not None)
            if n == 0:
                return []
            rows: list[tuple[Any, ...]] = []
            exact = True
            graph = n >= self.exact_below and dims <= HNSW_MAX_DIMS and self._has_graph(cur, tenant, dims)
            if n >= self.exact_below and dims <= HNSW_MAX_DIMS and not graph:
                self._request_graph("build", tenant, dims)  # answered exactly until it is built
            if graph:
                ef = min(1000, max(self.ef_search, 2 * limit))
                cur.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                            "set_config('hnsw.ef_search', %s, true)", (str(ef),))
                rows = cur.execute(
                    f"SELECT k, 1 - d FROM (SELECT episode_key AS k, vec::halfvec({dims}) <=> %s::halfvec({dims}) "
                    f"AS d FROM embeddings WHERE {where} ORDER BY d LIMIT %s) t ORDER BY d, k",
                    # Planned for its values every time: only a custom plan can prove that the
                    # tenant filter implies the graph's predicate (psycopg prepares a query
                    # after 5 runs; 5 runs later the server used a generic plan, which cannot).
                    (text, *args, _limit(limit)), prepare=False).fetchall()
                self.dense_counts["hnsw"] += 1
                exact = len(rows) < limit  # short: fewer than asked (n may count rows past ``end``)
                if exact:
                    self.dense_counts["short"] += 1
            else:
                self.dense_counts["exact"] += 1
            if exact:
                # Small tenant, no graph yet, or the graph came back short: exact. ``vec``
                # without the dimension cast is not the indexed expression: never HNSW.
                rows = cur.execute(
                    f"SELECT episode_key, 1 - (vec <=> %s::halfvec) AS c FROM embeddings WHERE {where} "
                    "ORDER BY vec <=> %s::halfvec, episode_key LIMIT %s", (text, *args, text, _limit(limit))
                ).fetchall()
        return [(int(k), float(c)) for k, c in rows if c == c]  # zero vectors: NaN cosine, no neighbour

    def turn_vectors(self, tenant: Tenant, model_id: str,
                     keys: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        from .sqlite import _key_vectors  # noqa: PLC0415 (the same decoding of float16 rows)

        sql = ("SELECT episode_key, halfvec_send(vec) FROM embeddings "
               "WHERE namespace=%s AND user_id=%s AND model_id=%s")
        args: list[Any] = [tenant.namespace, tenant.user_id, model_id]
        if keys is not None:
            sql += " AND episode_key = ANY(%s)"
            args.append(sorted({int(k) for k in keys}))
        with self._read() as cur:
            rows = cur.execute(sql + " ORDER BY episode_key", args).fetchall()
        return _key_vectors([r[0] for r in rows], [halfvec_bytes(r[1]) for r in rows])

    def _vector_count(self, cur: psycopg.Cursor[Any], tenant: Tenant, model_id: str, dims: int, where: str,
                      args: list[Any], *, windowed: bool) -> int:
        """How many of the tenant's vectors match, counted no further than ``exact_below``
        (an index scan: ~5 ms for a big tenant). A query without a start time (most: the
        retriever's end is 'now') uses the tenant's whole count instead, kept per
        revision, and lets an index scan that comes back short fall back to exact."""
        sql = f"SELECT count(*) FROM (SELECT 1 FROM embeddings WHERE {{}} LIMIT %s) t"  # noqa: S608
        if windowed:
            return int(cur.execute(sql.format(where), (*args, self.exact_below)).fetchone()[0])
        row = cur.execute("SELECT revision FROM tenants WHERE namespace=%s AND user_id=%s",
                          (tenant.namespace, tenant.user_id)).fetchone()
        key = (tenant, model_id, dims)
        cached = self._vec_counts.get(key)
        if row is not None and cached is not None and cached[0] == row[0]:
            return cached[1]
        n = int(cur.execute(sql.format(f"namespace=%s AND user_id=%s AND model_id=%s AND dims = {dims}"),
                            (tenant.namespace, tenant.user_id, model_id, self.exact_below)).fetchone()[0])
        if row is not None:
            if len(self._vec_counts) > 10_000:
                self._vec_counts.clear()
            self._vec_counts[key] = (int(row[0]), n)
        return n

    def export_rows(
        self, tenant: Tenant | None, namespace: str | None = None
    ) -> Iterator[tuple[Episode, np.ndarray | None, str | None]]:
        tenants = [tenant] if tenant is not None else self.tenants(namespace)
        for t in tenants:
            with self._read() as cur:
                rows = cur.execute(
                    f"SELECT {_EP_COLS}, halfvec_send(m.vec), m.model_id {_EP_JOIN} "
                    "LEFT JOIN embeddings m ON m.episode_key = e.key "
                    "WHERE e.namespace=%s AND e.user_id=%s ORDER BY e.session_key, e.position",
                    (t.namespace, t.user_id)).fetchall()
            for row in rows:
                vec = None if row[-2] is None else np.frombuffer(halfvec_bytes(row[-2]), dtype=np.float16).copy()
                yield _episode(row), vec, row[-1]

    def tenants(self, namespace: str | None = None) -> list[Tenant]:
        with self._read() as cur:
            if namespace is None:
                rows = cur.execute("SELECT namespace, user_id FROM tenants ORDER BY namespace, user_id").fetchall()
            else:
                rows = cur.execute("SELECT namespace, user_id FROM tenants WHERE namespace=%s ORDER BY user_id",
                                   (namespace,)).fetchall()
        return [Tenant(*r) for r in rows]

    def stats(self, tenant: Tenant | None, namespace: str | None = None) -> Stats:
        where, args = "TRUE", []
        if tenant is not None:
            where, args = "namespace=%s AND user_id=%s", [tenant.namespace, tenant.user_id]
        elif namespace is not None:
            where, args = "namespace=%s", [namespace]
        with self._read(consistent=True) as cur:
            users = cur.execute(f"SELECT count(*) FROM tenants WHERE {where}", args).fetchone()[0]
            sessions = cur.execute(f"SELECT count(*) FROM sessions WHERE {where}", args).fetchone()[0]
            n, first, last = cur.execute(
                f"SELECT count(*), min(event_time), max(event_time) FROM episodes WHERE {where}", args).fetchone()
            embedded = cur.execute(f"SELECT count(*) FROM embeddings WHERE {where}", args).fetchone()[0]
            size = cur.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return Stats(
            namespace=tenant.namespace if tenant else namespace, user_id=tenant.user_id if tenant else None,
            users=users, sessions=sessions, episodes=n, embedded_episodes=embedded,
            first_time=from_micros(first) if first is not None else None,
            last_time=from_micros(last) if last is not None else None, store_bytes=int(size),
        )

    def integrity_check(self) -> str:
        """What SQLite's integrity_check answers for a file, asked of the database: that it
        answers and carries this schema. (PostgreSQL checks its own pages; amcheck is the
        tool for a deeper look.)"""
        version = self.schema_version
        return "ok" if version == LATEST else f"schema version {version}, expected {LATEST}"


def or_query(n: int) -> str:
    """Any of ``n`` words: one phraseto_tsquery per word (it reads its input as plain text,
    never as tsquery syntax), OR-ed with ``||``; words that are all stop words drop out."""
    return " || ".join(["phraseto_tsquery('english', %s)"] * n)


def _terms(terms: Sequence[str]) -> list[str]:
    return [t for t in terms if t.strip()]


def _limit(n: int) -> int:
    return max(0, int(n))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


