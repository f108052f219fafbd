"""Several processes on one store: ``memstrata bench procs`` kept short, on a SQLite file and
on a PostgreSQL database, and the schema race when processes open a new file at the same moment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memstrata.bench.procs import READ_OPS


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MEMSTRATA_")}, "COLUMNS": "200"}


def test_writers_and_readers_lose_nothing_and_never_see_locks(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "memstrata", "bench", "procs", "--seconds", "8", "--writers", "3", "--readers", "3",
         "--db-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, env=_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    r = json.loads(proc.stdout)
    assert r["ok"] is True
    assert r["errors"] == {} and r["locked_errors"] == 0 and r["hung_processes"] == 0, r["error_samples"]
    assert r["cross_tenant"] == 0
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["stored_not_acknowledged"] == 0
    assert r["integrity_check"] == "ok"
    # the load was real: every kind of op ran many times, every acked turn was found
    assert r["operations"]["add"]["count"] >= 50
    assert r["operations"]["delete"]["count"] >= 5  # deletes (and their WAL scrubs) race the readers
    assert all(r["operations"][op]["count"] >= 20 for op in READ_OPS), r["operations"]
    assert r["acknowledged"] == r["stored"] > r["operations"]["add"]["count"]


_OPENER = """
import sys, time
from memstrata.store.sqlite import SQLiteStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
SQLiteStore(sys.argv[1]).close()
"""


def test_processes_creating_one_file_at_once_all_open_it(tmp_path: Path) -> None:
    # Before the fixes, the processes that lost the race for the writer lock re-ran the
    # first migration ("table tenants already exists"), and switching the new file to WAL
    # failed at once with "database is locked" (about 1 open in 10; CI caught it).
    for attempt in range(5):
        db = tmp_path / f"new-{attempt}.db"
        start = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(db), str(start)], stderr=subprocess.PIPE,
                                  text=True, env=_env()) for _ in range(6)]
        for p in procs:
            _, stderr = p.communicate(timeout=60)
            assert p.returncode == 0, stderr


def test_a_delete_between_note_batches_does_not_drop_the_next_episodes_note(tmp_path: Path) -> None:
    # The processor reads the notes once, then derives batch after batch. A delete in
    # between (another thread or process) can remove a note a later batch merges into;
    # that merge used to be skipped, marking the episode done with no note at all
    # (found by `bench crash`: "user turn without a note").
    from memstrata import Memory, MemoryConfig
    from memstrata.config import EmbedConfig, NotesConfig

    cfg = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(background=False, batch_size=1))
    with Memory(tmp_path / "m.db", config=cfg) as mem:
        text = "my dog is called Pepper and she is three years old"
        first = mem.add(text, user_id="ana")[0]
        second = mem.add(text, user_id="ana")[0]
        deleted: list[int] = []

        def between_batches(_n: int) -> None:
            if not deleted:
                deleted.append(mem.delete(first.id, user_id="ana"))  # drops the note derived from it

        mem.process(user_id="ana", progress=between_batches)
        assert deleted == [1] and mem.pending() == 0
        notes = mem.notes_for(second.id, user_id="ana")
        assert [n.content for n in notes] == [f"User: {text}"]


def test_writers_and_readers_on_one_postgresql_database_lose_nothing(tmp_path: Path, pg_url: str) -> None:
    from memstrata.bench import procs
    from memstrata.errors import InvalidInputError
    from memstrata.store import open_store

    proc = subprocess.run(
        [sys.executable, "-m", "memstrata", "bench", "procs", "--seconds", "8", "--writers", "2", "--readers", "2",
         "--store-url", pg_url, "--db-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, env=_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    r = json.loads(proc.stdout)
    assert r["ok"] is True and r["config"]["store"] == "postgres"
    assert r["errors"] == {} and r["locked_errors"] == 0 and r["hung_processes"] == 0, r["error_samples"]
    assert r["cross_tenant"] == 0
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["stored_not_acknowledged"] == 0
    assert r["deleted_but_stored"] == 0 and r["integrity_check"] == "ok"
    # the load was real: every kind of op ran, the deletes were acknowledged and are gone,
    # the store's counts and its full-text index agree with the rows listed
    assert r["operations"]["add"]["count"] >= 30
    assert r["operations"]["delete"]["count"] >= 3 and r["deleted"] == r["operations"]["delete"]["count"]
    assert all(r["operations"][op]["count"] >= 10 for op in READ_OPS), r["operations"]
    assert r["acknowledged"] == r["stored"] == r["stats_episodes"] > r["operations"]["add"]["count"]
    assert r["search_sampled"] >= 30 and r["search_not_found"] == 0
    # and it was that database that held them (a URL taken for a file path once made a
    # SQLite file named postgresql:/...; every check above passed on it)
    store = open_store(pg_url)
    try:
        assert sum(store.stats(None, ns).episodes for ns in ("n0", "n1")) == r["stored"]
    finally:
        store.close()
    # the database now holds the run's tenants: a second run there would count them as its
    # own, so it is refused before any process starts
    with pytest.raises(InvalidInputError, match="already holds namespace"):
        procs.run(store_url=pg_url, seconds=1, db_dir=tmp_path)


def test_postgresql_lock_conflicts_count_as_locking_errors(pg_url: str) -> None:
    # Real errors from the server: a lock timeout (55P03) and a deadlock (40P01), bare and
    # as the store reports them (its error raised from psycopg's); a unique violation is not one.
    import threading

    import psycopg

    from memstrata.bench.procs import _is_lock_error
    from memstrata.errors import ConflictError

    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE lockdemo (id int PRIMARY KEY)")
        setup.execute("INSERT INTO lockdemo VALUES (1), (2)")
    caught: list[BaseException] = []
    with psycopg.connect(pg_url) as a, psycopg.connect(pg_url) as b:
        a.execute("SELECT * FROM lockdemo WHERE id = 1 FOR UPDATE")
        b.execute("SET lock_timeout = '50ms'")
        try:
            b.execute("SELECT * FROM lockdemo WHERE id = 1 FOR UPDATE")
        except psycopg.Error as exc:
            caught.append(exc)
        b.rollback()
        # deadlock: a holds 1 and wants 2, b holds 2 and wants 1
        b.execute("SET lock_timeout = 0")
        b.execute("SELECT * FROM lockdemo WHERE id = 2 FOR UPDATE")

        def take(conn: psycopg.Connection, row: int) -> None:
            try:
                conn.execute("SELECT * FROM lockdemo WHERE id = %s FOR UPDATE", (row,))
            except psycopg.Error as exc:
                caught.append(exc)

        t = threading.Thread(target=take, args=(a, 2))
        t.start()
        time.sleep(0.2)
        take(b, 1)
        t.join(timeout=30)
        a.rollback()
        b.rollback()
    assert sorted(type(e).__name__ for e in caught) == ["DeadlockDetected", "LockNotAvailable"]
    for exc in caught:
        assert _is_lock_error(exc)
        try:
            raise ConflictError("add failed: a concurrent write got there first") from exc
        except ConflictError as wrapped:
            assert _is_lock_error(wrapped)
    with psycopg.connect(pg_url, autocommit=True) as c:
        try:
            c.execute("INSERT INTO lockdemo VALUES (1)")
        except psycopg.errors.UniqueViolation as exc:
            assert not _is_lock_error(exc)
        else:
            raise AssertionError("the duplicate key was accepted")
        finally:
            c.execute("DROP TABLE lockdemo")  # the fixture reuses the database
