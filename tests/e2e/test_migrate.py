"""memstrata migrate: a lossless copy between stores, proved by row counts and checksums
read back from both sides, on real SQLite files and real processes."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from memstrata import Memory, MemoryConfig, StoreError
from memstrata.config import EmbedConfig, NotesConfig
from memstrata.errors import InvalidInputError
from memstrata.migrate import encode_row, migrate, open_stores, redact, verify
from memstrata.server.auth import KeyRing
from memstrata.store import SQLiteStore, Tenant, open_store
from memstrata.store.base import TABLES

SYNC = MemoryConfig(notes=NotesConfig(background=False))

# A life told over months, with changes of mind, so notes get superseded (links, history).
ALICE = [
    ("2024-01-05T10:00:00Z", "I live in Lisbon and work as a baker at a small bakery near the river."),
    ("2024-01-05T10:01:00Z", "My dog is a border collie named Pepper; she is two years old."),
    ("2024-02-11T18:30:00Z", "I started learning the cello, lessons on Tuesday evenings."),
    ("2024-03-02T09:15:00Z", "Actually I moved to Porto last week, the bakery opened a second shop there."),
    ("2024-03-20T20:00:00Z", "I quit the cello and switched to the violin instead."),
    ("2024-04-07T12:00:00Z", "My favourite food is grilled sardines with lemon."),
    ("2024-05-19T16:45:00Z", "Correction: my favourite food is now pastel de nata, not sardines."),
    ("2024-06-01T08:00:00Z", "Pepper won a herding trial in Braga on Saturday!"),
]
BOB = [
    ("2024-02-01T07:00:00Z", "I work as a nurse in Leeds on night shifts."),
    ("2024-02-15T07:30:00Z", "I now work as a paramedic in York instead."),
]
QUERIES = ["Where does she live?", "What instrument does she play?", "favourite food", "dog Pepper trial",
           "nurse shifts", "bakery second shop"]


def _build(path: Path, embedder: Any) -> dict[str, Any]:
    """A store with every table filled: two namespaces, episodes with vectors, notes with
    vectors, sources, links and history, summaries, queued (and once failed) note work,
    and API keys, one of them revoked."""
    with Memory(path, config=SYNC, embedder=embedder) as mem:
        for ts, text in ALICE:
            mem.add([{"role": "user", "content": text}, {"role": "assistant", "content": f"Noted: {text[:30]}"}],
                    user_id="alice", session_id=f"s-{ts[:10]}", timestamp=ts, wait=True)
        for ts, text in BOB:
            mem.add(text, user_id="bob", namespace="team-b", timestamp=ts, metadata={"src": "ü", "n": 1.5},
                    wait=True)
        # queued work: stored, not yet processed; one attempt recorded as failed
        mem.add("I will visit my sister in Faro next month.", user_id="carol", timestamp="2024-07-01T00:00:00Z")
        mem.add("Remind me to renew my passport.", user_id="carol", timestamp="2024-07-02T00:00:00Z")
        carol = Tenant(mem.config.namespace, "carol")
        key = mem.store.pending_episodes(carol, limit=1)[0][0]
        mem.store.mark_pending_failed(carol, [key], "extractor timed out (test)")
        ring = KeyRing(mem.store)
        issued = ring.create(namespace=mem.config.namespace, user_id="alice", label="alice's app")
        ring.create(admin=True, label="ops")
        old = ring.create(namespace="team-b", label="retired")
        ring.revoke(old.key.key_id)
        return {"token": issued.token, "namespace": mem.config.namespace}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("migrate") / "source.db"
    info = _build(path, embedder)
    return {"path": path, **info}


def _copy(src: Path, dst: Path) -> Any:
    s, t = open_stores(str(src), f"sqlite:///{dst}")
    try:
        return migrate(s, t, batch=3)  # small batches: every table crosses batch boundaries
    finally:
        s.close()
        t.close()


def _rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    store = SQLiteStore(path)
    try:
        return [r for batch in store.dump_table(table, batch=1000) for r in batch]
    finally:
        store.close()


def _view(mem: Memory, ns: str, tmp: Path, name: str) -> dict[str, Any]:
    """Everything a user of the library sees, from one store."""
    out: dict[str, Any] = {"search": {}, "notes": {}, "history": {}, "links": {}}
    for user, namespace in (("alice", ns), ("bob", "team-b")):
        for q in QUERIES:
            for unit in ("turn", "session"):
                out["search"][user, q, unit] = list(mem.search(
                    q, user_id=user, namespace=namespace, unit=unit, as_of="2024-08-01T00:00:00Z", k=5))
        notes = mem.notes(user_id=user, namespace=namespace, limit=1000)
        out["notes"][user] = notes
        for note in notes:
            out["history"][note.id] = mem.history(note.id, user_id=user, namespace=namespace)
            out["links"][note.id] = mem.links(note.id, user_id=user, namespace=namespace)
        out["summary", user] = mem.summary(user_id=user, namespace=namespace)
    out["pending"] = mem.pending(user_id="carol")
    out["keys"] = mem.store.list_api_keys()
    export = tmp / f"{name}.jsonl"
    mem.export(export)
    out["export"] = export.read_bytes()
    mem.export(export, namespace="team-b")
    out["export-b"] = export.read_bytes()
    return out


def test_sqlite_copy_is_verified_and_behaves_like_the_source(source: dict[str, Any], tmp_path: Path,
                                                             embedder: Any) -> None:
    target = tmp_path / "new" / "copy.db"
    target.parent.mkdir()
    report = _copy(source["path"], target)
    assert report.ok and report.mismatched == ()
    assert [t.table for t in report.tables] == list(TABLES)
    for check in report.tables:
        assert check.ok and check.source_sha256 == check.target_sha256, check
        assert check.source_rows == check.target_rows > 0, f"the fixture leaves {check.table} empty"
    assert report.rows_copied == sum(t.source_rows for t in report.tables)

    # byte-level: every row equal, except revisions, which only move forward
    for table in TABLES:
        a, b = _rows(source["path"], table), _rows(target, table)
        if table == "tenants":
            assert [r[:2] for r in a] == [r[:2] for r in b]
            assert all(rb[2] >= ra[2] for ra, rb in zip(a, b))
        else:
            assert a == b, table

    conn = sqlite3.connect(target)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    for fts in ("episodes_fts", "sessions_fts", "notes_fts"):  # the triggers indexed every loaded row
        conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
    conn.close()

    ns = source["namespace"]
    copy_store, orig_store = SQLiteStore(target), SQLiteStore(source["path"])
    try:
        alice = Tenant(ns, "alice")
        for terms in (["Porto"], ["violin", "cello"], ["sardines"]):
            hits = copy_store.lexical_turns(alice, terms, limit=5)
            assert hits and hits == orig_store.lexical_turns(alice, terms, limit=5)
            assert copy_store.lexical_sessions(alice, terms, limit=5) == orig_store.lexical_sessions(alice, terms,
                                                                                                     limit=5)
            assert copy_store.lexical_notes(alice, terms, limit=5) == orig_store.lexical_notes(alice, terms, limit=5)
    finally:
        copy_store.close()
        orig_store.close()

    with Memory(source["path"], config=SYNC, embedder=embedder) as a, \
            Memory(target, config=SYNC, embedder=embedder) as b:
        va, vb = _view(a, ns, tmp_path, "a"), _view(b, ns, tmp_path, "b")
        assert KeyRing(b.store).verify(source["token"]) is not None  # the servers' keys still work
    assert va == vb
    assert any(va["search"].values()) and va["export"].count(b"\n") == 1 + len(ALICE) * 2 + 2
    superseded = [n for n in va["notes"]["alice"] if n.status != "active"]
    assert superseded and any(va["links"][n.id] for n in superseded)
    assert any(len(h) > 1 for h in va["history"].values())
    assert va["pending"] == 2


def test_a_missing_target_file_is_created_and_a_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        open_stores(str(tmp_path / "nope.db"), str(tmp_path / "t.db"))
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "t.db").exists()


def test_refuses_a_target_that_is_not_empty(source: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "busy.db"
    with Memory(target, config=MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(enabled=False))) as mem:
        mem.add("already here", user_id="zoe")
    before = {t: _rows(target, t) for t in TABLES}
    with pytest.raises(StoreError, match=r"not empty \(rows in: tenants, sessions, episodes\)"):
        _copy(source["path"], target)
    assert {t: _rows(target, t) for t in TABLES} == before  # nothing was written


def test_load_table_never_merges(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        row = ("k1", "h" * 64, "ns", None, 0, "", 1, None)
        store.load_table("api_keys", [row])
        store.load_table("api_keys", [("k2", *row[1:])])  # the next batch of the same load
        other = SQLiteStore(tmp_path / "s.db")  # another loader finds rows it did not write
        try:
            with pytest.raises(StoreError, match="already holds 2 row"):
                other.load_table("api_keys", [("k3", *row[1:])])
        finally:
            other.close()
        with pytest.raises(StoreError, match="duplicate"):
            store.load_table("api_keys", [("k1", *row[1:])])
        with pytest.raises(InvalidInputError, match="unknown table 'nope'"):
            store.load_table("nope", [])
        with pytest.raises(InvalidInputError, match="row 0 has 2 values"):
            store.load_table("api_keys", [("a", "b")])
        assert [r[0] for r in _rows(tmp_path / "s.db", "api_keys")] == ["k1", "k2"]
    finally:
        store.close()


def test_one_changed_value_in_the_copy_fails_verification(source: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    assert _copy(source["path"], target).ok
    conn = sqlite3.connect(target)
    (key, importance), = conn.execute("SELECT key, importance FROM notes ORDER BY key LIMIT 1").fetchall()
    conn.execute("UPDATE notes SET importance=? WHERE key=?", (math.nextafter(importance, 2.0), key))  # one ulp
    conn.commit()
    conn.close()
    s, t = SQLiteStore(source["path"]), SQLiteStore(target)
    try:
        checks = verify(s, t, batch=4)
    finally:
        s.close()
        t.close()
    bad = [c for c in checks if not c.ok]
    assert [c.table for c in bad] == ["notes"]
    assert bad[0].source_rows == bad[0].target_rows and bad[0].source_sha256 != bad[0].target_sha256


def test_a_copy_changed_between_copy_and_check_is_reported_by_migrate(source: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    s, t = open_stores(str(source["path"]), str(target))

    def tamper(stage: str, table: str, done: int, total: int | None) -> None:
        if stage == "verify" and table == "api_keys" and done == 0:  # the copy is done, the check starts
            conn = sqlite3.connect(target)
            conn.execute("UPDATE embeddings SET vec = zeroblob(length(vec)) WHERE episode_key = "
                         "(SELECT MAX(episode_key) FROM embeddings)")
            conn.commit()
            conn.close()

    try:
        report = migrate(s, t, batch=50, progress=tamper)
    finally:
        s.close()
        t.close()
    assert not report.ok and report.mismatched == ("embeddings",)
    assert report.as_dict()["tables"][list(TABLES).index("embeddings")]["ok"] is False


def test_a_copy_that_fails_midway_says_where_and_what_to_do(source: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    s, t = open_stores(str(source["path"]), str(target))

    fired: list[int] = []

    def intrude(stage: str, table: str, done: int, total: int | None) -> None:
        if (stage, table) == ("copy", "notes") and done > 0 and not fired:  # a writer slips a row in mid-table
            fired.append(done)
            conn = sqlite3.connect(target)
            conn.execute("INSERT INTO notes (key, id, namespace, user_id, scope, content, norm, created_at, "
                         "updated_at) VALUES (999999, 'intruder', 'x', 'y', 'z', 'c', 'n', 0, 0)")
            conn.commit()
            conn.close()

    try:
        with pytest.raises(StoreError) as info:
            migrate(s, t, batch=3, progress=intrude)
    finally:
        s.close()
        t.close()
    msg = str(info.value)
    assert f"copying table 'notes' after {fired[0]} of its rows" in msg
    assert "partial copy" in msg and "run migrate again" in msg and "already holds" in msg


def test_encoding_is_exact_and_unambiguous() -> None:
    assert encode_row((1.0,)) != encode_row((1,)) != encode_row(("1",)) != encode_row((b"1",))
    assert encode_row((0.1,)) != encode_row((math.nextafter(0.1, 1.0),))
    assert encode_row(("ab", "c")) != encode_row(("a", "bc"))
    assert encode_row((None,)) != encode_row(("",)) != encode_row((b"",))
    assert encode_row((True,)) == encode_row((1,))
    with pytest.raises(StoreError, match="datetime"):
        encode_row((datetime.now(timezone.utc),), "episodes")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memstrata", "migrate", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_end_to_end(source: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "cli.db"
    done = _cli("--from", f"sqlite:///{source['path']}", "--to", str(target), "--batch", "7", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["mismatched"] == [] and len(report["tables"]) == len(TABLES)
    assert report["rows_copied"] == sum(t["target_rows"] for t in report["tables"]) > 0
    assert "copy episodes" in done.stderr and "verify notes" in done.stderr  # the progress bars

    again = _cli("--from", str(source["path"]), "--to", f"sqlite:///{target}")
    assert again.returncode == 1 and "not empty" in again.stderr and again.stdout == ""

    human = _cli("--from", str(source["path"]), "--to", str(tmp_path / "h.db"))
    assert human.returncode == 0 and "verified: all 12 tables" in human.stdout

    missing = _cli("--from", str(tmp_path / "nope.db"), "--to", str(tmp_path / "x.db"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    # an empty target whose database alters what it is given: the copy "succeeds", the check does not
    lossy = tmp_path / "lossy.db"
    SQLiteStore(lossy).close()
    conn = sqlite3.connect(lossy)
    conn.execute("CREATE TRIGGER lossy AFTER INSERT ON note_history BEGIN "
                 "UPDATE note_history SET detail = '{}' WHERE key = new.key AND new.key % 5 = 0; END")
    conn.close()
    bad = _cli("--from", str(source["path"]), "--to", str(lossy))
    assert bad.returncode == 1
    assert "verification failed: table(s) note_history differ" in bad.stderr
    assert "MISMATCH" in bad.stdout and "verified: all" not in bad.stdout



def test_reports_never_carry_a_password() -> None:
    assert redact("postgresql://me:s3cret@db.example:5432/mem") == "postgresql://me:***@db.example:5432/mem"
    assert redact("postgresql://me@db/mem?sslmode=require&password=s3cret") == \
        "postgresql://me@db/mem?sslmode=require&password=***"
    assert redact("sqlite:////srv/memory.db") == "sqlite:////srv/memory.db"


# -- PostgreSQL (a real server: tests/pg.py) --------------------------------------------------


def _pg_memory(url: str, embedder: Any) -> Memory:
    return Memory(config=SYNC, store=open_store(url), embedder=embedder)


def _no_search(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "search"}


def test_sqlite_to_postgres_and_back_is_lossless(source: dict[str, Any], pg_url: str, tmp_path: Path,
                                                 embedder: Any) -> None:
    # there through the CLI (a real process), back through the library
    there = subprocess.run([sys.executable, "-m", "memstrata", "migrate", "--from", str(source["path"]),
                            "--to", pg_url, "--batch", "4", "--json"], capture_output=True, text=True, timeout=180)
    assert there.returncode == 0, there.stderr
    out = json.loads(there.stdout)
    assert out["ok"] and all(t["ok"] and t["target_rows"] > 0 for t in out["tables"])
    assert ":***@" in out["target"] or "@" not in out["target"]  # no password in reports

    back = tmp_path / "back.db"
    s, t = open_stores(pg_url, str(back))
    try:
        report = migrate(s, t, batch=5)
    finally:
        s.close()
        t.close()
    assert report.ok
    assert [c.source_sha256 for c in report.tables] == [c["source_sha256"] for c in out["tables"]]
    assert [c.target_sha256 for c in report.tables] == [c["source_sha256"] for c in out["tables"]]
    for table in TABLES:
        a, b = _rows(source["path"], table), _rows(back, table)
        assert (a == b) if table != "tenants" else ([r[:2] for r in a] == [r[:2] for r in b]), table

    ns = source["namespace"]
    with Memory(source["path"], config=SYNC, embedder=embedder) as m0, \
            Memory(back, config=SYNC, embedder=embedder) as m2, _pg_memory(pg_url, embedder) as m1:
        v0, v1, v2 = (_view(m, ns, tmp_path, name) for m, name in ((m0, "0"), (m1, "1"), (m2, "2")))
        assert KeyRing(m1.store).verify(source["token"]) is not None
    assert v0 == v2  # the round trip changes nothing a user sees, search results included
    assert _no_search(v1) == _no_search(v0)  # notes, history, links, summaries, queue, keys, exports
    assert all(v1["search"][q] for q in v0["search"] if v0["search"][q])  # PostgreSQL ranks by itself


def test_a_postgres_target_that_is_not_empty_is_refused(source: dict[str, Any], pg_url: str,
                                                        embedder: Any) -> None:
    with _pg_memory(pg_url, embedder) as mem:
        mem.add("already here", user_id="zoe", namespace="other")
    s, t = open_stores(str(source["path"]), pg_url)
    try:
        with pytest.raises(StoreError, match=r"not empty \(rows in: tenants, sessions, episodes, embeddings, pending"):
            migrate(s, t)
        assert [r[2:4] for b in t.dump_table("episodes") for r in b] == [("other", "zoe")]  # nothing was written
    finally:
        s.close()
        t.close()


def test_postgres_builds_the_vector_index_after_the_load(source: dict[str, Any], pg_url: str) -> None:
    """No HNSW graph is kept up to date row by row during a load (that made 100k vectors
    take 540 s); migrate builds one per tenant past ``exact_below`` at the end (and none
    for a smaller tenant), and dense search then uses it."""
    import numpy as np
    import psycopg

    from memstrata.store.postgres_graphs import graph_name

    src, dst = open_stores(str(source["path"]), pg_url)
    try:
        with_vectors = [t for t in src.tenants() if any(v is not None for _, v, _ in src.export_rows(t))]
        assert len(with_vectors) >= 2
        sizes = {t: sum(v is not None for _, v, _ in src.export_rows(t)) for t in with_vectors}
        dst.exact_below = max(sizes.values())  # type: ignore[attr-defined]  # only the biggest get one
        report = migrate(src, dst, batch=7)
        assert report.ok
        with psycopg.connect(pg_url) as conn:
            names = sorted(r[0] for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings' AND indexname LIKE 'embeddings_g_%'"))
        big = [t for t in with_vectors if sizes[t] == max(sizes.values())]
        assert len(big) < len(with_vectors)
        assert names == sorted(graph_name(t, 384) for t in big)
        tenant = big[0]
        vec, model = next((v, m) for _, v, m in dst.export_rows(tenant) if v is not None)
        q = np.asarray(vec, np.float32) / np.linalg.norm(np.asarray(vec, np.float32))
        found = dst.dense_turns(tenant, q, model, limit=3)
        assert found and found[0][1] > 0.99
        assert dst.dense_counts["hnsw"] == 1  # type: ignore[attr-defined]
    finally:
        src.close()
        dst.close()
