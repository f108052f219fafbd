"""PostgreSQL persistence of semantic memory (notes, sources, vectors, links, history,
the pending queue, summaries) and of the servers' API keys. Mixed into
``PostgresStore``; the same behaviour as ``sqlite_notes``/``sqlite_keys``, statement for
statement, with each write one transaction that first locks the tenant's row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConflictError
from ..model import ApiKey, Episode, Link, Note, NoteChange, Summary
from ..timeutil import from_micros, to_micros
from .base import NoteSnapshot, NoteWrite, Tenant
from .rows import note_snapshot, unquoted
from .sqlite_notes import _UPDATABLE, _note

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import psycopg

_NOTE_COLS = (
    "n.key, n.id, n.namespace, n.user_id, n.content, n.context, n.keywords, n.tags, n.entities, "
    "n.subject, n.slot, n.value, n.importance, n.valid_from, n.valid_to, n.status, "
    "(SELECT id FROM notes s WHERE s.key = n.superseded_by), n.created_at, n.updated_at, "
    "n.recall_count, n.last_recalled, n.extractor"
)
_KEY_COLS = "key_id, namespace, user_id, admin, label, created_at, revoked_at, secret_hash"


def _now() -> int:
    return to_micros(datetime.now(timezone.utc))


class PgNotesMixin:
    """Semantic-memory methods of ``PostgresStore`` (see ``store.base.Store``)."""

    if TYPE_CHECKING:
        def _write(self, what: str, tenant: Tenant | None = None, *,
                   create: bool = False) -> AbstractContextManager[psycopg.Cursor[Any]]: ...
        def _read(self, *, consistent: bool = False) -> AbstractContextManager[psycopg.Cursor[Any]]: ...
        def _bump(self, cur: psycopg.Cursor[Any], tenant: Tenant) -> None: ...

    # -- queue -------------------------------------------------------------------
    def pending_tenants(self) -> list[Tenant]:
        with self._read() as cur:
            rows = cur.execute("SELECT DISTINCT namespace, user_id FROM pending ORDER BY namespace, user_id").fetchall()
        return [Tenant(ns, uid) for ns, uid in rows]

    def pending_episodes(self, tenant: Tenant, *, limit: int, max_attempts: int | None = None) -> list[tuple[int, Episode]]:
        from .postgres import _EP_COLS, _episode  # noqa: PLC0415  (shared row mapping)

        with self._read() as cur:
            rows = cur.execute(
                f"SELECT {_EP_COLS} FROM pending p JOIN episodes e ON e.key = p.episode_key "
                "JOIN sessions s ON s.key = e.session_key WHERE p.namespace=%s AND p.user_id=%s AND p.attempts < %s "
                "ORDER BY p.episode_key LIMIT %s",
                (tenant.namespace, tenant.user_id, max_attempts if max_attempts is not None else 2**62,
                 max(0, int(limit))),
            ).fetchall()
        return [(int(r[0]), _episode(r)) for r in rows]

    def pending_count(self, tenant: Tenant | None = None) -> int:
        with self._read() as cur:
            if tenant is None:
                return int(cur.execute("SELECT count(*) FROM pending").fetchone()[0])
            return int(cur.execute("SELECT count(*) FROM pending WHERE namespace=%s AND user_id=%s",
                                   (tenant.namespace, tenant.user_id)).fetchone()[0])

    def mark_pending_failed(self, tenant: Tenant, keys: Sequence[int], error: str) -> None:
        if not keys:
            return
        with self._write("mark pending", tenant) as cur:
            cur.execute("UPDATE pending SET attempts = attempts + 1, error = %s "
                        "WHERE episode_key = ANY(%s) AND namespace=%s AND user_id=%s",
                        (error[:2000], sorted({int(k) for k in keys}), tenant.namespace, tenant.user_id))

    # -- writes ------------------------------------------------------------------
    def apply_notes(self, tenant: Tenant, write: NoteWrite) -> dict[str, int]:
        from .sqlite import scope_token  # noqa: PLC0415

        if not write:
            return {}
        token = scope_token(tenant)
        now = _now()
        key_of: dict[str, int] = {}
        ns, uid = tenant.namespace, tenant.user_id
        with self._write("apply notes", tenant) as cur:
            if write.done:
                queued = {int(r[0]) for r in cur.execute(
                    "SELECT episode_key FROM pending WHERE namespace=%s AND user_id=%s AND episode_key = ANY(%s)",
                    (ns, uid, [int(k) for k in write.done]))}
                alive = self._episode_keys_of(cur, tenant, set(write.done))
                if alive - queued:  # consumed by another worker since this batch was read
                    raise ConflictError(f"{len(alive - queued)} episodes were processed by another worker")
            if write.quoted:
                quoted = sorted(set(write.quoted))
                found = cur.execute("SELECT count(*) FROM episodes WHERE namespace=%s AND user_id=%s AND id = ANY(%s)",
                                    (ns, uid, quoted)).fetchone()[0]
                if found < len(quoted):
                    # A question this batch's notes quote was deleted after the batch was
                    # read: its words must not come back. The processor redoes the batch.
                    raise ConflictError("an episode this batch quotes was deleted meanwhile")
            tenant_keys = self._episode_keys_of(cur, tenant, {k for n in write.new for k in n.source_keys}
                                                | {k for _, k in write.add_sources})
            for note in write.new:
                sources = [k for k in note.source_keys if k in tenant_keys]
                if not sources:  # every source was deleted while this step ran
                    continue
                key = int(cur.execute(
                    "INSERT INTO notes (id, namespace, user_id, scope, content, context, keywords, tags, entities, "
                    "subject, slot, value, norm, negated, importance, valid_from, valid_to, status, created_at, "
                    "updated_at, extractor) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "RETURNING key",
                    (note.id, ns, uid, token, note.content, note.context,
                     " ".join(note.keywords), json.dumps(list(note.tags)), json.dumps(list(note.entities)),
                     note.subject, note.slot, note.value, note.norm, int(note.negated), float(note.importance),
                     None if note.valid_from is None else to_micros(note.valid_from),
                     None if note.valid_to is None else to_micros(note.valid_to),
                     note.status, now, now, note.extractor),
                ).fetchone()[0])
                key_of[note.id] = key
                cur.executemany("INSERT INTO note_sources (note_key, episode_key) VALUES (%s,%s) ON CONFLICT DO NOTHING",
                                [(key, int(k)) for k in dict.fromkeys(sources)])
                if note.vector is not None and write.model_id is not None:
                    cur.execute("INSERT INTO note_vectors (note_key, model_id, vec) VALUES (%s,%s,%s)",
                                (key, write.model_id, np.asarray(note.vector, np.float16).tobytes()))
            needed = {i for i, _ in write.add_sources} | {i for i, _ in write.updates} | {
                i for s, t, _, _ in write.links for i in (s, t)}
            key_of.update(self._note_keys(cur, tenant, needed - key_of.keys()))
            # A live episode merged into a note that a delete removed after this batch's
            # note state was read: roll back; the processor reloads and redoes the batch.
            if any(i not in key_of for i, k in write.add_sources if k in tenant_keys):
                raise ConflictError("a note this batch merged into was deleted meanwhile")
            pairs = [(key_of[i], int(k)) for i, k in write.add_sources if i in key_of and k in tenant_keys]
            if pairs:
                cur.executemany("INSERT INTO note_sources (note_key, episode_key) VALUES (%s,%s) "
                                "ON CONFLICT DO NOTHING", pairs)
            for note_id, changes in write.updates:
                if note_id not in key_of:
                    continue
                cols = {k: v for k, v in changes.items() if k in _UPDATABLE}
                if "superseded_by" in cols and cols["superseded_by"] is not None:
                    cols["superseded_by"] = key_of.get(cols["superseded_by"])
                for k in ("valid_to", "valid_from"):
                    if isinstance(cols.get(k), datetime):
                        cols[k] = to_micros(cols[k])
                for k in ("tags", "entities"):
                    if k in cols:
                        cols[k] = json.dumps(list(cols[k]))
                if "keywords" in cols:
                    cols["keywords"] = " ".join(cols["keywords"])
                if cols:
                    sets = ", ".join(f"{k}=%s" for k in cols)
                    cur.execute(f"UPDATE notes SET {sets}, updated_at=%s WHERE key=%s",  # noqa: S608 (names from _UPDATABLE)
                                (*cols.values(), now, key_of[note_id]))
            links = [(key_of[s], key_of[t], kind, reason[:500], now)
                     for s, t, kind, reason in write.links if s in key_of and t in key_of and s != t]
            if links:
                # SQLite's INSERT OR REPLACE: the row is replaced whole (weight back to its default).
                cur.executemany(
                    "INSERT INTO links (source_key, target_key, kind, reason, created_at) VALUES (%s,%s,%s,%s,%s) "
                    "ON CONFLICT (source_key, target_key, kind) DO UPDATE SET weight = 1.0, reason = EXCLUDED.reason, "
                    "created_at = EXCLUDED.created_at", links)
            history = [(ns, uid, i, now, action, json.dumps(detail, ensure_ascii=False))
                       for i, action, detail in write.history if i in key_of]
            if history:
                cur.executemany("INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) "
                                "VALUES (%s,%s,%s,%s,%s,%s)", history)
            if write.done:
                cur.execute("DELETE FROM pending WHERE episode_key = ANY(%s) AND namespace=%s AND user_id=%s",
                            ([int(k) for k in write.done], ns, uid))
            self._bump(cur, tenant)
        return key_of

    def _episode_keys_of(self, cur: psycopg.Cursor[Any], tenant: Tenant, keys: set[int]) -> set[int]:
        if not keys:
            return set()
        rows = cur.execute("SELECT key FROM episodes WHERE namespace=%s AND user_id=%s AND key = ANY(%s)",
                           (tenant.namespace, tenant.user_id, sorted(int(k) for k in keys))).fetchall()
        return {int(r[0]) for r in rows}

    def _note_keys(self, cur: psycopg.Cursor[Any], tenant: Tenant, ids: set[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = cur.execute("SELECT id, key FROM notes WHERE namespace=%s AND user_id=%s AND id = ANY(%s)",
                           (tenant.namespace, tenant.user_id, sorted(ids))).fetchall()
        return {str(i): int(k) for i, k in rows}

    def record_recalls(self, tenant: Tenant, counts: dict[int, int], at: datetime) -> None:
        if not counts:
            return
        with self._write("record recalls", tenant) as cur:
            cur.executemany(
                "UPDATE notes SET recall_count = recall_count + %s, last_recalled = %s "
                "WHERE key=%s AND namespace=%s AND user_id=%s",
                [(int(n), to_micros(at), int(k), tenant.namespace, tenant.user_id) for k, n in sorted(counts.items())])
            self._bump(cur, tenant)

    def forget_notes(self, tenant: Tenant, keys: Sequence[int], reason: str) -> int:
        if not keys:
            return 0
        with self._write("forget", tenant) as cur:
            rows = cur.execute("SELECT key, id FROM notes WHERE namespace=%s AND user_id=%s AND key = ANY(%s) "
                               "ORDER BY key", (tenant.namespace, tenant.user_id, sorted({int(k) for k in keys}))
                               ).fetchall()
            self._drop_notes(cur, tenant, rows, "forgotten", {"reason": reason})
            if rows:
                self._bump(cur, tenant)
        return len(rows)

    def _drop_notes(self, cur: psycopg.Cursor[Any], tenant: Tenant, rows: list[tuple[Any, ...]],
                    action: str, detail: dict[str, Any]) -> None:
        """Delete notes and make their history content-free (the text is gone; the
        entries record only what happened and when)."""
        now = _now()
        for key, note_id in rows:
            cur.execute("DELETE FROM notes WHERE key=%s", (key,))
            cur.execute("UPDATE note_history SET detail='{}' WHERE note_id=%s AND namespace=%s AND user_id=%s",
                        (note_id, tenant.namespace, tenant.user_id))
            cur.execute("INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) "
                        "VALUES (%s,%s,%s,%s,%s,%s)",
                        (tenant.namespace, tenant.user_id, note_id, now, action, json.dumps(detail)))

    def _cascade_notes(self, cur: psycopg.Cursor[Any], tenant: Tenant, episode_keys: list[int]) -> None:
        """Before episodes are deleted: notes left without any source are deleted with
        them; notes that keep other sources are kept, with a history entry. Notes of the
        turn after a deleted one lose the question they quote from it (``_unquote``)."""
        gone = set(episode_keys)
        unquoted_any = self._unquote(cur, tenant, episode_keys)
        affected = cur.execute("SELECT DISTINCT note_key FROM note_sources WHERE episode_key = ANY(%s) "
                               "ORDER BY note_key", (episode_keys,)).fetchall()
        if not affected:
            if unquoted_any:  # summaries quote notes: drop them; the processor rebuilds them
                cur.execute("DELETE FROM summaries WHERE namespace=%s AND user_id=%s",
                            (tenant.namespace, tenant.user_id))
            return
        orphans: list[tuple[Any, ...]] = []
        now = _now()
        for (note_key,) in affected:
            srcs = {int(r[0]) for r in cur.execute("SELECT episode_key FROM note_sources WHERE note_key=%s",
                                                   (note_key,))}
            note_id = cur.execute("SELECT id FROM notes WHERE key=%s", (note_key,)).fetchone()[0]
            if srcs <= gone:
                orphans.append((note_key, note_id))
            else:
                # Merge entries written before they stopped carrying text may quote the
                # deleted episode: keep what happened, drop the words.
                for hkey, detail in cur.execute("SELECT key, detail FROM note_history WHERE note_id=%s AND "
                                                "namespace=%s AND user_id=%s AND action='merged'",
                                                (note_id, tenant.namespace, tenant.user_id)).fetchall():
                    kept = {k: v for k, v in json.loads(detail).items() if k != "content"}
                    cur.execute("UPDATE note_history SET detail=%s WHERE key=%s", (json.dumps(kept), hkey))
                cur.execute("INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) "
                            "VALUES (%s,%s,%s,%s,%s,%s)",
                            (tenant.namespace, tenant.user_id, note_id, now, "source_deleted",
                             json.dumps({"remaining_sources": len(srcs - gone)})))
        self._drop_notes(cur, tenant, orphans, "deleted", {"reason": "source episodes deleted"})
        # Summaries quote notes: drop them; the processor rebuilds them.
        cur.execute("DELETE FROM summaries WHERE namespace=%s AND user_id=%s", (tenant.namespace, tenant.user_id))

    def _unquote(self, cur: psycopg.Cursor[Any], tenant: Tenant, episode_keys: list[int]) -> bool:
        """Rule notes of the first surviving turn after a deleted one end with the question
        they answer, quoted from it: cut it off, and make the notes' history text-free
        (it holds the quoted words too). One ordered pass over the sessions involved."""
        rows = cur.execute(
            "WITH s AS (SELECT DISTINCT session_key FROM episodes WHERE key = ANY(%s)), "
            "w AS (SELECT e.key, lag(e.key) OVER (PARTITION BY e.session_key ORDER BY e.position) AS prev "
            "      FROM episodes e WHERE e.session_key IN (SELECT session_key FROM s)), "
            "after AS (SELECT key FROM w WHERE prev = ANY(%s) AND NOT (key = ANY(%s))) "
            "SELECT DISTINCT n.key, n.id, n.content FROM notes n JOIN note_sources ns ON ns.note_key = n.key "
            "WHERE ns.episode_key IN (SELECT key FROM after) AND n.namespace=%s AND n.user_id=%s "
            "AND n.extractor LIKE 'rules/%%' AND strpos(n.content, ' (asked: ') > 0 ORDER BY n.key",
            (episode_keys, episode_keys, episode_keys, tenant.namespace, tenant.user_id)).fetchall()
        now = _now()
        for key, note_id, content in rows:
            cur.execute("UPDATE notes SET content=%s, updated_at=%s WHERE key=%s", (unquoted(content), now, key))
            cur.execute("UPDATE note_history SET detail='{}' WHERE note_id=%s AND namespace=%s AND user_id=%s",
                        (note_id, tenant.namespace, tenant.user_id))
            cur.execute("INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) "
                        "VALUES (%s,%s,%s,%s,%s,%s)",
                        (tenant.namespace, tenant.user_id, note_id, now, "edited",
                         json.dumps({"reason": "the question it quoted was deleted"})))
        return bool(rows)

    # -- reads -------------------------------------------------------------------
    def note_snapshot(self, tenant: Tenant, model_id: str | None) -> NoteSnapshot:
        key = (tenant.namespace, tenant.user_id)
        with self._read(consistent=True) as cur:
            row = cur.execute("SELECT revision FROM tenants WHERE namespace=%s AND user_id=%s", key).fetchone()
            revision = int(row[0]) if row else 0
            rows = cur.execute(
                "SELECT n.key, n.id, n.status, n.valid_from, n.valid_to, n.importance, n.recall_count, "
                "COALESCE(n.last_recalled, (SELECT MAX(e.event_time) FROM note_sources s "
                "JOIN episodes e ON e.key = s.episode_key WHERE s.note_key = n.key)), "
                "n.subject, n.slot, n.value, n.norm, n.negated, n.entities, n.keywords, v.vec "
                "FROM notes n LEFT JOIN note_vectors v ON v.note_key = n.key AND v.model_id = %s "
                "WHERE n.namespace=%s AND n.user_id=%s ORDER BY n.key", (model_id, *key)).fetchall()
            src = cur.execute(
                "SELECT s.note_key, s.episode_key FROM note_sources s JOIN notes n ON n.key = s.note_key "
                "WHERE n.namespace=%s AND n.user_id=%s ORDER BY s.note_key, s.episode_key", key).fetchall()
            links = cur.execute(
                "SELECT l.source_key, l.target_key, l.kind FROM links l JOIN notes n ON n.key = l.source_key "
                "WHERE n.namespace=%s AND n.user_id=%s ORDER BY l.source_key, l.target_key, l.kind", key).fetchall()
        return note_snapshot(revision, rows, src, links)

    def get_notes(self, tenant: Tenant, note_ids: Sequence[str] | None = None, *,
                  keys: Sequence[int] | None = None, status: str | None = None,
                  limit: int = 100, offset: int = 0) -> list[Note]:
        prefix = (tenant.namespace, tenant.user_id)
        with self._read() as cur:
            if note_ids is not None:
                rows = cur.execute(f"SELECT {_NOTE_COLS} FROM notes n WHERE n.namespace=%s AND n.user_id=%s "
                                   "AND n.id = ANY(%s) ORDER BY n.key", (*prefix, list(note_ids))).fetchall()
            elif keys is not None:
                rows = cur.execute(f"SELECT {_NOTE_COLS} FROM notes n WHERE n.namespace=%s AND n.user_id=%s "
                                   "AND n.key = ANY(%s) ORDER BY n.key", (*prefix, [int(k) for k in keys])).fetchall()
            else:
                where = "" if status is None else " AND n.status=%s"
                rows = cur.execute(
                    f"SELECT {_NOTE_COLS} FROM notes n WHERE n.namespace=%s AND n.user_id=%s{where} "
                    "ORDER BY n.key DESC LIMIT %s OFFSET %s",
                    (*prefix, *(() if status is None else (status,)), max(0, int(limit)),
                     max(0, int(offset)))).fetchall()
            sources: dict[int, list[tuple[str, str]]] = {}
            if rows:
                for nk, eid, sid in cur.execute(
                    "SELECT ns.note_key, e.id, s.session_id FROM note_sources ns JOIN episodes e ON e.key = ns.episode_key "
                    "JOIN sessions s ON s.key = e.session_key WHERE ns.note_key = ANY(%s) "
                    "ORDER BY e.event_time, e.position, e.key", ([r[0] for r in rows],)):
                    sources.setdefault(int(nk), []).append((eid, sid))
        return [_note(_plain(r), sources.get(int(r[0]), [])) for r in rows]

    def notes_of_episode(self, tenant: Tenant, episode_id: str) -> list[Note]:
        with self._read() as cur:
            keys = [int(r[0]) for r in cur.execute(
                "SELECT ns.note_key FROM note_sources ns JOIN episodes e ON e.key = ns.episode_key "
                "WHERE e.id=%s AND e.namespace=%s AND e.user_id=%s ORDER BY ns.note_key",
                (episode_id, tenant.namespace, tenant.user_id))]
        return self.get_notes(tenant, keys=keys) if keys else []

    def lexical_notes(self, tenant: Tenant, terms: Sequence[str], *, limit: int) -> list[tuple[int, float]]:
        from .postgres import _terms  # noqa: PLC0415

        words = _terms(terms)
        if not words:
            return []
        return self._lexical("notes", words, tenant, "", [], limit)  # type: ignore[attr-defined, no-any-return]

    def note_links(self, tenant: Tenant, note_id: str) -> list[Link]:
        with self._read() as cur:
            rows = cur.execute(
                "SELECT a.id, b.id, l.kind, l.reason, l.weight, l.created_at FROM links l "
                "JOIN notes a ON a.key = l.source_key JOIN notes b ON b.key = l.target_key "
                "WHERE a.namespace=%s AND a.user_id=%s AND (a.id=%s OR b.id=%s) "
                "ORDER BY l.created_at, l.source_key, l.target_key, l.kind",
                (tenant.namespace, tenant.user_id, note_id, note_id)).fetchall()
        return [Link(source_id=a, target_id=b, kind=k, reason=r, weight=float(w), created_at=from_micros(t))
                for a, b, k, r, w, t in rows]

    def note_history(self, tenant: Tenant, note_id: str) -> list[NoteChange]:
        with self._read() as cur:
            rows = cur.execute("SELECT note_id, at, action, detail FROM note_history WHERE namespace=%s "
                               "AND user_id=%s AND note_id=%s ORDER BY key",
                               (tenant.namespace, tenant.user_id, note_id)).fetchall()
        return [NoteChange(note_id=i, at=from_micros(t), action=a, detail=json.loads(d)) for i, t, a, d in rows]

    # -- summaries ---------------------------------------------------------------
    def put_summaries(self, tenant: Tenant, rows: Sequence[tuple[str | None, str, int]]) -> None:
        if not rows:
            return
        now = _now()
        ns, uid = tenant.namespace, tenant.user_id
        with self._write("summaries", tenant) as cur:
            if not cur.execute("SELECT 1 FROM episodes WHERE namespace=%s AND user_id=%s LIMIT 1", (ns, uid)).fetchone():
                return  # erased (or never existed) meanwhile: write nothing about this user
            sessions = dict(cur.execute("SELECT session_id, key FROM sessions WHERE namespace=%s AND user_id=%s",
                                        (ns, uid)).fetchall())
            for sid, text, n in rows:
                skey = 0 if sid is None else sessions.get(sid)
                if skey is None:
                    continue
                cur.execute(
                    "INSERT INTO summaries (namespace, user_id, session_key, text, n_notes, updated_at) "
                    "VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (namespace, user_id, session_key) DO UPDATE SET "
                    "text = EXCLUDED.text, n_notes = EXCLUDED.n_notes, updated_at = EXCLUDED.updated_at",
                    (ns, uid, skey, text, n, now))

    def get_summaries(self, tenant: Tenant, session_id: str | None = None) -> list[Summary]:
        with self._read() as cur:
            rows = cur.execute(
                "SELECT s.session_id, m.text, m.n_notes, m.updated_at FROM summaries m "
                "LEFT JOIN sessions s ON s.key = m.session_key WHERE m.namespace=%s AND m.user_id=%s "
                "ORDER BY m.session_key", (tenant.namespace, tenant.user_id)).fetchall()
        out = [Summary(namespace=tenant.namespace, user_id=tenant.user_id, session_id=sid, text=t, n_notes=int(n),
                       updated_at=from_micros(u)) for sid, t, n, u in rows]
        if session_id is not None:
            out = [s for s in out if s.session_id == session_id]
        return out


def _plain(r: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(r)


def _key(row: Any) -> ApiKey:
    return ApiKey(key_id=row[0], namespace=row[1], user_id=row[2], admin=bool(row[3]), label=row[4],
                  created_at=from_micros(row[5]), revoked_at=from_micros(row[6]) if row[6] is not None else None)


class PgKeysMixin:
    """API keys of the servers, and the pending span of one add (see ``sqlite_keys``)."""

    if TYPE_CHECKING:
        def _write(self, what: str, tenant: Tenant | None = None, *,
                   create: bool = False) -> AbstractContextManager[psycopg.Cursor[Any]]: ...
        def _read(self, *, consistent: bool = False) -> AbstractContextManager[psycopg.Cursor[Any]]: ...

    def put_api_key(self, key: ApiKey, secret_hash: str) -> None:
        with self._write("create API key") as cur:
            cur.execute(
                f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (key.key_id, key.namespace, key.user_id, int(key.admin), key.label, to_micros(key.created_at),
                 to_micros(key.revoked_at) if key.revoked_at else None, secret_hash))

    def get_api_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        with self._read() as cur:
            row = cur.execute(f"SELECT {_KEY_COLS} FROM api_keys WHERE key_id=%s", (key_id,)).fetchone()
        return (_key(row), row[7]) if row else None

    def list_api_keys(self) -> list[ApiKey]:
        with self._read() as cur:
            rows = cur.execute(f"SELECT {_KEY_COLS} FROM api_keys ORDER BY created_at, key_id").fetchall()
        return [_key(r) for r in rows]

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        with self._write("revoke API key") as cur:
            cur.execute("UPDATE api_keys SET revoked_at=%s WHERE key_id=%s AND revoked_at IS NULL",
                        (to_micros(at), key_id))
            return cur.rowcount > 0

    def pending_span(self, tenant: Tenant, session_id: str, first: int, last: int) -> tuple[int, int]:
        with self._read() as cur:
            row = cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE p.attempts > 0) FROM pending p "
                "JOIN episodes e ON e.key = p.episode_key JOIN sessions s ON s.key = e.session_key "
                "WHERE e.namespace=%s AND e.user_id=%s AND s.session_id=%s AND e.position BETWEEN %s AND %s",
                (tenant.namespace, tenant.user_id, session_id, int(first), int(last))).fetchone()
        return int(row[0]), int(row[1])
