"""SQLite persistence of semantic memory: notes, their sources, vectors, links, history,
the pending-work queue and summaries. Mixed into ``SQLiteStore``; same connection,
same transaction discipline (one IMMEDIATE transaction per write).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConflictError
from ..model import Episode, Link, Note, NoteChange, Summary
from ..timeutil import from_micros, to_micros
from .base import NoteSnapshot, NoteWrite, Tenant
from .rows import note_snapshot, unquoted

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

_NOTE_COLS = (
    "n.key, n.id, n.namespace, n.user_id, n.content, n.context, n.keywords, n.tags, n.entities, "
    "n.subject, n.slot, n.value, n.importance, n.valid_from, n.valid_to, n.status, "
    "(SELECT id FROM notes s WHERE s.key = n.superseded_by), n.created_at, n.updated_at, "
    "n.recall_count, n.last_recalled, n.extractor"
)
_UPDATABLE = {"status", "valid_to", "valid_from", "superseded_by", "importance", "content", "keywords",
              "context", "tags", "entities"}


def _now() -> int:
    return to_micros(datetime.now(timezone.utc))


def _opt_time(v: int | None) -> datetime | None:
    return None if v is None else from_micros(v)


class NotesMixin:
    """Semantic-memory methods of ``SQLiteStore`` (see ``store.base.Store``)."""

    if TYPE_CHECKING:
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _translate(self, what: str) -> AbstractContextManager[None]: ...
        def _bump(self, c: sqlite3.Connection, tenant: Tenant) -> None: ...
        def _chunked_keys(self, c: sqlite3.Connection, sql: str, ids: Sequence[Any],
                          prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    # -- queue -------------------------------------------------------------------
    def pending_tenants(self) -> list[Tenant]:
        with self._read() as c:
            rows = c.execute("SELECT DISTINCT namespace, user_id FROM pending ORDER BY namespace, user_id").fetchall()
        return [Tenant(ns, uid) for ns, uid in rows]

    def pending_episodes(self, tenant: Tenant, *, limit: int, max_attempts: int | None = None) -> list[tuple[int, Episode]]:
        from .sqlite import _EP_COLS, _episode  # noqa: PLC0415  (shared row mapping)

        with self._read() as c:
            rows = c.execute(
                f"SELECT {_EP_COLS} FROM pending p JOIN episodes e ON e.key = p.episode_key "
                "JOIN sessions s ON s.key = e.session_key WHERE p.namespace=? AND p.user_id=? AND p.attempts < ? "
                "ORDER BY p.episode_key LIMIT ?",
                (tenant.namespace, tenant.user_id, max_attempts if max_attempts is not None else 2**62, limit),
            ).fetchall()
        return [(int(r[0]), _episode(r)) for r in rows]

    def pending_count(self, tenant: Tenant | None = None) -> int:
        with self._read() as c:
            if tenant is None:
                return int(c.execute("SELECT COUNT(*) FROM pending").fetchone()[0])
            return int(c.execute("SELECT COUNT(*) FROM pending WHERE namespace=? AND user_id=?",
                                 (tenant.namespace, tenant.user_id)).fetchone()[0])

    def mark_pending_failed(self, tenant: Tenant, keys: Sequence[int], error: str) -> None:
        with self._translate("mark pending"), self._write() as c:
            c.executemany(
                "UPDATE pending SET attempts = attempts + 1, error = ? "
                "WHERE episode_key = ? AND namespace=? AND user_id=?",
                [(error[:2000], int(k), tenant.namespace, tenant.user_id) for k in keys],
            )

    # -- writes ------------------------------------------------------------------
    def apply_notes(self, tenant: Tenant, write: NoteWrite) -> dict[str, int]:
        from .sqlite import scope_token  # noqa: PLC0415

        if not write:
            return {}
        token = scope_token(tenant)
        now = _now()
        key_of: dict[str, int] = {}
        with self._translate("apply notes"), self._write() as c:
            if write.done:
                queued = {r[0] for r in self._chunked_keys(
                    c, "SELECT episode_key FROM pending WHERE namespace=? AND user_id=? AND episode_key IN ({})",
                    write.done, (tenant.namespace, tenant.user_id))}
                alive = self._episode_keys_of(c, tenant, set(write.done))
                if (alive - queued):  # consumed by another worker since this batch was read
                    raise ConflictError(f"{len(alive - queued)} episodes were processed by another worker")
            if write.quoted and len(self._chunked_keys(
                    c, "SELECT id FROM episodes WHERE namespace=? AND user_id=? AND id IN ({})",
                    sorted(set(write.quoted)), (tenant.namespace, tenant.user_id))) < len(set(write.quoted)):
                # A question this batch's notes quote was deleted after the batch was read:
                # its words must not come back. The processor reloads and redoes the batch.
                raise ConflictError("an episode this batch quotes was deleted meanwhile")
            tenant_keys = self._episode_keys_of(c, tenant, {k for n in write.new for k in n.source_keys}
                                                | {k for _, k in write.add_sources})
            for note in write.new:
                sources = [k for k in note.source_keys if k in tenant_keys]
                if not sources:  # every source was deleted while this step ran
                    continue
                cur = c.execute(
                    "INSERT INTO notes (id, namespace, user_id, scope, content, context, keywords, tags, entities, "
                    "subject, slot, value, norm, negated, importance, valid_from, valid_to, status, created_at, "
                    "updated_at, extractor) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (note.id, tenant.namespace, tenant.user_id, token, note.content, note.context,
                     " ".join(note.keywords), json.dumps(list(note.tags)), json.dumps(list(note.entities)),
                     note.subject, note.slot, note.value, note.norm, int(note.negated), float(note.importance),
                     None if note.valid_from is None else to_micros(note.valid_from),
                     None if note.valid_to is None else to_micros(note.valid_to),
                     note.status, now, now, note.extractor),
                )
                key = int(cur.lastrowid)  # type: ignore[arg-type]
                key_of[note.id] = key
                c.executemany("INSERT OR IGNORE INTO note_sources (note_key, episode_key) VALUES (?,?)",
                              [(key, k) for k in sources])
                if note.vector is not None and write.model_id is not None:
                    c.execute("INSERT INTO note_vectors (note_key, model_id, vec) VALUES (?,?,?)",
                              (key, write.model_id, np.asarray(note.vector, np.float16).tobytes()))
            needed = {i for i, _ in write.add_sources} | {i for i, _ in write.updates} | {
                i for s, t, _, _ in write.links for i in (s, t)}
            key_of.update(self._note_keys(c, tenant, needed - key_of.keys()))
            # A live episode merged into a note that a delete removed after this batch's
            # note state was read: skipping the pair would mark the episode done with no
            # note at all. Roll back; the processor reloads the state and redoes the batch.
            if any(i not in key_of for i, k in write.add_sources if k in tenant_keys):
                raise ConflictError("a note this batch merged into was deleted meanwhile")
            c.executemany(
                "INSERT OR IGNORE INTO note_sources (note_key, episode_key) VALUES (?,?)",
                [(key_of[i], k) for i, k in write.add_sources if i in key_of and k in tenant_keys],
            )
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
                    sets = ", ".join(f"{k}=?" for k in cols)
                    c.execute(f"UPDATE notes SET {sets}, updated_at=? WHERE key=?",  # noqa: S608 (names from _UPDATABLE)
                              (*cols.values(), now, key_of[note_id]))
            c.executemany(
                "INSERT OR REPLACE INTO links (source_key, target_key, kind, reason, created_at) VALUES (?,?,?,?,?)",
                [(key_of[s], key_of[t], kind, reason[:500], now)
                 for s, t, kind, reason in write.links if s in key_of and t in key_of and s != t],
            )
            c.executemany(
                "INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) VALUES (?,?,?,?,?,?)",
                [(tenant.namespace, tenant.user_id, i, now, action, json.dumps(detail, ensure_ascii=False))
                 for i, action, detail in write.history if i in key_of],
            )
            c.executemany("DELETE FROM pending WHERE episode_key=? AND namespace=? AND user_id=?",
                          [(int(k), tenant.namespace, tenant.user_id) for k in write.done])
            self._bump(c, tenant)
        return key_of

    def _episode_keys_of(self, c: sqlite3.Connection, tenant: Tenant, keys: set[int]) -> set[int]:
        rows = self._chunked_keys(c, "SELECT key FROM episodes WHERE namespace=? AND user_id=? AND key IN ({})",
                                  sorted(keys), (tenant.namespace, tenant.user_id))
        return {int(r[0]) for r in rows}

    def _note_keys(self, c: sqlite3.Connection, tenant: Tenant, ids: set[str]) -> dict[str, int]:
        rows = self._chunked_keys(c, "SELECT id, key FROM notes WHERE namespace=? AND user_id=? AND id IN ({})",
                                  sorted(ids), (tenant.namespace, tenant.user_id))
        return {str(i): int(k) for i, k in rows}

    def record_recalls(self, tenant: Tenant, counts: dict[int, int], at: datetime) -> None:
        if not counts:
            return
        with self._translate("record recalls"), self._write() as c:
            c.executemany(
                "UPDATE notes SET recall_count = recall_count + ?, last_recalled = ? "
                "WHERE key=? AND namespace=? AND user_id=?",
                [(n, to_micros(at), k, tenant.namespace, tenant.user_id) for k, n in counts.items()],
            )
            self._bump(c, tenant)

    def forget_notes(self, tenant: Tenant, keys: Sequence[int], reason: str) -> int:
        if not keys:
            return 0
        with self._translate("forget"), self._write() as c:
            rows = self._chunked_keys(c, "SELECT key, id FROM notes WHERE namespace=? AND user_id=? AND key IN ({})",
                                      sorted(set(keys)), (tenant.namespace, tenant.user_id))
            self._drop_notes(c, tenant, rows, "forgotten", {"reason": reason})
            if rows:
                self._bump(c, tenant)
        if rows:
            self._scrub_notes()
        return len(rows)

    def _drop_notes(self, c: sqlite3.Connection, tenant: Tenant, rows: list[tuple[Any, ...]],
                    action: str, detail: dict[str, Any]) -> None:
        """Delete notes and make their history content-free (the text is gone; the
        entries record only what happened and when)."""
        now = _now()
        for key, note_id in rows:
            c.execute("DELETE FROM notes WHERE key=?", (key,))
            c.execute("UPDATE note_history SET detail='{}' WHERE note_id=? AND namespace=? AND user_id=?",
                      (note_id, tenant.namespace, tenant.user_id))
            c.execute("INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) VALUES (?,?,?,?,?,?)",
                      (tenant.namespace, tenant.user_id, note_id, now, action, json.dumps(detail)))

    def _cascade_notes(self, c: sqlite3.Connection, tenant: Tenant, episode_keys: list[int]) -> None:
        """Before episodes are deleted: notes left without any source are deleted with
        them; notes that keep other sources are kept, with a history entry. Notes of the
        turn after a deleted one lose the question they quote from it (``_unquote``)."""
        gone = set(episode_keys)
        unquoted_any = self._unquote(c, tenant, gone)
        affected = self._chunked_keys(c, "SELECT DISTINCT note_key FROM note_sources WHERE episode_key IN ({})",
                                      episode_keys)
        if not affected:
            if unquoted_any:  # summaries quote notes: drop them; the processor rebuilds them
                c.execute("DELETE FROM summaries WHERE namespace=? AND user_id=?", (tenant.namespace, tenant.user_id))
            return
        orphans: list[tuple[Any, ...]] = []
        now = _now()
        for (note_key,) in affected:
            srcs = {r[0] for r in c.execute("SELECT episode_key FROM note_sources WHERE note_key=?", (note_key,))}
            note_id = c.execute("SELECT id FROM notes WHERE key=?", (note_key,)).fetchone()[0]
            if srcs <= gone:
                orphans.append((note_key, note_id))
            else:
                # Merge entries written before they stopped carrying text may quote the
                # deleted episode: keep what happened, drop the words.
                for hkey, detail in c.execute("SELECT key, detail FROM note_history WHERE note_id=? AND namespace=? "
                                              "AND user_id=? AND action='merged'",
                                              (note_id, tenant.namespace, tenant.user_id)).fetchall():
                    kept = {k: v for k, v in json.loads(detail).items() if k != "content"}
                    c.execute("UPDATE note_history SET detail=? WHERE key=?", (json.dumps(kept), hkey))
                c.execute("INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) "
                          "VALUES (?,?,?,?,?,?)", (tenant.namespace, tenant.user_id, note_id, now,
                                                  "source_deleted", json.dumps({"remaining_sources": len(srcs - gone)})))
        self._drop_notes(c, tenant, orphans, "deleted", {"reason": "source episodes deleted"})
        # Summaries quote notes: drop them; the processor rebuilds them.
        c.execute("DELETE FROM summaries WHERE namespace=? AND user_id=?", (tenant.namespace, tenant.user_id))

    def _unquote(self, c: sqlite3.Connection, tenant: Tenant, gone: set[int]) -> bool:
        """Rule notes of the first surviving turn after a deleted one end with the question
        they answer, quoted from it: cut it off, and make the notes' history text-free
        (it holds the quoted words too). One ordered pass over the sessions involved."""
        sessions = {r[0] for r in self._chunked_keys(c, "SELECT DISTINCT session_key FROM episodes WHERE key IN ({})",
                                                      sorted(gone))}
        after: list[int] = []
        for skey in sessions:
            prev_gone = False
            for (key,) in c.execute("SELECT key FROM episodes WHERE session_key=? ORDER BY position", (skey,)):
                if prev_gone and key not in gone:
                    after.append(key)
                prev_gone = key in gone
        if not after:
            return False
        rows = self._chunked_keys(
            c, "SELECT DISTINCT n.key, n.id, n.content FROM notes n JOIN note_sources s ON s.note_key = n.key "
               "WHERE s.episode_key IN ({}) AND n.extractor LIKE 'rules/%' AND instr(n.content, ' (asked: ') > 0",
            sorted(after))
        now = _now()
        for key, note_id, content in rows:
            c.execute("UPDATE notes SET content=?, updated_at=? WHERE key=?",
                      (unquoted(content), now, key))
            c.execute("UPDATE note_history SET detail='{}' WHERE note_id=? AND namespace=? AND user_id=?",
                      (note_id, tenant.namespace, tenant.user_id))
            c.execute("INSERT INTO note_history (namespace, user_id, note_id, at, action, detail) VALUES (?,?,?,?,?,?)",
                      (tenant.namespace, tenant.user_id, note_id, now, "edited",
                       json.dumps({"reason": "the question it quoted was deleted"})))
        return bool(rows)

    def _scrub_notes(self) -> None:
        with self._translate("scrub notes"), self._write() as c:
            from .sqlite import compact_fts  # noqa: PLC0415  (FTS5 level growth, see there)

            compact_fts(c, "notes_fts")

    # -- reads -------------------------------------------------------------------
    def note_snapshot(self, tenant: Tenant, model_id: str | None) -> NoteSnapshot:
        key = (tenant.namespace, tenant.user_id)
        with self._read() as c:
            c.execute("BEGIN")
            try:
                row = c.execute("SELECT revision FROM tenants WHERE namespace=? AND user_id=?", key).fetchone()
                revision = int(row[0]) if row else 0
                rows = c.execute(
                    "SELECT n.key, n.id, n.status, n.valid_from, n.valid_to, n.importance, n.recall_count, "
                    "COALESCE(n.last_recalled, (SELECT MAX(e.event_time) FROM note_sources s "
                    "JOIN episodes e ON e.key = s.episode_key WHERE s.note_key = n.key)), "
                    "n.subject, n.slot, n.value, n.norm, n.negated, n.entities, n.keywords, v.vec "
                    "FROM notes n LEFT JOIN note_vectors v ON v.note_key = n.key AND v.model_id IS ? "
                    "WHERE n.namespace=? AND n.user_id=? ORDER BY n.key", (model_id, *key)).fetchall()
                src = c.execute(
                    "SELECT s.note_key, s.episode_key FROM note_sources s JOIN notes n ON n.key = s.note_key "
                    "WHERE n.namespace=? AND n.user_id=? ORDER BY s.note_key, s.episode_key", key).fetchall()
                links = c.execute(
                    "SELECT l.source_key, l.target_key, l.kind FROM links l JOIN notes n ON n.key = l.source_key "
                    "WHERE n.namespace=? AND n.user_id=?", key).fetchall()
            finally:
                c.execute("COMMIT")
        return note_snapshot(revision, rows, src, links)

    def get_notes(self, tenant: Tenant, note_ids: Sequence[str] | None = None, *,
                  keys: Sequence[int] | None = None, status: str | None = None,
                  limit: int = 100, offset: int = 0) -> list[Note]:
        prefix = (tenant.namespace, tenant.user_id)
        with self._read() as c:
            if note_ids is not None:
                rows = self._chunked_keys(c, f"SELECT {_NOTE_COLS} FROM notes n WHERE n.namespace=? AND n.user_id=? "
                                          "AND n.id IN ({})", list(note_ids), prefix)
            elif keys is not None:
                rows = self._chunked_keys(c, f"SELECT {_NOTE_COLS} FROM notes n WHERE n.namespace=? AND n.user_id=? "
                                          "AND n.key IN ({})", [int(k) for k in keys], prefix)
            else:
                where = "" if status is None else " AND n.status=?"
                rows = c.execute(
                    f"SELECT {_NOTE_COLS} FROM notes n WHERE n.namespace=? AND n.user_id=?{where} "
                    "ORDER BY n.key DESC LIMIT ? OFFSET ?",
                    (*prefix, *(() if status is None else (status,)), limit, offset)).fetchall()
            nkeys = [r[0] for r in rows]
            sources: dict[int, list[tuple[str, str]]] = {}
            for nk, eid, sid in self._chunked_keys(
                c, "SELECT ns.note_key, e.id, s.session_id FROM note_sources ns JOIN episodes e ON e.key = ns.episode_key "
                   "JOIN sessions s ON s.key = e.session_key WHERE ns.note_key IN ({}) "
                   "ORDER BY e.event_time, e.position", nkeys):
                sources.setdefault(nk, []).append((eid, sid))
        return [_note(r, sources.get(r[0], [])) for r in rows]

    def notes_of_episode(self, tenant: Tenant, episode_id: str) -> list[Note]:
        with self._read() as c:
            keys = [r[0] for r in c.execute(
                "SELECT ns.note_key FROM note_sources ns JOIN episodes e ON e.key = ns.episode_key "
                "WHERE e.id=? AND e.namespace=? AND e.user_id=?", (episode_id, tenant.namespace, tenant.user_id))]
        return self.get_notes(tenant, keys=keys) if keys else []

    def lexical_notes(self, tenant: Tenant, terms: Sequence[str], *, limit: int) -> list[tuple[int, float]]:
        from .sqlite import _MAX_KEY, _match_expr  # noqa: PLC0415
        from .sqlite import scope_token  # noqa: PLC0415
        from .sqlite_lexical import plan  # noqa: PLC0415

        with self._read() as c:  # always scoped: this query has no join to filter the tenant
            kept, _, lo, hi = plan(c, "notes_fts", terms, self.lexical_budget, scope_token(tenant), self._df,
                                   (tenant.namespace, tenant.user_id))
        expr = _match_expr(tenant, kept, "{content keywords}")
        if expr is None:
            return []
        with self._read() as c:
            rows = c.execute(
                "SELECT rowid, -bm25(notes_fts, 1.0, 0.5) FROM notes_fts WHERE notes_fts MATCH ? AND rowid BETWEEN ? AND ? "
                "ORDER BY bm25(notes_fts, 1.0, 0.5) LIMIT ?",
                (expr, lo or 0, _MAX_KEY if hi is None else hi, limit)).fetchall()
        return [(int(k), float(s)) for k, s in rows]

    def note_links(self, tenant: Tenant, note_id: str) -> list[Link]:
        with self._read() as c:
            rows = c.execute(
                "SELECT a.id, b.id, l.kind, l.reason, l.weight, l.created_at FROM links l "
                "JOIN notes a ON a.key = l.source_key JOIN notes b ON b.key = l.target_key "
                "WHERE a.namespace=? AND a.user_id=? AND (a.id=? OR b.id=?) ORDER BY l.created_at",
                (tenant.namespace, tenant.user_id, note_id, note_id)).fetchall()
        return [Link(source_id=a, target_id=b, kind=k, reason=r, weight=w, created_at=from_micros(t))
                for a, b, k, r, w, t in rows]

    def note_history(self, tenant: Tenant, note_id: str) -> list[NoteChange]:
        with self._read() as c:
            rows = c.execute("SELECT note_id, at, action, detail FROM note_history WHERE namespace=? AND user_id=? "
                             "AND note_id=? ORDER BY key", (tenant.namespace, tenant.user_id, note_id)).fetchall()
        return [NoteChange(note_id=i, at=from_micros(t), action=a, detail=json.loads(d)) for i, t, a, d in rows]

    # -- summaries ---------------------------------------------------------------
    def put_summaries(self, tenant: Tenant, rows: Sequence[tuple[str | None, str, int]]) -> None:
        if not rows:
            return
        now = _now()
        with self._translate("summaries"), self._write() as c:
            if not c.execute("SELECT 1 FROM episodes WHERE namespace=? AND user_id=? LIMIT 1",
                             (tenant.namespace, tenant.user_id)).fetchone():
                return  # erased (or never existed) meanwhile: write nothing about this user
            sessions = dict(c.execute("SELECT session_id, key FROM sessions WHERE namespace=? AND user_id=?",
                                      (tenant.namespace, tenant.user_id)).fetchall())
            for sid, text, n in rows:
                skey = 0 if sid is None else sessions.get(sid)
                if skey is None:
                    continue
                c.execute("INSERT OR REPLACE INTO summaries (namespace, user_id, session_key, text, n_notes, updated_at) "
                          "VALUES (?,?,?,?,?,?)", (tenant.namespace, tenant.user_id, skey, text, n, now))

    def get_summaries(self, tenant: Tenant, session_id: str | None = None) -> list[Summary]:
        with self._read() as c:
            rows = c.execute(
                "SELECT s.session_id, m.text, m.n_notes, m.updated_at FROM summaries m "
                "LEFT JOIN sessions s ON s.key = m.session_key WHERE m.namespace=? AND m.user_id=? "
                "ORDER BY m.session_key", (tenant.namespace, tenant.user_id)).fetchall()
        out = [Summary(namespace=tenant.namespace, user_id=tenant.user_id, session_id=sid, text=t, n_notes=n,
                       updated_at=from_micros(u)) for sid, t, n, u in rows]
        if session_id is not None:
            out = [s for s in out if s.session_id == session_id]
        return out


def _note(r: Sequence[Any], sources: list[tuple[str, str]]) -> Note:
    return Note(
        id=r[1], namespace=r[2], user_id=r[3], content=r[4], context=r[5],
        keywords=tuple(r[6].split()), tags=tuple(json.loads(r[7])), entities=tuple(json.loads(r[8])),
        subject=r[9], slot=r[10], value=r[11], importance=float(r[12]),
        valid_from=_opt_time(r[13]), valid_to=_opt_time(r[14]), status=r[15], superseded_by=r[16],
        created_at=_opt_time(r[17]), updated_at=_opt_time(r[18]), recall_count=int(r[19]),
        last_recalled=_opt_time(r[20]), extractor=r[21],
        source_episode_ids=tuple(e for e, _ in sources),
        session_ids=tuple(dict.fromkeys(s for _, s in sources)),
    )
