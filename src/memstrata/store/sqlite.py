"""SQLite store: one file, WAL journal, ``synchronous=FULL``, FTS5 for BM25.

Choices and why:
- WAL + synchronous=FULL: every acknowledged write survives power loss, readers never
  block the writer.
- ``secure_delete=ON``: freed pages are zeroed, so deleted text does not linger in the
  file; ``erase`` also merges the FTS5 segments and truncates the WAL.
- Tenancy: every statement filters on (namespace, user_id). FTS5 rows carry a per-tenant
  ``scope`` token that every MATCH must AND with, so a lexical query only walks the
  tenant's postings. BM25 statistics (IDF, average length) are per file, not per tenant:
  another tenant's words can shift weights slightly, never what is returned.
- Embeddings are float16 blobs (768 bytes for 384 dims), loaded per tenant as one
  float32 matrix and cached by the caller against ``revision``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConflictError, StoreError
from ..model import Episode, SessionInfo, Stats
from ..timeutil import from_micros, to_micros
from .base import EpisodeDraft, Snapshot, Tenant
from .migrations import LATEST, MIGRATIONS
from .sqlite_copy import CopyMixin
from .rows import episode as _episode
from .sqlite_keys import KeysMixin
from .sqlite_lexical import DEFAULT_BUDGET, DfCache, create_vocabs, plan
from .sqlite_notes import NotesMixin

_EP_COLS = (
    "e.key, e.id, e.namespace, e.user_id, e.agent_id, s.session_id, e.position, e.role, "
    "e.speaker, e.content, e.event_time, e.ingest_time, e.metadata, e.written_by"
)
_SQL_VAR_CHUNK = 500
# Whose words make a session's lexical document: what the user said is what the user
# asks about later; assistant replies are long and generic and dilute BM25 (measured on
# LongMemEval, see benchmarks/). Sessions with no such turn (e.g. tool logs) use all turns.
SESSION_KEY_ROLES = ("user", "event")


def scope_token(tenant: Tenant) -> str:
    """The FTS5 token that marks a tenant's rows: opaque, alphanumeric, stable."""
    digest = hashlib.blake2b(f"{tenant.namespace}\x00{tenant.user_id}".encode(), digest_size=10)
    return "zt" + digest.hexdigest()


log = logging.getLogger("memstrata.store")


class SQLiteStore(NotesMixin, KeysMixin, CopyMixin):
    """A ``Store`` in one SQLite file (``:memory:`` works for throwaway use)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 30.0,
                 session_key_roles: tuple[str, ...] = SESSION_KEY_ROLES,
                 lexical_budget: int = DEFAULT_BUDGET) -> None:
        self.path = str(path)
        self.lexical_budget = lexical_budget  # see sqlite_lexical.py
        self._df = DfCache()
        self._session_roles = tuple(session_key_roles)
        self.url = f"sqlite:///{self.path}"
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot open store {self.path!r}: directory {str(parent)!r} does not exist")
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path!r}: {exc}") from exc
        self._timeout_s = timeout_s
        self._lock = threading.RLock()
        with self._translate("open"):
            self._configure()
            self._migrate()
            create_vocabs(self._conn)

    # -- connection set-up -------------------------------------------------------
    def _configure(self) -> None:
        c = self._conn
        mode = self._retry_locked(lambda: c.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        if mode.lower() != "wal" and self.path != ":memory:":
            raise StoreError(f"store {self.path!r}: could not enable WAL (journal_mode={mode})")
        for pragma in ("synchronous=FULL", "foreign_keys=ON", "secure_delete=ON",
                       "temp_store=MEMORY", "cache_size=-65536"):
            c.execute(f"PRAGMA {pragma}")

    def _retry_locked(self, fn: Any) -> Any:
        """Run ``fn``, retrying with backoff for up to the busy timeout while the file is
        locked. Switching a new file to WAL needs a lock SQLite does not wait for (its busy
        handler is not called there): processes opening one new file at once got
        'database is locked' at open (6 processes, 1 in 10 opens failed)."""
        deadline, pause = time.monotonic() + self._timeout_s, 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > LATEST:
            raise StoreError(
                f"store {self.path!r} has schema version {version}, newer than this memstrata "
                f"understands ({LATEST}); upgrade memstrata"
            )
        for number in range(version + 1, LATEST + 1):
            with self._write():
                # Processes that open a new file at once all read version 0, then queue on
                # the writer lock: the version read before the lock is stale. Re-read it
                # under the lock (BEGIN IMMEDIATE sees the latest commit), so each step runs
                # once ("table tenants already exists" otherwise; bench procs found it).
                if self.schema_version >= number:
                    continue
                for statement in _split_sql(MIGRATIONS[number - 1]):
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={number}")

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            msg = str(exc)
            if "full" in msg.lower():
                raise StoreError(f"{what} failed: the disk is full for {self.path!r} ({msg}); "
                                 "nothing was written") from exc
            if "malformed" in msg.lower() or "not a database" in msg.lower():
                raise StoreError(f"{what} failed: {self.path!r} is corrupt or not a memstrata store ({msg})") from exc
            raise StoreError(f"{what} failed: {msg}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the writer lock is taken up front, so a busy file
        waits (busy timeout) instead of failing half-way."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                # SQLite rolls a transaction back by itself on some errors (SQLITE_FULL,
                # IOERR); a second ROLLBACK would raise and hide the real error.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except BaseException:  # e.g. the WAL cannot grow: the disk is full
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate("read"):
            yield self._conn

    def wait_indexes(self, timeout: float | None = None) -> bool:
        return True  # every index is kept in step by the write itself

    def close(self) -> None:
        with self._lock:
            try:  # leave no deleted text in the WAL if an earlier truncate was blocked
                self._truncate_wal(patience=0.0)
            except StoreError:
                pass
            self._conn.close()

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
        token = scope_token(tenant)
        with self._translate("add"), self._write() as c:
            self._ensure_tenant(c, tenant)
            session_keys: dict[str, int] = {}
            next_pos: dict[int, int] = {}
            stored: list[Episode] = []
            rows = []
            for draft in drafts:
                skey = session_keys.get(draft.session_id)
                if skey is None:
                    skey = self._session_key(c, tenant, draft.session_id, token)
                    session_keys[draft.session_id] = skey
                    next_pos[skey] = c.execute(
                        "SELECT COALESCE(MAX(position) + 1, 0) FROM episodes WHERE session_key=?", (skey,)
                    ).fetchone()[0]
                position = draft.position if draft.position is not None else next_pos[skey]
                next_pos[skey] = max(next_pos[skey], position + 1)
                rows.append((
                    draft.id, tenant.namespace, tenant.user_id, draft.agent_id, skey, position,
                    draft.role, draft.speaker, draft.content, to_micros(draft.event_time),
                    to_micros(draft.ingest_time), json.dumps(draft.metadata, ensure_ascii=False), token,
                    draft.written_by,
                ))
                stored.append(Episode(
                    id=draft.id, namespace=tenant.namespace, user_id=tenant.user_id,
                    session_id=draft.session_id, position=position, role=draft.role,  # type: ignore[arg-type]
                    content=draft.content, event_time=draft.event_time, ingest_time=draft.ingest_time,
                    speaker=draft.speaker, agent_id=draft.agent_id, metadata=draft.metadata,
                    written_by=draft.written_by,
                ))
            first_key = c.execute("SELECT COALESCE(MAX(key), 0) FROM episodes").fetchone()[0]
            try:
                c.executemany(
                    "INSERT INTO episodes (id, namespace, user_id, agent_id, session_key, position, role, "
                    "speaker, content, event_time, ingest_time, metadata, scope, written_by) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError("add failed: an episode with one of these ids (or this session position) "
                                    "already exists; nothing was stored") from exc
            if vectors is not None and model_id is not None:
                self._store_vectors(c, [d.id for d in drafts], vectors, model_id)
            if enqueue:  # background note processing; same transaction as the episodes
                c.execute(
                    "INSERT INTO pending (episode_key, namespace, user_id) SELECT key, namespace, user_id "
                    "FROM episodes WHERE key > ? AND namespace=? AND user_id=?",
                    (first_key, tenant.namespace, tenant.user_id),
                )
            for skey in session_keys.values():
                self._refresh_session(c, skey)
            self._bump(c, tenant)
        return stored

    def _store_vectors(self, c: sqlite3.Connection, ids: list[str], vectors: np.ndarray, model_id: str) -> None:
        half = np.asarray(vectors, dtype=np.float16)
        keep = ~np.isnan(half).any(axis=1)
        keys = {}
        for chunk in _chunks([i for i, k in zip(ids, keep) if k]):
            q = f"SELECT id, key FROM episodes WHERE id IN ({','.join('?' * len(chunk))})"
            keys.update(dict(c.execute(q, chunk).fetchall()))
        c.executemany(
            "INSERT OR REPLACE INTO embeddings (episode_key, model_id, vec) VALUES (?,?,?)",
            [(keys[i], model_id, half[n].tobytes()) for n, i in enumerate(ids) if keep[n]],
        )

    def _ensure_tenant(self, c: sqlite3.Connection, tenant: Tenant) -> None:
        # A tenant's revisions start at the wall clock (microseconds), not at 0: after an
        # erase (or a restore) the counter must not repeat a value that a cache in this or
        # another process still holds for the erased data (each write takes >1 µs).
        c.execute("INSERT OR IGNORE INTO tenants (namespace, user_id, revision) VALUES (?, ?, ?)",
                  (tenant.namespace, tenant.user_id, time.time_ns() // 1000))

    def _bump(self, c: sqlite3.Connection, tenant: Tenant) -> None:
        c.execute("UPDATE tenants SET revision = revision + 1 WHERE namespace=? AND user_id=?",
                  (tenant.namespace, tenant.user_id))

    def _session_key(self, c: sqlite3.Connection, tenant: Tenant, session_id: str, token: str) -> int:
        row = c.execute(
            "SELECT key FROM sessions WHERE namespace=? AND user_id=? AND session_id=?",
            (tenant.namespace, tenant.user_id, session_id),
        ).fetchone()
        if row:
            return int(row[0])
        cur = c.execute(
            "INSERT INTO sessions (namespace, user_id, session_id, scope) VALUES (?,?,?,?)",
            (tenant.namespace, tenant.user_id, session_id, token),
        )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def _refresh_session(self, c: sqlite3.Connection, skey: int) -> None:
        """Recompute a session's span and lexical document from its episodes."""
        n, first, last = c.execute(
            "SELECT COUNT(*), MIN(event_time), MAX(event_time) FROM episodes WHERE session_key=?", (skey,)
        ).fetchone()
        if n == 0:
            c.execute("DELETE FROM sessions WHERE key=?", (skey,))
            return
        marks = ",".join("?" * len(self._session_roles))
        parts = [r[0] for r in c.execute(
            f"SELECT content FROM episodes WHERE session_key=? AND role IN ({marks}) ORDER BY position",
            (skey, *self._session_roles))]
        if not parts:
            parts = [r[0] for r in c.execute(
                "SELECT content FROM episodes WHERE session_key=? ORDER BY position", (skey,))]
        doc = "\n".join(parts)
        c.execute("UPDATE sessions SET n_episodes=?, first_time=?, last_time=?, doc=? WHERE key=?",
                  (n, first, last, doc, skey))

    def delete_episodes(self, tenant: Tenant, episode_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(episode_ids))
        if not ids:
            return 0
        with self._translate("delete"), self._write() as c:
            found: list[tuple[int, int]] = []
            for chunk in _chunks(ids):
                found += c.execute(
                    f"SELECT key, session_key FROM episodes WHERE namespace=? AND user_id=? "
                    f"AND id IN ({','.join('?' * len(chunk))})",
                    (tenant.namespace, tenant.user_id, *chunk),
                ).fetchall()
            self._delete_keys(c, tenant, [k for k, _ in found])
            for skey in {s for _, s in found}:
                self._refresh_session(c, skey)
            if found:
                self._bump(c, tenant)
        if found:
            self._scrub()
        return len(found)

    def delete_session(self, tenant: Tenant, session_id: str) -> int:
        with self._read() as c:
            ids = [r[0] for r in c.execute(
                "SELECT e.id FROM episodes e JOIN sessions s ON s.key = e.session_key "
                "WHERE s.namespace=? AND s.user_id=? AND s.session_id=?",
                (tenant.namespace, tenant.user_id, session_id))]
        return self.delete_episodes(tenant, ids)

    def _delete_keys(self, c: sqlite3.Connection, tenant: Tenant, keys: list[int]) -> None:
        self._cascade_notes(c, tenant, keys)
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            c.execute(f"DELETE FROM embeddings WHERE episode_key IN ({marks})", chunk)
            c.execute(f"DELETE FROM note_sources WHERE episode_key IN ({marks})", chunk)
            c.execute(f"DELETE FROM episodes WHERE key IN ({marks})", chunk)

    def erase_tenant(self, tenant: Tenant) -> int:
        key = (tenant.namespace, tenant.user_id)
        with self._translate("erase"), self._write() as c:
            n = c.execute("SELECT COUNT(*) FROM episodes WHERE namespace=? AND user_id=?", key).fetchone()[0]
            c.execute("DELETE FROM embeddings WHERE episode_key IN "
                      "(SELECT key FROM episodes WHERE namespace=? AND user_id=?)", key)
            c.execute("DELETE FROM notes WHERE namespace=? AND user_id=?", key)
            c.execute("DELETE FROM note_history WHERE namespace=? AND user_id=?", key)
            c.execute("DELETE FROM summaries WHERE namespace=? AND user_id=?", key)
            c.execute("DELETE FROM pending WHERE namespace=? AND user_id=?", key)
            c.execute("DELETE FROM episodes WHERE namespace=? AND user_id=?", key)
            c.execute("DELETE FROM sessions WHERE namespace=? AND user_id=?", key)
            c.execute("DELETE FROM tenants WHERE namespace=? AND user_id=?", key)
        self._scrub(vacuum=True)
        return int(n)

    def _scrub(self, *, vacuum: bool = False) -> None:
        """Make deleted text unrecoverable from the files: merge FTS5 segments (a delete
        only adds a tombstone until then), then checkpoint and truncate the WAL, whose
        frames still hold old page images. secure_delete zeroes the freed pages and
        cells, but not copies of cells that b-tree rebalancing left in the free space of
        live pages (memstrata verify-erased found them in summaries and notes pages):
        ``vacuum`` (erase) rewrites the whole file, so none can remain."""
        with self._translate("scrub"), self._write() as c:
            for fts in ("episodes_fts", "sessions_fts", "notes_fts"):
                compact_fts(c, fts)
        if vacuum:
            with self._lock, self._translate("vacuum"):
                self._conn.execute("VACUUM")
        if not self._truncate_wal(patience=min(10.0, self._timeout_s) if vacuum else 1.0) and vacuum:
            # An erase is the operation users rely on to prove text is gone: say so rather than
            # report an erase the files do not show yet. Running it again (or closing the other
            # connection) finishes it; verify-erased checks. A plain delete does not raise (its
            # rows are gone and committed: failing it would make callers retry a done delete);
            # the WAL is truncated by the next scrub or at close.
            raise StoreError(f"the erase in {self.path!r} is committed, but another connection kept a read "
                             "transaction open, so old copies of the text remain in the write-ahead log; "
                             "run the erase again once that reader is done (memstrata verify-erased checks)")

    def _truncate_wal(self, patience: float) -> bool:
        """Checkpoint and truncate the WAL, retrying with backoff for up to ``patience`` s while
        readers of other connections hold old snapshots; True when the WAL is empty."""
        if self.path == ":memory:":
            return True
        deadline, pause = time.monotonic() + patience, 0.01
        while True:
            with self._lock, self._translate("checkpoint"):
                busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return True
            if time.monotonic() + pause > deadline:
                log.warning("store %s: WAL not truncated (a reader of another connection is active); "
                            "it will be at the next delete or at close", self.path)
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    # -- reads -------------------------------------------------------------------
    def revision(self, tenant: Tenant) -> int:
        with self._read() as c:
            row = c.execute("SELECT revision FROM tenants WHERE namespace=? AND user_id=?",
                            (tenant.namespace, tenant.user_id)).fetchone()
        return int(row[0]) if row else 0

    def get_episode(self, tenant: Tenant, episode_id: str) -> Episode | None:
        with self._read() as c:
            row = c.execute(
                f"SELECT {_EP_COLS} FROM episodes e JOIN sessions s ON s.key = e.session_key "
                "WHERE e.id=? AND e.namespace=? AND e.user_id=?",
                (episode_id, tenant.namespace, tenant.user_id),
            ).fetchone()
        return _episode(row) if row else None

    def episodes_by_keys(self, tenant: Tenant, keys: Sequence[int]) -> dict[int, Episode]:
        out: dict[int, Episode] = {}
        with self._read() as c:
            for chunk in _chunks([int(k) for k in keys]):
                for row in c.execute(
                    f"SELECT {_EP_COLS} FROM episodes e JOIN sessions s ON s.key = e.session_key "
                    # '+' keeps the planner on rowid lookups: with the tenant index it walked
                    # every row of a large tenant (17 ms per call at 200k turns).
                    f"WHERE +e.namespace=? AND +e.user_id=? AND e.key IN ({','.join('?' * len(chunk))})",
                    (tenant.namespace, tenant.user_id, *chunk),
                ):
                    out[int(row[0])] = _episode(row)
        return out

    def list_episodes(
        self, tenant: Tenant, *, session_id: str | None = None, start: datetime | None = None,
        end: datetime | None = None, limit: int = 100, offset: int = 0,
    ) -> list[Episode]:
        where = ["e.namespace=?", "e.user_id=?"]
        args: list[Any] = [tenant.namespace, tenant.user_id]
        if session_id is not None:
            where.append("s.session_id=?")
            args.append(session_id)
        if start is not None:
            where.append("e.event_time>=?")
            args.append(to_micros(start))
        if end is not None:
            where.append("e.event_time<?")
            args.append(to_micros(end))
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_EP_COLS} FROM episodes e JOIN sessions s ON s.key = e.session_key "
                f"WHERE {' AND '.join(where)} ORDER BY e.event_time, e.session_key, e.position "
                "LIMIT ? OFFSET ?",
                (*args, int(limit), int(offset)),
            ).fetchall()
        return [_episode(r) for r in rows]

    def list_sessions(self, tenant: Tenant) -> list[SessionInfo]:
        with self._read() as c:
            rows = c.execute(
                "SELECT session_id, n_episodes, first_time, last_time FROM sessions "
                "WHERE namespace=? AND user_id=? ORDER BY first_time, key",
                (tenant.namespace, tenant.user_id),
            ).fetchall()
        return [SessionInfo(r[0], tenant.namespace, tenant.user_id, r[1], from_micros(r[2]), from_micros(r[3]))
                for r in rows]

    def neighbours(self, tenant: Tenant, episode_id: str, *, radius: int = 1) -> list[Episode]:
        base = f"SELECT {_EP_COLS} FROM episodes e JOIN sessions s ON s.key = e.session_key "
        with self._read() as c:
            row = c.execute("SELECT session_key, position FROM episodes WHERE id=? AND namespace=? AND user_id=?",
                            (episode_id, tenant.namespace, tenant.user_id)).fetchone()
            if row is None:
                return []
            before = c.execute(base + "WHERE e.session_key=? AND e.position<? ORDER BY e.position DESC LIMIT ?",
                               (row[0], row[1], radius)).fetchall()
            rest = c.execute(base + "WHERE e.session_key=? AND e.position>=? ORDER BY e.position LIMIT ?",
                             (row[0], row[1], radius + 1)).fetchall()
        return [_episode(r) for r in [*reversed(before), *rest]]

    def neighbours_many(self, tenant: Tenant, episode_ids: Sequence[str], *,
                        radius: int = 1) -> dict[str, list[Episode]]:
        out = {}
        for episode_id in dict.fromkeys(episode_ids):  # in-process: a query each costs microseconds
            window = self.neighbours(tenant, episode_id, radius=radius)
            if window:
                out[episode_id] = window
        return out

    def lexical_turns(
        self, tenant: Tenant, terms: Sequence[str], *, limit: int,
        start: datetime | None = None, end: datetime | None = None,
    ) -> list[tuple[int, float]]:
        with self._read() as c:
            kept, scoped, lo, hi = plan(c, "episodes_fts", terms, self.lexical_budget, scope_token(tenant),
                                        self._df, (tenant.namespace, tenant.user_id))
        match = _match_expr(tenant, kept, "content", scoped=scoped)
        if match is None:
            return []
        where, args = "", []
        if lo is not None:
            where += " AND f.rowid BETWEEN ? AND ?"
            args += [lo, hi]
        if start is not None:
            where += " AND e.event_time >= ?"
            args.append(to_micros(start))
        if end is not None:
            where += " AND e.event_time < ?"
            args.append(to_micros(end))
        with self._read() as c:
            rows = c.execute(
                "SELECT f.rowid, bm25(episodes_fts, 1.0, 0.0) AS score FROM episodes_fts f "
                "JOIN episodes e ON e.key = f.rowid "
                f"WHERE episodes_fts MATCH ? AND e.namespace=? AND e.user_id=?{where} "
                "ORDER BY score LIMIT ?",
                (match, tenant.namespace, tenant.user_id, *args, int(limit)),
            ).fetchall()
        return [(int(k), -float(s)) for k, s in rows]  # FTS5 bm25 is negative: lower is better

    def lexical_sessions(self, tenant: Tenant, terms: Sequence[str], *, limit: int) -> list[tuple[int, float]]:
        with self._read() as c:
            kept, scoped, lo, hi = plan(c, "sessions_fts", terms, self.lexical_budget, scope_token(tenant),
                                        self._df, (tenant.namespace, tenant.user_id))
        match = _match_expr(tenant, kept, "doc", scoped=scoped)
        if match is None:
            return []
        with self._read() as c:
            rows = c.execute(
                "SELECT f.rowid, bm25(sessions_fts, 1.0, 0.0) AS score FROM sessions_fts f "
                "JOIN sessions s ON s.key = f.rowid "
                "WHERE sessions_fts MATCH ? AND f.rowid BETWEEN ? AND ? AND s.namespace=? AND s.user_id=? "
                "ORDER BY score LIMIT ?",
                (match, lo or 0, _MAX_KEY if hi is None else hi, tenant.namespace, tenant.user_id, int(limit)),
            ).fetchall()
        return [(int(k), -float(s)) for k, s in rows]

    def snapshot(self, tenant: Tenant, model_id: str | None) -> Snapshot:
        with self._read() as c:
            c.execute("BEGIN")  # one consistent read of revision + rows
            try:
                row = c.execute("SELECT revision FROM tenants WHERE namespace=? AND user_id=?",
                                (tenant.namespace, tenant.user_id)).fetchone()
                revision = int(row[0]) if row else 0
                rows = c.execute(
                    "SELECT e.key, e.session_key, e.position, e.event_time, e.role, e.speaker, "
                    "m.vec FROM episodes e LEFT JOIN embeddings m ON m.episode_key = e.key AND m.model_id IS ? "
                    "WHERE e.namespace=? AND e.user_id=? ORDER BY e.session_key, e.position",
                    (model_id, tenant.namespace, tenant.user_id),
                ).fetchall()
                sessions = dict(c.execute("SELECT key, session_id FROM sessions WHERE namespace=? AND user_id=?",
                                          (tenant.namespace, tenant.user_id)).fetchall())
            finally:
                c.execute("COMMIT")
        vec_rows = [i for i, r in enumerate(rows) if r[6] is not None]
        if vec_rows:
            blob = b"".join(rows[i][6] for i in vec_rows)
            vectors = np.frombuffer(blob, dtype=np.float16).reshape(len(vec_rows), -1).astype(np.float32)
        else:
            vectors = np.zeros((0, 0), dtype=np.float32)
        return Snapshot(
            revision=revision,
            keys=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            session_keys=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            positions=np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
            times=np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)),
            roles=tuple(r[4] for r in rows),
            speakers=tuple(r[5] for r in rows),
            session_ids={int(k): v for k, v in sessions.items()},
            vectors=vectors,
            vector_rows=np.asarray(vec_rows, dtype=np.int64),
        )

    def dense_turns(
        self, tenant: Tenant, vector: np.ndarray, model_id: str, *, limit: int,
        start: datetime | None = None, end: datetime | None = None,
    ) -> list[tuple[int, float]] | None:
        return None  # no vector index in the file: the retriever scans the snapshot's vectors

    def turn_vectors(self, tenant: Tenant, model_id: str,
                     keys: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        sql = ("SELECT e.key, m.vec FROM embeddings m JOIN episodes e ON e.key = m.episode_key "
               "WHERE e.namespace=? AND e.user_id=? AND m.model_id=?")
        args: list[Any] = [tenant.namespace, tenant.user_id, model_id]
        rows: list[Any] = []
        with self._read() as c:
            if keys is None:
                rows = c.execute(sql + " ORDER BY e.key", args).fetchall()
            else:
                wanted = sorted({int(k) for k in keys})
                for lo in range(0, len(wanted), 500):
                    chunk = wanted[lo:lo + 500]
                    rows += c.execute(sql + f" AND e.key IN ({','.join('?' * len(chunk))}) ORDER BY e.key",
                                      [*args, *chunk]).fetchall()
        return _key_vectors([r[0] for r in rows], [r[1] for r in rows])

    def export_rows(
        self, tenant: Tenant | None, namespace: str | None = None
    ) -> Iterator[tuple[Episode, np.ndarray | None, str | None]]:
        tenants = [tenant] if tenant is not None else self.tenants(namespace)
        for t in tenants:
            with self._read() as c:
                rows = c.execute(
                    f"SELECT {_EP_COLS}, m.vec, m.model_id FROM episodes e "
                    "JOIN sessions s ON s.key = e.session_key "
                    "LEFT JOIN embeddings m ON m.episode_key = e.key "
                    "WHERE e.namespace=? AND e.user_id=? ORDER BY e.session_key, e.position",
                    (t.namespace, t.user_id),
                ).fetchall()
            for row in rows:
                vec = None if row[-2] is None else np.frombuffer(row[-2], dtype=np.float16).copy()
                yield _episode(row), vec, row[-1]

    def tenants(self, namespace: str | None = None) -> list[Tenant]:
        with self._read() as c:
            if namespace is None:
                rows = c.execute("SELECT namespace, user_id FROM tenants ORDER BY namespace, user_id").fetchall()
            else:
                rows = c.execute("SELECT namespace, user_id FROM tenants WHERE namespace=? ORDER BY user_id",
                                 (namespace,)).fetchall()
        return [Tenant(*r) for r in rows]

    def stats(self, tenant: Tenant | None, namespace: str | None = None) -> Stats:
        where, args = "1=1", []
        if tenant is not None:
            where, args = "namespace=? AND user_id=?", [tenant.namespace, tenant.user_id]
        elif namespace is not None:
            where, args = "namespace=?", [namespace]
        with self._read() as c:
            users = c.execute(f"SELECT COUNT(*) FROM tenants WHERE {where}", args).fetchone()[0]
            sessions = c.execute(f"SELECT COUNT(*) FROM sessions WHERE {where}", args).fetchone()[0]
            n, first, last = c.execute(
                f"SELECT COUNT(*), MIN(event_time), MAX(event_time) FROM episodes WHERE {where}", args
            ).fetchone()
            embedded = c.execute(
                f"SELECT COUNT(*) FROM embeddings WHERE episode_key IN (SELECT key FROM episodes WHERE {where})",
                args,
            ).fetchone()[0]
        size = None
        if self.path != ":memory:":
            size = sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))
        return Stats(
            namespace=tenant.namespace if tenant else namespace, user_id=tenant.user_id if tenant else None,
            users=users, sessions=sessions, episodes=n, embedded_episodes=embedded,
            first_time=from_micros(first) if first is not None else None,
            last_time=from_micros(last) if last is not None else None, store_bytes=size,
        )

    def _chunked_keys(self, c: sqlite3.Connection, sql: str, ids: Sequence[Any],
                      prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return _chunked(c, sql, ids, prefix)

    def integrity_check(self) -> str:
        with self._read() as c:
            return str(c.execute("PRAGMA integrity_check").fetchone()[0])


# FTS5 in SQLite 3.40 (Python's here) writes the segment an 'optimize' produces one level
# above the highest, so every delete that follows an add left the index one level taller;
# past 2000 levels FTS5 rejects the index as corrupt ("vtable constructor failed") and
# lexical search fails for every tenant of the file (`memstrata bench crash` hit it after
# ~2000 deletes). 'rebuild' re-indexes from the content table (all three FTS tables are
# external-content) and resets the structure to one level; it also leaves no trace of
# deleted rows, so it serves the scrub as well as 'optimize' does.
FTS_MAX_LEVELS = 32


def compact_fts(c: sqlite3.Connection, table: str) -> None:
    """Merge an FTS5 index into one segment (deleted rows leave no postings behind),
    rebuilding it instead when its structure has grown tall (see FTS_MAX_LEVELS)."""
    row = c.execute(f"SELECT block FROM {table}_data WHERE id=10").fetchone()  # the structure record
    command = "rebuild" if row is not None and fts_levels(row[0]) >= FTS_MAX_LEVELS else "optimize"
    c.execute(f"INSERT INTO {table}({table}) VALUES ('{command}')")


def fts_levels(structure: bytes) -> int:
    """Level count of an FTS5 structure record: a 4-byte cookie, an optional 4-byte
    "structure v2" marker (newer SQLite), then the count as an SQLite varint. A record
    this cannot read counts as tall, so the index is rebuilt."""
    i = 8 if structure[4:8] == b"\xff\x00\x00\x01" else 4
    value = 0
    for n, byte in enumerate(structure[i:i + 9]):
        if n == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    return FTS_MAX_LEVELS


def _chunked(c: sqlite3.Connection, sql: str, ids: Sequence[Any], prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (with one ``{}`` for the IN list) over ``ids`` in chunks."""
    out: list[tuple[Any, ...]] = []
    for chunk in _chunks(list(ids)):
        out += c.execute(sql.format(",".join("?" * len(chunk))), (*prefix, *chunk)).fetchall()
    return out




_MAX_KEY = 2**63 - 1


def _key_vectors(keys: list[int], blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(keys, float32 rows) from little-endian float16 blobs of one dimension."""
    if not keys:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    mat = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(keys), -1).astype(np.float32)
    return np.asarray(keys, np.int64), mat


def _match_expr(tenant: Tenant, terms: Sequence[str], column: str, *, scoped: bool = True) -> str | None:
    """FTS5 query: the tenant's scope token AND any of the terms (each quoted, so no
    user text is ever parsed as FTS5 syntax). ``scoped=False`` leaves the scope out:
    the caller must then filter the tenant itself (a join on the content table)."""
    quoted = [f'"{t.replace(chr(34), chr(34) * 2)}"' for t in terms if t.strip()]
    if not quoted:
        return None
    if not scoped:
        return f'{column} : ({" OR ".join(quoted)})'
    return f'scope : "{scope_token(tenant)}" AND {column} : ({" OR ".join(quoted)})'


def _chunks(items: list[Any], size: int = _SQL_VAR_CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping CREATE TRIGGER ... END; whole."""
    statements, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            buf = []
    if "".join(buf).strip():
        statements.append("\n".join(buf))
    return statements
