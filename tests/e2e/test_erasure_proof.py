"""Erasure you can prove: erase, then scan the raw bytes of the store files for the text.

Every test that shows the scanner finding nothing also shows it finding what is there
(before the erase, or the part that was kept), so a silent scanner would fail.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memstrata import Memory, MemoryConfig, StoreError
from memstrata.config import EmbedConfig, NotesConfig
from memstrata.erasure import collect, erase_verified, scan, scope_traces, text_traces, traces_from_file
from memstrata.store.base import Tenant
from memstrata.store.sqlite import SQLiteStore

SECRET = "My passport number is ZQ-99812 and I keep it under the blue quokka rug in Lisbon"
REPLY = "Noted: the passport ZQ-99812 sits under the blue quokka rug."
SHARED = "Thank you so much for helping me with the move last weekend"  # said by both users
LATER = "On Tuesday I told my sister Ingrid about the hippogriff tattoo on my left arm"


def _mem(path: Path) -> Memory:
    return Memory(path, config=MemoryConfig(embed=EmbedConfig(enabled=False)))


def _victim(mem: Memory) -> None:
    mem.add([{"role": "user", "content": SECRET}, {"role": "assistant", "content": REPLY}],
            user_id="victim", session_id="secret-session-id-777", metadata={"tag": "metadatamarker4242"},
            timestamp="2024-05-01T10:00:00Z", wait=True)
    mem.add([{"role": "user", "content": SHARED}, {"role": "user", "content": LATER}], user_id="victim",
            session_id="second-session-of-victim", timestamp="2024-05-08T10:00:00Z", wait=True)
    mem.summary(user_id="victim")  # make sure a summary row exists to be erased


def test_erase_leaves_no_trace_and_the_scanner_sees_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    victim = Tenant("default", "victim")
    cache = tmp_path / "cache"  # the cache directory is scanned too (test_cli covers the real one)
    cache.mkdir()
    with _mem(path) as mem:
        _victim(mem)
        mem.add([{"role": "user", "content": SHARED}, {"role": "user", "content": "zebras graze at noon"}],
                user_id="bystander", wait=True)
        assert mem.notes(user_id="victim") and mem.summary(user_id="victim").text
        traces, short = collect(mem, "victim")
        kinds = {t.kind for t in traces}
        assert kinds == {"text", "id", "scope"} and short == 0
        before = scan(path, traces, tenant=victim, cache_dir=cache)
        found = {f.label.split(" ")[0] for f in before.residue}
        # negative control: episodes, notes, summaries, ids and FTS rows are all seen
        assert {"episode", "note", "session", "full-text", "user"} <= found, found
        assert not before.ok

        n, report = erase_verified(mem, "victim", cache_dir=cache)
        assert n == 4
        assert report.ok, [f.describe() for f in report.residue]
        assert {Path(p).name for p, _ in report.files} >= {"m.db", "m.db-wal"}
        # the sentence the bystander also said is still in the file, flagged as shared
        assert report.findings and all(f.shared for f in report.findings)
        assert any("episode" in f.label for f in report.findings)
        # nothing of the user is served; the bystander is intact
        assert mem.list(user_id="victim") == [] and mem.notes(user_id="victim") == []
        assert mem.search("passport quokka rug", user_id="victim") == []
        assert mem.search("zebras", user_id="bystander")[0].text == "zebras graze at noon"
        assert mem.store.integrity_check() == "ok"  # type: ignore[attr-defined]


def test_scanner_sees_fts5_residue_that_a_delete_without_merge_leaves(tmp_path: Path) -> None:
    """FTS5 keeps deleted rows' postings in old segments until they are merged; the
    scope token rule must see them, and erase's merge must remove them. The user is one
    whose scope token the porter stemmer shortens in the index (a trailing hex 'e')."""
    from memstrata.erasure import _fts_term
    from memstrata.store.sqlite import scope_token

    user = next(f"victim{i}" for i in range(1000)
                if _fts_term(scope_token(Tenant("default", f"victim{i}"))) != scope_token(Tenant("default", f"victim{i}")))
    path = tmp_path / "m.db"
    with _mem(path) as mem:
        for i in range(5):  # several segments
            mem.add(f"entry {i}: {SECRET}", user_id=user, wait=True)
        mem.add("bystander keeps one row", user_id="bystander")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA secure_delete=ON")
    # every row of the user, as erase deletes them, but no FTS5 merge: the triggers only
    # append delete markers, and the old segments keep the postings
    for table in ("embeddings", "notes", "note_history", "summaries", "pending", "episodes", "sessions", "tenants"):
        where = f"episode_key IN (SELECT key FROM episodes WHERE user_id='{user}')" if table == "embeddings" \
            else f"user_id='{user}'"
        conn.execute(f"DELETE FROM {table} WHERE {where}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    table_tail, index_tail = scope_traces(Tenant("default", user))
    assert table_tail.data != index_tail.data
    naive = scan(path, [table_tail, index_tail], include_cache=False)
    assert not naive.ok and {f.kind for f in naive.findings} == {"scope"}
    # only the stemmed form is in the index: the unstemmed tail alone would have missed it
    assert scan(path, [table_tail], include_cache=False).ok
    with _mem(path) as mem:
        mem.erase(user_id=user)
    assert scan(path, [table_tail, index_tail], include_cache=False).ok


def test_delete_and_delete_session_scrub_the_text_and_keep_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with _mem(path) as mem:
        _victim(mem)
        first = mem.list(user_id="victim", session_id="secret-session-id-777")
        secret_ep = next(e for e in first if e.content == SECRET)
        later_ep = next(e for e in mem.list(user_id="victim") if e.content == LATER)
        note_ids = [n.id for n in mem.notes_for(later_ep.id, user_id="victim")]
        assert note_ids
        mem.delete(later_ep.id, user_id="victim")
        mem.delete_session("secret-session-id-777", user_id="victim")
        gone = text_traces("secret", SECRET) + text_traces("reply", REPLY) + text_traces("later", LATER)
        report = scan(path, gone, include_cache=False)
        assert report.ok, [f.describe() for f in report.residue]
        kept = scan(path, text_traces("kept", SHARED), include_cache=False)
        assert not kept.ok  # negative control: the episode that was not deleted is there
        # history of a deleted note is a content-free tombstone
        for change in mem.history(note_ids[0], user_id="victim"):
            assert LATER not in json.dumps(change.detail) and "hippogriff" not in json.dumps(change.detail).lower()
        assert mem.history(note_ids[0], user_id="victim")[-1].action == "deleted"
        assert secret_ep.id not in {e.id for e in mem.list(user_id="victim")}


def test_revisions_never_repeat_after_an_erase(tmp_path: Path) -> None:
    """A cache in another process keys a user's index on the revision: if erase reset
    it, re-adding as many times would make that process serve the erased index."""
    path = tmp_path / "m.db"
    with _mem(path) as a, _mem(path) as b:
        a.add(SECRET, user_id="victim", session_id="erased-session")
        assert a.search("passport", user_id="victim")  # a caches the index
        old = a.store.revision(Tenant("default", "victim"))
        b.erase(user_id="victim")
        b.add("zebras graze at noon", user_id="victim", session_id="fresh")
        assert b.store.revision(Tenant("default", "victim")) != old
        assert [(h.session_id, h.text) for h in a.search("zebras passport", user_id="victim", unit="session")] == [
            ("fresh", "zebras graze at noon")]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memstrata", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_verify_erased_and_erase_verify(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    env = {**os.environ, "MEMSTRATA_EMBED": "off", "MEMSTRATA_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "query-log.txt").write_text(f"a cached copy: {LATER}\n")  # the cache dir is scanned
    with _mem(db) as mem:
        _victim(mem)
        mem.add("bystander row", user_id="bob")
        mem.export(tmp_path / "victim.jsonl", user_id="victim")
    plain = tmp_path / "texts.txt"
    plain.write_text(f"{SECRET}\nok\n")
    # before erasing: found (exit 1), with file and offset
    r = _cli("verify-erased", "-u", "victim", "--texts", str(tmp_path / "victim.jsonl"), "--db", str(db), "--json",
             env=env)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    files = {Path(f["file"]).name for f in report["findings"] if not f["shared"]}
    assert "m.db" in files and "query-log.txt" in files
    r = _cli("verify-erased", "-u", "victim", "--texts", str(plain), "--db", str(db), env=env)
    assert r.returncode == 1 and "FOUND" in r.stderr and "line 1" in r.stderr
    # without --texts: only the user's full-text rows are looked for, and they are there
    r = _cli("verify-erased", "-u", "victim", "--db", str(db), "--json", env=env)
    assert r.returncode == 1 and json.loads(r.stdout)["texts_checked"] is False, r.stderr
    # erase with verification: the store is clean, but the cache file still holds a text
    r = _cli("erase", "-u", "victim", "--yes", "--verify", "--db", str(db), env=env)
    assert r.returncode == 1 and "query-log.txt" in r.stderr and "m.db" not in r.stderr.replace("query-log", "")
    (tmp_path / "cache" / "query-log.txt").unlink()
    r = _cli("verify-erased", "-u", "victim", "--db", str(db), env=env)
    assert r.returncode == 0 and "pass --texts" in r.stderr, r.stdout + r.stderr
    for texts in (tmp_path / "victim.jsonl", plain):
        r = _cli("verify-erased", "-u", "victim", "--texts", str(texts), "--db", str(db), env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "no trace" in r.stdout and "1 text(s) under 12 bytes" in r.stdout if texts == plain else True
    r = _cli("erase", "-u", "bob", "--yes", "--verify", "--db", str(db), "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["verification"]["ok"] is True
    # bad input: a typed error, exit 2
    r = _cli("verify-erased", "-u", "victim", "--texts", str(tmp_path / "missing.txt"), "--db", str(db), env=env)
    assert r.returncode == 2 and "cannot read" in r.stderr
    traces, _ = traces_from_file(tmp_path / "victim.jsonl", Tenant("default", "victim"))
    assert any(t.kind == "id" for t in traces)


def test_erase_says_so_when_a_reader_keeps_old_text_in_the_wal(tmp_path: Path) -> None:
    """The WAL can only be truncated when no connection reads an older snapshot. A reader
    that outlasts the busy timeout must not let erase report a clean file."""
    path = tmp_path / "m.db"
    mem = Memory(config=MemoryConfig(embed=EmbedConfig(enabled=False)), store=SQLiteStore(path, timeout_s=0.3))
    mem.add("bystander text", user_id="bob")
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys
        c = sqlite3.connect({str(path)!r}, isolation_level=None)
        c.execute("BEGIN"); c.execute("SELECT COUNT(*) FROM episodes").fetchone()
        print("reading", flush=True); sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"  # type: ignore[union-attr]
        _victim(mem)
        traces, _ = collect(mem, "victim")
        with pytest.raises(StoreError, match="read transaction"):
            mem.erase(user_id="victim")
        assert mem.list(user_id="victim") == []  # the rows are gone ...
        assert not scan(path, traces, include_cache=False).ok  # ... and the scan tells the truth about the WAL
    finally:
        reader.communicate("done\n", timeout=30)
    assert mem.erase(user_id="victim") == 0  # again, once the reader is done: the scrub completes
    assert scan(path, traces, include_cache=False).ok
    mem.close()


def test_a_delete_blocked_by_a_reader_succeeds_and_the_wal_is_truncated_later(tmp_path: Path) -> None:
    """A delete is committed when it returns; a reader holding an old snapshot only delays
    the WAL truncation (to the next scrub or close), it does not fail the delete."""
    path = tmp_path / "m.db"
    mem = Memory(config=MemoryConfig(embed=EmbedConfig(enabled=False)), store=SQLiteStore(path, timeout_s=0.3))
    mem.add("bystander text", user_id="bob")
    gone = mem.add("my locker code is quartz-falcon-7731, keep it private", user_id="victim")[0]
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys
        c = sqlite3.connect({str(path)!r}, isolation_level=None)
        c.execute("BEGIN"); c.execute("SELECT COUNT(*) FROM episodes").fetchone()
        print("reading", flush=True); sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"  # type: ignore[union-attr]
        assert mem.delete(gone.id, user_id="victim") == 1  # no error although the WAL stays
        assert mem.list(user_id="victim") == []
    finally:
        reader.communicate("done\n", timeout=30)
    mem.close()  # truncates the WAL the reader kept
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("m.db"))
    assert b"quartz-falcon-7731" not in data and b"bystander text" in data


def test_erase_drops_the_users_vectors_from_the_embedding_cache(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """The embedder caches vectors by text hash across memories; an erased user's
    vectors must not stay in the process (a repeat of the text is embedded afresh)."""
    with Memory(tmp_path / "m.db", config=MemoryConfig(notes=NotesConfig(enabled=False)), embedder=embedder) as mem:
        mem.add(LATER, user_id="victim")
        embedder.embed([LATER])
        runs = embedder.stats["texts_embedded"]
        embedder.embed([LATER])
        assert embedder.stats["texts_embedded"] == runs  # cached
        traces, _ = collect(mem, "victim")
        mem.erase(user_id="victim")
        assert scan(tmp_path / "m.db", traces, include_cache=False).ok
        runs = embedder.stats["texts_embedded"]
        embedder.embed([LATER])
        assert embedder.stats["texts_embedded"] == runs + 1  # no longer cached
