"""Tenant isolation as a property: ``memstrata bench isolation``.

A seeded random walk of operations over many tenants (namespaces x users, the same user
ids in every namespace, the same session ids in every tenant) through every interface:
the Python API (``Memory``), the REST server (real uvicorn on loopback, with a key per
namespace, keys bound to one user, and an admin key), the MCP server (the SDK's real
client, in process, one server per tenant) and a few CLI processes. Every stored turn
carries a marker naming its tenant (``tn<ns>u<user>``) among words all tenants share,
so a cross-tenant read shows up as a foreign marker, a foreign id or a count that
differs from the shadow model kept here.

Checked after every operation: every record a read returns (episodes, hits, context,
notes, summaries, exports, history) belongs to the caller (ids known to the shadow
model, markers of the caller only, namespace/user fields); ids of other tenants
(episodes, notes, sessions the caller does not have) answer NotFound / 404 and change
nothing. Checked after every write: one other tenant's count (periodically all of
them, through the API) against the shadow. Checked at the end by reading the SQLite
file directly: every tenant's episodes are exactly the shadow's, and no row of any
table (episodes, sessions, notes, links, sources, pending, summaries, history, FTS)
joins or quotes two tenants.

Reads and writes interleave per tenant, so each tenant's cached retrieval index is
rebuilt after its writes and reused between them; the REST server's ``Memory`` runs the
background note worker and the Python side calls ``process()``, so derived notes, links
and summaries are part of what is checked.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import ConflictError, InvalidInputError, NotFoundError
from .common import environment

INTERFACES = ("python", "rest", "mcp", "mcp_http", "cli")
NAMESPACES = ("acme", "globex", "initech", "umbrella")
USERS = ("ana", "ben", "chloe", "dev", "eve")         # the same user ids in every namespace
SESSIONS = ("s1", "s2", "s3", "daily/notes")  # the same session ids in every tenant
_MARK = re.compile(r"tn(\d+)u(\d+)", re.I)
_WORDS = ("Lisbon", "Porto", "Kyoto", "jazz guitar", "bouldering", "sourdough", "Pepper", "Miso",
          "marathon", "pottery", "chess", "Tallinn", "wedding", "promotion", "beagle")
_TEMPLATES = (
    "I moved to {w} last week, my code is {m}.",
    "My favourite hobby is {w} now {m}.",
    "I adopted a dog named {w} and wrote {m} on the tag.",
    "We went to {w} for the weekend, remember {m}.",
    "I work as a teacher near {w}, badge {m}.",
    "My sister loves {w} and {m} is her word.",
)
MAX_OPS = 1_000_000
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class T:
    ns: int
    user: int

    @property
    def namespace(self) -> str:
        return NAMESPACES[self.ns]

    @property
    def user_id(self) -> str:
        return USERS[self.user]

    @property
    def mark(self) -> str:
        return f"tn{self.ns}u{self.user}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.user_id}"


ALL = tuple(T(n, u) for n in range(len(NAMESPACES)) for u in range(len(USERS)))


@dataclass
class Result:
    seed: int
    ops_requested: int
    ops: Counter[str] = field(default_factory=Counter)          # per interface
    kinds: Counter[str] = field(default_factory=Counter)        # per interface:operation
    import_id_conflicts: int = 0  # imports naming another tenant's episode id: refused (409), nothing written
    kind_seconds: Counter[str] = field(default_factory=Counter)  # wall time per interface:operation
    violations: list[str] = field(default_factory=list)
    checks: int = 0
    notes_seen: int = 0
    summaries_seen: int = 0
    final: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "ops_requested": self.ops_requested, "ops_total": self.total,
                "ops_per_interface": dict(sorted(self.ops.items())),
                "ops_per_kind": dict(sorted(self.kinds.items())),
                "seconds_per_kind": {k: round(v, 2) for k, v in sorted(self.kind_seconds.items())},
                "tenants": len(ALL), "namespaces": len(NAMESPACES), "users_per_namespace": len(USERS),
                "checks": self.checks, "notes_seen": self.notes_seen, "summaries_seen": self.summaries_seen,
                "import_id_conflicts": self.import_id_conflicts,
                "violations": len(self.violations), "violation_examples": self.violations[:20],
                "final_check": self.final, "seconds": round(self.seconds, 2), "ok": not self.violations,
                "environment": environment()}


class Shadow:
    """What each tenant must hold: episode id -> (session id, content), and whether the
    tenant exists (added since its last erase)."""

    def __init__(self) -> None:
        self.eps: dict[T, dict[str, tuple[str, str]]] = {t: {} for t in ALL}
        self.exists: set[T] = set()
        self.note_owner: dict[str, T] = {}

    def owner(self, episode_id: str) -> T | None:
        for t, eps in self.eps.items():
            if episode_id in eps:
                return t
        return None

    def sessions(self, t: T) -> set[str]:
        return {s for s, _ in self.eps[t].values()}


class Engine:
    def __init__(self, root: Path, seed: int, log: Log) -> None:
        from .. import Memory, MemoryConfig
        from ..config import NotesConfig

        self.root = root
        self.db = root / "iso.db"
        self.rng = random.Random(seed)
        self.log = log
        self.shadow = Shadow()
        self.result = Result(seed=seed, ops_requested=0)
        base = MemoryConfig(notes=NotesConfig(background=False))
        self.mem = Memory(self.db, config=base, embedder=False)          # Python API and MCP
        self.server_mem = Memory(self.db, config=replace(base, notes=NotesConfig(background=True)),
                                 embedder=False)                          # the REST server's own
        self.seq = 0
        self.clock = datetime(2024, 1, 1, 9, tzinfo=UTC)

    # -- bookkeeping -------------------------------------------------------------
    def fail(self, iface: str, what: str) -> None:
        self.result.violations.append(f"[{iface}] {what}")

    def text(self, t: T) -> str:
        self.seq += 1
        w = self.rng.choice(_WORDS)
        return self.rng.choice(_TEMPLATES).format(w=w, m=f"{t.mark}q{self.seq}")

    def when(self) -> str:
        self.clock += timedelta(minutes=self.rng.randint(1, 600))
        return self.clock.isoformat()

    def query(self, t: T) -> str:
        words = " ".join(self.rng.sample(_WORDS, 2))
        other = self.rng.choice(ALL)
        # half the queries name another tenant's marker outright: they must still find only ours
        return f"{words} {other.mark}" if self.rng.random() < 0.5 else f"what about {words}?"

    def check_text(self, iface: str, t: T, text: str, what: str) -> None:
        self.result.checks += 1
        for m in _MARK.finditer(text or ""):
            if (int(m.group(1)), int(m.group(2))) != (t.ns, t.user):
                self.fail(iface, f"{what} for {t} quotes {m.group(0)}: {text[:120]!r}")

    def check_episode(self, iface: str, t: T, ep_id: str, content: str | None, what: str) -> None:
        self.result.checks += 1
        mine = self.shadow.eps[t].get(ep_id)
        if mine is None:
            self.fail(iface, f"{what} for {t} returned episode {ep_id} owned by {self.shadow.owner(ep_id)}")
        elif content is not None and content != mine[1]:
            self.fail(iface, f"{what} for {t}: episode {ep_id} content {content[:80]!r} != {mine[1][:80]!r}")
        if content is not None:
            self.check_text(iface, t, content, what)

    def check_note(self, iface: str, t: T, note_id: str, content: str, sources: Any, what: str) -> None:
        self.result.notes_seen += 1
        owner = self.shadow.note_owner.setdefault(note_id, t)
        if owner != t:
            self.fail(iface, f"{what} for {t} returned note {note_id} first seen for {owner}")
        self.check_text(iface, t, content, what)
        for s in sources or ():
            if s not in self.shadow.eps[t]:
                # a note may outlive nothing: its sources are always the caller's live episodes
                self.fail(iface, f"{what} for {t}: note {note_id} cites episode {s} of {self.shadow.owner(s)}")

    def foreign_episode(self, t: T) -> str | None:
        others = [o for o in ALL if o != t and self.shadow.eps[o]]
        if not others:
            return None
        o = self.rng.choice(others)
        return self.rng.choice(list(self.shadow.eps[o]))

    def foreign_note(self, t: T) -> str | None:
        ids = [n for n, o in self.shadow.note_owner.items() if o != t]
        return self.rng.choice(ids) if ids else None

    def own_episode(self, t: T) -> str | None:
        return self.rng.choice(list(self.shadow.eps[t])) if self.shadow.eps[t] else None

    def counts_api(self, t: T) -> tuple[int, set[str]]:
        eps = self.mem.list(user_id=t.user_id, namespace=t.namespace, limit=100_000)
        return len(eps), {e.id for e in eps}

    def check_others(self, iface: str, t: T, what: str, everyone: bool = False) -> None:
        """After a write by ``t``: other tenants hold exactly what the shadow says."""
        others = [o for o in ALL if o != t]
        for o in (others if everyone else [self.rng.choice(others)]):
            self.result.checks += 1
            n = self.mem.stats(user_id=o.user_id, namespace=o.namespace).episodes
            if n != len(self.shadow.eps[o]):
                self.fail(iface, f"after {what} by {t}: {o} holds {n} episodes, shadow {len(self.shadow.eps[o])}")
            if everyone:
                _, ids = self.counts_api(o)
                if ids != set(self.shadow.eps[o]):
                    self.fail(iface, f"after {what} by {t}: {o} episode ids differ from the shadow "
                                     f"(+{len(ids - set(self.shadow.eps[o]))} -{len(set(self.shadow.eps[o]) - ids)})")

    def record_add(self, t: T, ids: list[str], session_id: str, texts: list[str]) -> None:
        for i, x in zip(ids, texts):
            self.shadow.eps[t][i] = (session_id, x)
        self.shadow.exists.add(t)

    def record_erase(self, t: T) -> None:
        self.shadow.eps[t].clear()
        self.shadow.exists.discard(t)
        for n in [n for n, o in self.shadow.note_owner.items() if o == t]:
            del self.shadow.note_owner[n]

    def messages(self, t: T) -> tuple[list[dict[str, str]], list[str]]:
        n = self.rng.randint(1, 3)
        texts = [self.text(t) for _ in range(n)]
        roles = ["user", "assistant", "user"]
        return [{"role": roles[i], "content": x} for i, x in enumerate(texts)], texts

    def session(self, t: T) -> str | None:
        return self.rng.choice(SESSIONS) if self.rng.random() < 0.85 else None

    # -- the Python API ----------------------------------------------------------
    # Weights: writes that scrub (delete, erase: FTS merge + WAL truncate) are the costly ones
    PY_OPS = (("add", 13), ("search", 16), ("context", 5), ("list", 7), ("get", 3), ("get_foreign", 5),
              ("sessions", 3), ("notes", 4), ("note_foreign", 4), ("notes_for", 2), ("history", 2),
              ("summary", 2), ("stats", 3), ("export", 1), ("delete", 2), ("delete_foreign", 4),
              ("delete_session", 0.5), ("delete_session_foreign", 1), ("erase", 0.1), ("process", 1.5),
              ("import_own", 0.3), ("import_foreign", 0.5))

    def py(self, op: str, t: T) -> None:
        m, kw = self.mem, {"user_id": t.user_id, "namespace": t.namespace}
        I = "python"
        if op == "add":
            msgs, texts = self.messages(t)
            eps = m.add(msgs, session_id=self.session(t), timestamp=self.when(), **kw)
            for e in eps:
                if (e.namespace, e.user_id) != (t.namespace, t.user_id):
                    self.fail(I, f"add for {t} stored {e.id} as {e.namespace}/{e.user_id}")
            self.record_add(t, [e.id for e in eps], eps[0].session_id, texts)
            self.check_others(I, t, "add")
        elif op == "search":
            unit = self.rng.choice(("turn", "round", "session"))
            for h in m.search(self.query(t), k=self.rng.choice((5, 10, 30)), unit=unit, **kw):
                self.check_text(I, t, h.text, f"search/{unit}")
                for e in {h.episode_id, *h.episode_ids}:
                    self.check_episode(I, t, e, None, f"search/{unit}")
        elif op == "context":
            ctx = m.context(self.query(t), max_tokens=self.rng.choice((200, 800)), **kw)
            self.check_text(I, t, ctx.text, "context")
            for e in ctx.episode_ids:
                self.check_episode(I, t, e, None, "context")
        elif op == "list":
            sid = self.rng.choice((None, *SESSIONS))
            eps = m.list(session_id=sid, limit=self.rng.choice((10, 200)), **kw)
            for e in eps:
                self.check_episode(I, t, e.id, e.content, "list")
                if sid is not None and e.session_id != sid:
                    self.fail(I, f"list session {sid} for {t} returned session {e.session_id}")
        elif op == "get":
            own = self.own_episode(t)
            if own is not None:
                e = m.get(own, **kw)
                self.check_episode(I, t, e.id, e.content, "get")
        elif op == "get_foreign":
            self.expect_missing(I, t, "get", lambda i: m.get(i, **kw), self.foreign_episode(t))
            self.expect_missing(I, t, "notes_for", lambda i: m.notes_for(i, **kw), self.foreign_episode(t))
        elif op == "sessions":
            got = {s.session_id for s in m.sessions(**kw)}
            self.result.checks += 1
            if got != self.shadow.sessions(t):
                self.fail(I, f"sessions for {t}: {sorted(got)} != shadow {sorted(self.shadow.sessions(t))}")
        elif op == "notes":
            for n in m.notes(limit=50, **kw):
                if (n.namespace, n.user_id) != (t.namespace, t.user_id):
                    self.fail(I, f"notes for {t} returned a note of {n.namespace}/{n.user_id}")
                self.check_note(I, t, n.id, n.content, n.source_episode_ids, "notes")
                if self.rng.random() < 0.2:
                    for link in m.links(n.id, **kw):
                        for x in (link.source_id, link.target_id):
                            self.check_note(I, t, x, "", (), "links")
        elif op == "note_foreign":
            nid = self.foreign_note(t)
            self.expect_missing(I, t, "note", lambda i: m.note(i, **kw), nid)
            self.expect_missing(I, t, "links", lambda i: m.links(i, **kw), nid)
            self.expect_missing(I, t, "history", lambda i: m.history(i, **kw), nid)
        elif op == "notes_for":
            own = self.own_episode(t)
            if own is not None:
                for n in m.notes_for(own, **kw):
                    self.check_note(I, t, n.id, n.content, n.source_episode_ids, "notes_for")
        elif op == "history":
            mine = [n for n, o in self.shadow.note_owner.items() if o == t]
            if mine:
                try:
                    for c in m.history(self.rng.choice(mine), **kw):
                        self.check_text(I, t, json.dumps(c.detail), "history")
                except NotFoundError:
                    pass  # forgotten when its episode went; history is kept only while rows say so
        elif op == "summary":
            sid = self.rng.choice((None, *SESSIONS))
            try:
                s = m.summary(session_id=sid, **kw)
            except NotFoundError:
                return  # no notes (yet) for this user or session
            self.result.summaries_seen += 1
            if (s.namespace, s.user_id) != (t.namespace, t.user_id):
                self.fail(I, f"summary for {t} belongs to {s.namespace}/{s.user_id}")
            self.check_text(I, t, s.text, "summary")
        elif op == "stats":
            st = m.stats(**kw)
            self.result.checks += 1
            if st.episodes != len(self.shadow.eps[t]) or st.sessions != len(self.shadow.sessions(t)):
                self.fail(I, f"stats for {t}: {st.episodes} episodes/{st.sessions} sessions, shadow "
                             f"{len(self.shadow.eps[t])}/{len(self.shadow.sessions(t))}")
        elif op == "export":
            path = self.root / "export.jsonl"
            m.export(path, **kw)
            self.check_export(I, t, path.read_text(encoding="utf-8"))
        elif op == "delete":
            own = self.own_episode(t)
            if own is not None:
                n = m.delete([own] if self.rng.random() < 0.5 else own, **kw)
                self.result.checks += 1
                if n != 1:
                    self.fail(I, f"delete {own} for {t} removed {n}")
                del self.shadow.eps[t][own]
                self.check_others(I, t, "delete")
        elif op == "delete_foreign":
            self.expect_missing(I, t, "delete", lambda i: m.delete(i, **kw), self.foreign_episode(t))
            fid = self.foreign_episode(t)
            if fid is not None:
                n = m.delete([fid, "no-such-id"], **kw)
                self.result.checks += 1
                if n != 0:
                    self.fail(I, f"delete([{fid}]) for {t} removed {n} of another tenant's")
            self.check_others(I, t, "delete_foreign")
        elif op == "delete_session":
            own = sorted(self.shadow.sessions(t))
            if own:
                sid = self.rng.choice(own)
                n = m.delete_session(sid, **kw)
                gone = [i for i, (s, _) in self.shadow.eps[t].items() if s == sid]
                self.result.checks += 1
                if n != len(gone):
                    self.fail(I, f"delete_session {sid} for {t} removed {n}, shadow {len(gone)}")
                for i in gone:
                    del self.shadow.eps[t][i]
                self.check_others(I, t, "delete_session", everyone=self.rng.random() < 0.1)
        elif op == "delete_session_foreign":
            theirs = {s for o in ALL if o != t for s in self.shadow.sessions(o)} - self.shadow.sessions(t)
            if theirs:
                self.expect_missing(I, t, "delete_session", lambda s: m.delete_session(s, **kw),
                                    self.rng.choice(sorted(theirs)))
                self.check_others(I, t, "delete_session_foreign")
        elif op == "erase":
            n = m.erase(**kw)
            self.result.checks += 1
            if n != len(self.shadow.eps[t]):
                self.fail(I, f"erase {t} removed {n}, shadow {len(self.shadow.eps[t])}")
            self.record_erase(t)
            self.check_others(I, t, "erase", everyone=True)
        elif op == "process":
            m.process(**(kw if self.rng.random() < 0.5 else {}))
        elif op == "import_own":
            path = self.root / "own.jsonl"
            m.export(path, **kw)
            n = m.import_(path, **kw)  # every record exists already: skipped
            self.result.checks += 1
            if n != 0:
                self.fail(I, f"re-import of {t}'s own export wrote {n}")
        elif op == "import_foreign":
            fid = self.foreign_episode(t)
            if fid is not None:
                path = self.root / "forged.jsonl"
                path.write_text(self.forged_export(t, fid), encoding="utf-8")
                try:
                    n = m.import_(path, **kw)
                except ConflictError:  # the id is taken (ids are global); nothing was written
                    self.result.import_id_conflicts += 1
                else:
                    self.fail(I, f"import of another tenant's id {fid} into {t} wrote {n}")
                self.check_others(I, t, "import_foreign", everyone=True)
        else:  # pragma: no cover
            raise AssertionError(op)

    def forged_export(self, t: T, episode_id: str) -> str:
        """An export file of ``t`` holding one turn that reuses another tenant's episode id."""
        from ..memory import EXPORT_FORMAT, EXPORT_VERSION

        row = {"type": "episode", "id": episode_id, "namespace": t.namespace, "user_id": t.user_id,
               "agent_id": None, "session_id": "forged", "position": 0, "role": "user", "speaker": None,
               "content": self.text(t), "event_time": self.when(), "ingest_time": self.when(), "metadata": {}}
        return json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION}) + "\n" + json.dumps(row) + "\n"

    def expect_missing(self, iface: str, t: T, what: str, call: Callable[[str], Any], ident: str | None) -> None:
        if ident is None:
            return
        self.result.checks += 1
        try:
            got = call(ident)
        except NotFoundError:
            return
        self.fail(iface, f"{what}({ident}) for {t} (another tenant's id) returned {str(got)[:120]!r}")

    def check_export(self, iface: str, t: T, body: str) -> None:
        lines = [json.loads(x) for x in body.splitlines() if x.strip()][1:]
        ids = set()
        for row in lines:
            if (row.get("namespace"), row.get("user_id")) not in ((t.namespace, t.user_id), (None, t.user_id)):
                self.fail(iface, f"export for {t} holds a row of {row.get('namespace')}/{row.get('user_id')}")
            self.check_episode(iface, t, row["id"], row["content"], "export")
            ids.add(row["id"])
        self.result.checks += 1
        if ids != set(self.shadow.eps[t]):
            self.fail(iface, f"export for {t}: {len(ids)} episodes, shadow {len(self.shadow.eps[t])}")

    # -- REST --------------------------------------------------------------------
    REST_OPS = (("add", 13), ("search", 16), ("context", 5), ("list", 7), ("get", 3), ("get_foreign", 5),
                ("sessions", 3), ("notes", 4), ("note_foreign", 4), ("summary", 2), ("stats", 3),
                ("ns_stats", 1), ("users", 1), ("export", 1), ("delete", 2), ("delete_foreign", 4),
                ("delete_session", 0.5), ("delete_session_foreign", 1), ("erase", 0.1),
                ("wrong_user", 2), ("admin_data", 0.5), ("job_foreign", 1), ("import_own", 0.3),
                ("import_foreign", 0.5))

    def rest(self, op: str, t: T) -> None:
        import httpx

        I = "rest"
        h: httpx.Client = self.http
        bound = self.rng.random() < 0.5
        auth = {"Authorization": f"Bearer {self.user_keys[t] if bound else self.ns_keys[t.ns]}"}
        base = f"/v1/users/{t.user_id}"
        exists = t in self.shadow.exists

        def req(method: str, path: str, expect: int | tuple[int, ...], **kw: Any) -> Any:
            headers = {**auth, **kw.pop("headers", {})}
            r = h.request(method, path, headers=headers, **kw)
            want = (expect,) if isinstance(expect, int) else expect
            self.result.checks += 1
            if r.status_code not in want:
                self.fail(I, f"{method} {path} for {t} answered {r.status_code} (want {want}): {r.text[:160]}")
                return None
            return r

        if op != "add" and not exists and op not in ("ns_stats", "users", "wrong_user", "admin_data"):
            req("GET", f"{base}/episodes", 404)  # a user with no memory is unknown, even if others share the id
            return
        if op == "add":
            msgs, texts = self.messages(t)
            body: dict[str, Any] = {"messages": msgs, "timestamp": self.when()}
            sid = self.session(t)
            if sid is not None:
                body["session_id"] = sid
            r = req("POST", f"{base}/messages", (201, 202), json=body)
            if r is not None:
                out = r.json()
                self.record_add(t, [e["id"] for e in out["episodes"]], out["session_id"], texts)
                for e in out["episodes"]:
                    if e.get("user_id", t.user_id) != t.user_id or e.get("namespace", t.namespace) != t.namespace:
                        self.fail(I, f"add for {t} answered an episode of {e.get('namespace')}/{e.get('user_id')}")
            self.check_others(I, t, "add")
        elif op == "search":
            unit = self.rng.choice(("turn", "round", "session"))
            r = req("POST", f"{base}/search", 200, json={"query": self.query(t), "k": 10, "unit": unit})
            for hit in (r.json()["hits"] if r is not None else []):
                self.check_text(I, t, hit["text"], f"search/{unit}")
                for e in {hit["episode_id"], *hit.get("episode_ids", [])}:
                    self.check_episode(I, t, e, None, f"search/{unit}")
        elif op == "context":
            r = req("POST", f"{base}/context", 200, json={"query": self.query(t), "max_tokens": 500})
            if r is not None:
                self.check_text(I, t, r.json()["text"], "context")
                for e in r.json()["episode_ids"]:
                    self.check_episode(I, t, e, None, "context")
        elif op == "list":
            sid = self.rng.choice((None, *SESSIONS))
            params: dict[str, Any] = {"limit": self.rng.choice((10, 200))}
            if sid is not None:
                params["session_id"] = sid
            r = req("GET", f"{base}/episodes", 200, params=params)
            for e in (r.json()["items"] if r is not None else []):
                self.check_episode(I, t, e["id"], e["content"], "list")
        elif op == "get":
            own = self.own_episode(t)
            if own is not None:
                r = req("GET", f"{base}/episodes/{own}", 200)
                if r is not None:
                    self.check_episode(I, t, r.json()["id"], r.json()["content"], "get")
        elif op == "get_foreign":
            fid = self.foreign_episode(t)
            if fid is not None:
                req("GET", f"{base}/episodes/{fid}", 404)
                req("GET", f"{base}/episodes/{fid}/notes", 404)
        elif op == "sessions":
            r = req("GET", f"{base}/sessions", 200, params={"limit": 1000})
            if r is not None:
                got = {s["session_id"] for s in r.json()["items"]}
                if got != self.shadow.sessions(t):
                    self.fail(I, f"sessions for {t}: {sorted(got)} != {sorted(self.shadow.sessions(t))}")
        elif op == "notes":
            r = req("GET", f"{base}/notes", 200, params={"limit": 50})
            for n in (r.json()["items"] if r is not None else []):
                self.check_note(I, t, n["id"], n["content"], n.get("source_episode_ids"), "notes")
            if r is not None and r.json()["items"] and self.rng.random() < 0.3:
                nid = self.rng.choice(r.json()["items"])["id"]
                one = req("GET", f"{base}/notes/{nid}", 200)
                if one is not None:
                    self.check_text(I, t, json.dumps(one.json()), "note")
                    for link in one.json().get("links", []):
                        for x in (link.get("source_id"), link.get("target_id")):
                            if x:
                                self.check_note(I, t, x, "", (), "note links")
        elif op == "note_foreign":
            nid = self.foreign_note(t)
            if nid is not None:
                req("GET", f"{base}/notes/{nid}", 404)
                req("GET", f"{base}/notes/{nid}/history", 404)
        elif op == "summary":
            r = req("GET", f"{base}/summary", (200, 404))
            if r is not None and r.status_code == 200:
                self.result.summaries_seen += 1
                self.check_text(I, t, r.json()["text"], "summary")
        elif op == "stats":
            r = req("GET", f"{base}/stats", 200)
            if r is not None and r.json()["episodes"] != len(self.shadow.eps[t]):
                self.fail(I, f"stats for {t}: {r.json()['episodes']} != shadow {len(self.shadow.eps[t])}")
        elif op == "ns_stats":
            r = req("GET", "/v1/stats", 200)
            if r is not None:
                want = (len(self.shadow.eps[t]) if bound else
                        sum(len(self.shadow.eps[o]) for o in ALL if o.ns == t.ns))
                if r.json()["episodes"] != want:
                    self.fail(I, f"/v1/stats ({'user' if bound else 'namespace'} key of {t}): "
                                 f"{r.json()['episodes']} != {want}")
        elif op == "users":
            r = req("GET", "/v1/users", 200, params={"limit": 1000})
            if r is not None:
                got = set(r.json()["items"])
                want = {o.user_id for o in self.shadow.exists if o.ns == t.ns and (not bound or o == t)}
                if got != want:  # users with a memory (added since their last erase) of this namespace only
                    self.fail(I, f"/v1/users ({'user' if bound else 'namespace'} key of {t}): "
                                 f"{sorted(got)} != {sorted(want)}")
        elif op == "export":
            r = req("GET", f"{base}/export", 200)
            if r is not None:
                self.check_export(I, t, r.text)
        elif op == "delete":
            own = self.own_episode(t)
            if own is not None:
                if req("DELETE", f"{base}/episodes/{own}", 200) is not None:
                    del self.shadow.eps[t][own]
                self.check_others(I, t, "delete")
        elif op == "delete_foreign":
            fid = self.foreign_episode(t)
            if fid is not None:
                req("DELETE", f"{base}/episodes/{fid}", 404)
                self.check_others(I, t, "delete_foreign")
        elif op == "delete_session":
            own = sorted(self.shadow.sessions(t))
            if own:
                from urllib.parse import quote

                sid = self.rng.choice(own)
                r = req("DELETE", f"{base}/sessions/{quote(sid, safe='')}", 200)
                gone = [i for i, (s, _) in self.shadow.eps[t].items() if s == sid]
                if r is not None and r.json()["deleted"] != len(gone):
                    self.fail(I, f"DELETE session {sid} for {t}: {r.json()['deleted']} != {len(gone)}")
                for i in gone:
                    del self.shadow.eps[t][i]
                self.check_others(I, t, "delete_session")
        elif op == "delete_session_foreign":
            theirs = {s for o in ALL if o != t for s in self.shadow.sessions(o)} - self.shadow.sessions(t)
            if theirs:
                from urllib.parse import quote

                req("DELETE", f"{base}/sessions/{quote(self.rng.choice(sorted(theirs)), safe='')}", 404)
                self.check_others(I, t, "delete_session_foreign")
        elif op == "erase":
            r = req("DELETE", base, 200)
            if r is not None and r.json()["deleted"] != len(self.shadow.eps[t]):
                self.fail(I, f"erase {t}: {r.json()['deleted']} != {len(self.shadow.eps[t])}")
            self.record_erase(t)
            self.check_others(I, t, "erase", everyone=True)
        elif op == "wrong_user":
            # a key bound to t acting for another user of its namespace, or for t's user id elsewhere
            other = self.rng.choice([o for o in ALL if o.ns == t.ns and o != t])
            auth = {"Authorization": f"Bearer {self.user_keys[t]}"}
            path = f"/v1/users/{other.user_id}"
            for method, p, kw in (("GET", f"{path}/episodes", {}),
                                  ("POST", f"{path}/messages", {"json": {"messages": self.text(t)}}),
                                  ("DELETE", path, {})):
                req(method, p, 403, **kw)
            self.check_others(I, t, "wrong_user")
        elif op == "job_foreign":
            import base64

            theirs = {s for o in ALL if o != t for s in self.shadow.sessions(o)} - self.shadow.sessions(t)
            if theirs:
                sid = self.rng.choice(sorted(theirs))
                job = base64.urlsafe_b64encode(json.dumps([sid, 0, 0]).encode()).decode().rstrip("=")
                req("GET", f"{base}/jobs/{job}", 404)
        elif op == "import_own":
            r = req("GET", f"{base}/export", 200)
            if r is not None:
                back = req("POST", f"{base}/import", 200, content=r.content,
                           headers={"Content-Type": "application/x-ndjson"})
                if back is not None and back.json()["imported"] != 0:
                    self.fail(I, f"re-import of {t}'s own export wrote {back.json()['imported']}")
        elif op == "import_foreign":
            fid = self.foreign_episode(t)
            if fid is not None:
                r = req("POST", f"{base}/import", (200, 409), content=self.forged_export(t, fid).encode(),
                        headers={"Content-Type": "application/x-ndjson"})
                if r is not None and r.status_code == 200:
                    self.fail(I, f"import of another tenant's id {fid} into {t} answered {r.text[:120]}")
                elif r is not None:
                    self.result.import_id_conflicts += 1
                self.check_others(I, t, "import_foreign", everyone=True)
        elif op == "admin_data":
            auth = {"Authorization": f"Bearer {self.admin_key}"}
            req("GET", f"{base}/episodes", 403)
            req("DELETE", base, 403)
        else:  # pragma: no cover
            raise AssertionError(op)

    # -- MCP ---------------------------------------------------------------------
    MCP_OPS = (("remember", 25), ("recall", 25), ("get_context", 10), ("list_memories", 15),
               ("forget", 5), ("forget_foreign", 8), ("summary", 5))

    async def mcp(self, op: str, t: T, http: bool = False) -> None:
        I = "mcp_http" if http else "mcp"
        c = (self.mcp_http_clients if http else self.mcp_clients)[t]

        def data(res: Any, what: str) -> Any:
            self.result.checks += 1
            if res.is_error:
                self.fail(I, f"{what} for {t} failed: {res.content[0].text[:160]}")
                return None
            return res.structured_content

        if op == "remember":
            msgs, texts = self.messages(t)
            args: dict[str, Any] = {"content": msgs, "timestamp": self.when()}
            sid = self.session(t)
            if sid is not None:
                args["session_id"] = sid
            out = data(await c.call_tool("remember", args), "remember")
            if out is not None:
                self.record_add(t, out["episode_ids"], out["session_id"], texts)
            self.check_others(I, t, "remember")
        elif op == "recall":
            out = data(await c.call_tool("recall", {"query": self.query(t), "k": 10}), "recall")
            for hit in (out or {}).get("hits", []):
                self.check_episode(I, t, hit["episode_id"], None, "recall")
                self.check_text(I, t, hit["text"], "recall")
        elif op == "get_context":
            out = data(await c.call_tool("get_context", {"query": self.query(t), "max_tokens": 500}), "get_context")
            if out is not None:
                self.check_text(I, t, out["text"], "get_context")
                for e in out["episode_ids"]:
                    self.check_episode(I, t, e, None, "get_context")
        elif op == "list_memories":
            args = {"limit": 200}
            if self.rng.random() < 0.5:
                args["session_id"] = self.rng.choice(SESSIONS)
            out = data(await c.call_tool("list_memories", args), "list_memories")
            for e in (out or {}).get("episodes", []):
                self.check_episode(I, t, e["episode_id"], e["content"], "list_memories")
        elif op == "forget":
            own = self.own_episode(t)
            if own is not None:
                if data(await c.call_tool("forget", {"episode_id": own}), "forget") is not None:
                    del self.shadow.eps[t][own]
                self.check_others(I, t, "forget")
        elif op == "forget_foreign":
            fid = self.foreign_episode(t)
            if fid is not None:
                res = await c.call_tool("forget", {"episode_id": fid})
                self.result.checks += 1
                if not res.is_error or "no episode" not in res.content[0].text:
                    self.fail(I, f"forget({fid}) for {t} (another tenant's) answered {res.content[0].text[:120]!r}")
                self.check_others(I, t, "forget_foreign")
        elif op == "summary":
            from mcp.shared.exceptions import MCPError

            sid = self.rng.choice((None, *SESSIONS))
            uri = "memstrata://summary" if sid is None else f"memstrata://sessions/{sid.replace('/', '%2F')}/summary"
            try:
                res = await c.read_resource(uri)
            except MCPError:
                return  # no summary for that session (yet)
            for part in res.contents:
                self.result.summaries_seen += 1
                self.check_text(I, t, getattr(part, "text", ""), "summary resource")
        else:  # pragma: no cover
            raise AssertionError(op)

    # -- CLI ---------------------------------------------------------------------
    def cli(self, i: int, t: T) -> None:
        I = "cli"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSTRATA_")}
        env.update(MEMSTRATA_EMBED="off", MEMSTRATA_BACKGROUND="off", MEMSTRATA_NAMESPACE=t.namespace)
        base = [sys.executable, "-m", "memstrata"]
        kind = ("search", "list", "export", "delete_foreign")[i % 4]
        opts = ["--db", str(self.db), "-u", t.user_id]
        if kind == "search":
            cmd = [*base, "search", f"{self.rng.choice(_WORDS)} {self.rng.choice(ALL).mark}", *opts, "--json"]
        elif kind == "list":
            cmd = [*base, "list", *opts, "--limit", "100000", "--json"]
        elif kind == "export":
            cmd = [*base, "export", str(self.root / "cli-export.jsonl"), *opts]
        else:
            fid = self.foreign_episode(t) or "no-such-id"
            cmd = [*base, "delete", fid, *opts, "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        self.result.kinds[f"cli:{kind}"] += 1
        self.result.ops[I] += 1
        self.result.checks += 1
        if kind == "delete_foreign":
            if proc.returncode == 0 or "no episode" not in proc.stderr:
                self.fail(I, f"delete of another tenant's id for {t}: rc {proc.returncode} {proc.stderr[:160]!r}")
            self.check_others(I, t, "cli delete", everyone=True)
            return
        if proc.returncode != 0:
            if t not in self.shadow.exists and kind != "export":
                return
            self.fail(I, f"{kind} for {t}: rc {proc.returncode} {proc.stderr[:200]!r}")
            return
        if kind == "search":
            for hit in json.loads(proc.stdout):
                self.check_text(I, t, hit["text"], "search")
                self.check_episode(I, t, hit["episode_id"], None, "search")
        elif kind == "list":
            eps = json.loads(proc.stdout)
            for e in eps:
                self.check_episode(I, t, e["id"], e["content"], "list")
            if len(eps) != len(self.shadow.eps[t]):
                self.fail(I, f"list for {t}: {len(eps)} != shadow {len(self.shadow.eps[t])}")
        else:
            self.check_export(I, t, (self.root / "cli-export.jsonl").read_text(encoding="utf-8"))

    # -- the full check: the SQLite file itself ------------------------------------
    def check_file(self) -> dict[str, Any]:
        from ..store.sqlite import scope_token
        from ..store.base import Tenant

        I = "file"
        c = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        out: dict[str, Any] = {}
        try:
            rows = c.execute("SELECT e.id, e.namespace, e.user_id, e.content, e.scope, s.namespace, s.user_id, "
                             "s.session_id FROM episodes e JOIN sessions s ON s.key = e.session_key").fetchall()
            out["episodes"] = len(rows)
            by: dict[T, dict[str, tuple[str, str]]] = {t: {} for t in ALL}
            index = {(t.namespace, t.user_id): t for t in ALL}
            for eid, ns, user, content, scope, sns, suser, sid in rows:
                t = index.get((ns, user))
                if t is None or (sns, suser) != (ns, user) or scope != scope_token(Tenant(ns, user)):
                    self.fail(I, f"episode {eid} of {ns}/{user} sits in a session of {sns}/{suser} or a foreign scope")
                    continue
                by[t][eid] = (sid, content)
                self.check_text(I, t, content, "episode row")
            for t in ALL:
                if by[t] != self.shadow.eps[t]:
                    a, b = set(by[t]), set(self.shadow.eps[t])
                    self.fail(I, f"{t}: file holds {len(a)} episodes, shadow {len(b)} "
                                 f"(+{len(a - b)} -{len(b - a)}, changed {sum(by[t][i] != self.shadow.eps[t][i] for i in a & b)})")
            for ns, user, doc in c.execute("SELECT namespace, user_id, doc FROM sessions"):
                t = index.get((ns, user))
                if t is not None:
                    self.check_text(I, t, doc, "session document")
            notes = c.execute("SELECT key, id, namespace, user_id, content, context, keywords, scope FROM notes").fetchall()
            out["notes"] = len(notes)
            note_tenant = {}
            for key, nid, ns, user, *texts, scope in notes:
                t = index.get((ns, user))
                note_tenant[key] = (ns, user)
                if t is None or scope != scope_token(Tenant(ns, user)):
                    self.fail(I, f"note {nid} has a foreign tenant or scope")
                    continue
                for x in texts:
                    self.check_text(I, t, x, "note row")
            bad = c.execute("SELECT COUNT(*) FROM note_sources ns JOIN notes n ON n.key = ns.note_key "
                            "JOIN episodes e ON e.key = ns.episode_key "
                            "WHERE n.namespace != e.namespace OR n.user_id != e.user_id").fetchone()[0]
            bad += c.execute("SELECT COUNT(*) FROM links l JOIN notes a ON a.key = l.source_key "
                             "JOIN notes b ON b.key = l.target_key "
                             "WHERE a.namespace != b.namespace OR a.user_id != b.user_id").fetchone()[0]
            bad += c.execute("SELECT COUNT(*) FROM pending p JOIN episodes e ON e.key = p.episode_key "
                             "WHERE p.namespace != e.namespace OR p.user_id != e.user_id").fetchone()[0]
            bad += c.execute("SELECT COUNT(*) FROM notes a JOIN notes b ON b.key = a.superseded_by "
                             "WHERE a.namespace != b.namespace OR a.user_id != b.user_id").fetchone()[0]
            bad += c.execute("SELECT COUNT(*) FROM note_history h JOIN notes n ON n.id = h.note_id "
                             "WHERE h.namespace != n.namespace OR h.user_id != n.user_id").fetchone()[0]
            if bad:
                self.fail(I, f"{bad} rows join records of two tenants (sources, links, pending, supersession, history)")
            out["cross_tenant_rows"] = bad
            summaries = c.execute("SELECT namespace, user_id, text FROM summaries").fetchall()
            out["summaries"] = len(summaries)
            for ns, user, text in summaries:
                t = index.get((ns, user))
                if t is None:
                    self.fail(I, f"summary of unknown tenant {ns}/{user}")
                else:
                    self.check_text(I, t, text, "summary row")
            for ns, user, detail in c.execute("SELECT namespace, user_id, detail FROM note_history"):
                t = index.get((ns, user))
                if t is not None:
                    self.check_text(I, t, detail, "history row")
            # FTS: each tenant's scope token AND every other tenant's marker matches nothing
            leaks = 0
            for t in ALL:
                tok = scope_token(Tenant(t.namespace, t.user_id))
                for table, col in (("episodes_fts", "content"), ("sessions_fts", "doc"), ("notes_fts", "content")):
                    for o in ALL:
                        if o == t:
                            continue
                        q = f'scope : "{tok}" AND {col} : "{o.mark}"*'
                        leaks += c.execute(f"SELECT COUNT(*) FROM {table} WHERE {table} MATCH ?", (q,)).fetchone()[0]
            if leaks:
                self.fail(I, f"{leaks} FTS rows under one tenant's scope hold another tenant's marker")
            out["fts_cross_matches"] = leaks
            out["integrity"] = c.execute("PRAGMA integrity_check").fetchone()[0]
            if out["integrity"] != "ok":
                self.fail(I, f"integrity_check: {out['integrity']}")
        finally:
            c.close()
        return out

    # -- driving -----------------------------------------------------------------
    def periodic(self) -> None:
        """Every tenant against the shadow, through the API."""
        for t in ALL:
            self.result.checks += 1
            n, ids = self.counts_api(t)
            if ids != set(self.shadow.eps[t]):
                self.fail("periodic", f"{t}: {n} episodes listed, shadow {len(self.shadow.eps[t])}")

    def close(self) -> None:
        self.server_mem.close()
        self.mem.close()


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([n for n, _ in table], weights=[w for _, w in table])[0]


def run(ops: int = 10_000, seed: int = 1, *, mcp_share: float = 0.03, rest_share: float = 0.3,
        mcp_http_share: float = 0.3,
        cli_ops: int = 4, periodic_every: int = 500, workdir: str | Path | None = None,
        log: Log | None = None) -> Result:
    """Run ``ops`` operations (Python API, REST, MCP, ``cli_ops`` CLI processes) and
    return counts and violations (none expected)."""
    if isinstance(ops, bool) or not isinstance(ops, int) or not 1 <= ops <= MAX_OPS:
        raise InvalidInputError(f"--ops must be an integer between 1 and {MAX_OPS}, got {ops!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"--seed must be an integer, got {seed!r}")
    if isinstance(cli_ops, bool) or not isinstance(cli_ops, int) or not 0 <= cli_ops <= min(ops, 1000):
        raise InvalidInputError(f"--cli-ops must be an integer between 0 and min(--ops, 1000), got {cli_ops!r}")
    if workdir is not None and not Path(workdir).is_dir():
        raise InvalidInputError(f"--db-dir {str(workdir)!r} is not a directory")
    log = log or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="memstrata-isolation-", dir=workdir) as tmp:
        return asyncio.run(_run(Path(tmp), ops, seed, mcp_share, rest_share, mcp_http_share, cli_ops,
                                periodic_every, log))


async def _run(root: Path, ops: int, seed: int, mcp_share: float, rest_share: float, mcp_http_share: float,
               cli_ops: int, periodic_every: int, log: Log) -> Result:
    import httpx
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from ..server.auth import KeyRing
    from ..server.inthread import running
    from ..server.mcp import build_server, fixed_tenant, http_app
    from ..server.rest import create_app

    started = time.perf_counter()
    eng = Engine(root, seed, log)
    eng.result.ops_requested = ops
    ring = KeyRing(eng.server_mem.store)
    eng.ns_keys = {n: ring.create(namespace=ns, label=f"ns-{ns}").token for n, ns in enumerate(NAMESPACES)}
    eng.user_keys = {t: ring.create(namespace=t.namespace, user_id=t.user_id).token for t in ALL}
    eng.admin_key = ring.create(admin=True).token
    rng = random.Random(seed ^ 0x5EED)
    cli_at = {int(ops * (i + 1) / (cli_ops + 1)) for i in range(cli_ops)}
    try:
        with running(create_app(eng.server_mem)) as url, httpx.Client(base_url=url, timeout=60) as http, \
                running(http_app(eng.server_mem), lifespan="on") as mcp_url:
            eng.http = http
            async with AsyncExitStack() as stack:
                # in process (one server per tenant) and over streamable HTTP (one server; the
                # tenant comes from each request's user-bound key)
                eng.mcp_clients = {t: await stack.enter_async_context(
                    Client(build_server(eng.mem, fixed_tenant(t.user_id, t.namespace)))) for t in ALL}
                eng.mcp_http_clients = {}
                for t in ALL:
                    h2 = await stack.enter_async_context(httpx2.AsyncClient(
                        headers={"Authorization": f"Bearer {eng.user_keys[t]}"}, timeout=httpx2.Timeout(60.0)))
                    eng.mcp_http_clients[t] = await stack.enter_async_context(
                        Client(streamable_http_client(f"{mcp_url}/mcp", http_client=h2)))  # type: ignore[arg-type]
                done, cli_done = 0, 0
                while done < ops:
                    t = rng.choice(ALL)
                    if done in cli_at and cli_done < cli_ops:
                        await asyncio.to_thread(eng.cli, cli_done, t)
                        cli_done += 1
                    else:
                        t0 = time.perf_counter()
                        x = rng.random()
                        if x < mcp_share:
                            op = _pick(rng, Engine.MCP_OPS)
                            over_http = rng.random() < mcp_http_share
                            iface = "mcp_http" if over_http else "mcp"
                            await eng.mcp(op, t, http=over_http)
                        elif x < mcp_share + rest_share:
                            iface, op = "rest", _pick(rng, Engine.REST_OPS)
                            eng.rest(op, t)
                        else:
                            iface, op = "python", _pick(rng, Engine.PY_OPS)
                            eng.py(op, t)
                        eng.result.ops[iface] += 1
                        eng.result.kinds[f"{iface}:{op}"] += 1
                        eng.result.kind_seconds[f"{iface}:{op}"] += time.perf_counter() - t0
                    done += 1
                    if done % periodic_every == 0:
                        eng.periodic()
                        log(f"{done}/{ops} ops, {len(eng.result.violations)} violations")
            eng.server_mem.wait_idle(60)
            eng.mem.process()
            for t in ALL:  # summaries of every tenant, rebuilt after the last notes
                try:
                    eng.py("summary", t)
                except NotFoundError:
                    pass
        eng.periodic()
        eng.close()
        eng.result.final = eng.check_file()
    except BaseException:
        eng.close()
        raise
    eng.result.seconds = time.perf_counter() - started
    return eng.result


def render(result: dict[str, Any], out: Any) -> None:
    """A few lines for a terminal (``out``: a rich Console)."""
    per = ", ".join(f"{k} {v:,}" for k, v in result["ops_per_interface"].items())
    out.print(f"{result['ops_total']:,} ops over {result['tenants']} tenants in {result['seconds']} s ({per})",
              markup=False)
    f = result["final_check"]
    out.print(f"{result['checks']:,} checks; {result['notes_seen']:,} notes and {result['summaries_seen']:,} "
              f"summaries read; file at the end: {f.get('episodes')} episodes, {f.get('notes')} notes, "
              f"{f.get('cross_tenant_rows')} cross-tenant rows, {f.get('fts_cross_matches')} FTS cross matches, "
              f"integrity {f.get('integrity')}", markup=False)
    out.print(f"violations: {result['violations']}", markup=False)
    for v in result["violation_examples"]:
        out.print(f"  {v}", markup=False)


__all__ = ["ALL", "INTERFACES", "Result", "render", "run"]
