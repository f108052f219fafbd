"""Durability settings, online backup and restore, and a full disk, on real files and
real processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from memstrata import Memory, MemoryConfig, StoreError
from memstrata.config import EmbedConfig, NotesConfig
from memstrata.errors import InvalidFileError, InvalidInputError
from memstrata.store.migrations import LATEST
from memstrata.store.sqlite_backup import backup, check_store_file, in_use, restore

CFG = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(enabled=False))


def _mem(path: Path) -> Memory:
    return Memory(path, config=CFG)


def _contents(path: Path) -> list[tuple[str, str, str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT e.id, e.user_id, s.session_id, e.content FROM episodes e "
                            "JOIN sessions s ON s.key = e.session_key ORDER BY e.id").fetchall()
    finally:
        conn.close()


def test_wal_and_synchronous_full_are_the_default(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with _mem(path) as mem:
        mem.add("hello", user_id="u")
        conn = mem.store._conn  # type: ignore[attr-defined]  # the store's own connection: the pragmas it runs with
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    other = sqlite3.connect(path)  # WAL is a property of the file, seen by any connection
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


_WRITER = textwrap.dedent("""
    import sys
    from memstrata import Memory, MemoryConfig
    from memstrata.config import EmbedConfig, NotesConfig
    mem = Memory(sys.argv[1], config=MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(enabled=False)))
    for i in range(int(sys.argv[2])):
        mem.add([{"role": "user", "content": f"writer turn {i} about quokkas"},
                 {"role": "assistant", "content": f"reply {i}"}], user_id="w", session_id=f"s{i}")
        print(i, flush=True)
    mem.close()
""")


def test_backup_is_consistent_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    with _mem(path) as mem:
        mem.add("before the writer", user_id="u")
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "400"], stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    reader = threading.Thread(target=lambda: acked.extend(int(x) for x in writer.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    copies = []
    while writer.poll() is None and len(copies) < 40:
        if not acked:
            time.sleep(0.01)
            continue
        before = len(acked)
        dest = tmp_path / f"copy{len(copies)}.db"
        result = backup(path, dest)
        copies.append((dest, before, result))
    assert writer.wait(timeout=120) == 0
    reader.join(timeout=10)
    assert len(copies) >= 3, "the writer finished before the backups could overlap it"
    for dest, acked_before, result in copies:
        assert check_store_file(dest) == (result.schema_version, result.episodes)
        assert not Path(f"{dest}-wal").exists()  # one self-contained file
        rows = _contents(dest)
        writer_sessions: dict[str, int] = {}
        for _, user, session, _ in rows:
            if user == "w":
                writer_sessions[session] = writer_sessions.get(session, 0) + 1
        assert all(n == 2 for n in writer_sessions.values())  # no half-written add
        # everything acknowledged before the backup started is in it, in order
        assert {f"s{i}" for i in range(acked_before)} <= set(writer_sessions)
        assert set(writer_sessions) == {f"s{i}" for i in range(len(writer_sessions))}
    assert len(_contents(path)) == 1 + 2 * 400
    with pytest.raises(InvalidInputError, match="exists; pass --force"):
        backup(path, copies[0][0])
    assert backup(path, copies[0][0], force=True).episodes == 801


def test_restore_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with _mem(path) as mem:
        mem.add([{"role": "user", "content": "ana moved to Lisbon"}, {"role": "assistant", "content": "nice"}],
                user_id="ana", session_id="a1", metadata={"k": "v"})
        mem.add("bo likes tea", user_id="bo")
    saved = _contents(path)
    copy = tmp_path / "backup.db"
    backup(path, copy)
    with _mem(path) as mem:  # change the live store after the backup
        mem.add("written after the backup", user_id="ana")
        mem.erase(user_id="bo")
    assert _contents(path) != saved
    result = restore(copy, path, keep_old=True)
    assert (result.episodes, result.schema_version) == (3, LATEST)
    assert _contents(path) == saved  # same ids, users, sessions and text
    assert any(r[3] == "written after the backup" for r in _contents(Path(str(result.old_kept))))
    with _mem(path) as mem:
        assert mem.store.integrity_check() == "ok"  # type: ignore[attr-defined]
        assert mem.search("Lisbon", user_id="ana")[0].text == "ana moved to Lisbon"
        assert mem.get(mem.list(user_id="ana")[0].id, user_id="ana").metadata == {"k": "v"}
        mem.add("the restored store takes writes", user_id="ana")

    current = _contents(path)
    not_db = tmp_path / "notes.txt"
    not_db.write_text("not a database at all " * 100)
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.commit()
    corrupt = tmp_path / "corrupt.db"
    data = bytearray(copy.read_bytes())
    page = 4096
    for start in range(page, len(data), page):  # damage every b-tree page header after page 1
        data[start:start + 12] = b"\xff" * 12
    corrupt.write_bytes(bytes(data))
    for bad, why in ((not_db, "not a memstrata store|cannot be opened|integrity"),
                     (plain, "not a memstrata store this version can use"),
                     (corrupt, "integrity|not a memstrata store"),
                     (tmp_path / "missing.db", "does not exist")):
        with pytest.raises(InvalidFileError, match=why):
            restore(bad, path)
        assert _contents(path) == current  # nothing touched
    # refused while another process has the store open
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from memstrata import Memory, MemoryConfig
        from memstrata.config import EmbedConfig
        m = Memory({str(path)!r}, config=MemoryConfig(embed=EmbedConfig(enabled=False)))
        m.search("Lisbon", user_id="ana")
        print("open", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"  # type: ignore[union-attr]
        assert in_use(path)
        with pytest.raises(StoreError, match="in use"):
            restore(copy, path)
    finally:
        holder.kill()
        holder.wait()
    assert _contents(path) == current
    assert not in_use(path)


def _fill_until_full(mem: Memory, acked: list[str]) -> StoreError:
    for i in range(100_000):
        try:
            ep = mem.add([{"role": "user", "content": f"entry {i} " + "lorem ipsum dolor " * 150}], user_id="u")
        except StoreError as exc:
            return exc
        acked.append(ep[0].id)
    raise AssertionError("the store never filled up")


def _check_after_full(path: Path, acked: list[str], exc: StoreError) -> None:
    assert "disk is full" in str(exc) and str(path) in str(exc), str(exc)
    with _mem(path) as mem:  # reopens; nothing corrupted, nothing acknowledged lost
        assert mem.store.integrity_check() == "ok"  # type: ignore[attr-defined]
        assert {e.id for e in mem.list(user_id="u", limit=100_000)} == set(acked)


def test_full_disk_max_page_count(tmp_path: Path) -> None:
    """SQLite's max_page_count makes the database 'full' on any machine."""
    path = tmp_path / "m.db"
    acked: list[str] = []
    with _mem(path) as mem:
        mem.add("before", user_id="other")
        conn = mem.store._conn  # type: ignore[attr-defined]  # a real SQLite limit on the store's connection
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + 40}")
        exc = _fill_until_full(mem, acked)
        assert acked  # some writes fitted, then one did not
        # the same connection keeps working once there is room
        conn.execute("PRAGMA max_page_count=1073741823")
        mem.add("space is back", user_id="other")
    _check_after_full(path, acked, exc)
    with _mem(path) as mem:
        assert [e.content for e in mem.list(user_id="other")] == ["before", "space is back"]


def test_full_disk_on_a_real_filesystem(tmp_path: Path) -> None:
    """As root on Linux: a 1 MiB tmpfs, really full (the WAL cannot grow). Not root:
    this test runs the max_page_count variant instead (a non-root user cannot mount)."""
    if not (sys.platform.startswith("linux") and os.geteuid() == 0):
        test_full_disk_max_page_count(tmp_path)
        return
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        path = mount / "m.db"
        ballast = mount / "ballast"
        ballast.write_bytes(b"\0" * 128 * 1024)  # freed later to give the disk room again
        acked: list[str] = []
        with _mem(path) as mem:
            exc = _fill_until_full(mem, acked)
        assert acked
        _check_after_full(path, acked, exc)
        ballast.unlink()
        with _mem(path) as mem:
            mem.add("space is back", user_id="other")
            assert mem.store.integrity_check() == "ok"  # type: ignore[attr-defined]
        with _mem(path) as mem:
            assert [e.content for e in mem.list(user_id="other")] == ["space is back"]
            assert len(mem.list(user_id="u", limit=100_000)) == len(acked)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_cli_backup_and_restore(tmp_path: Path) -> None:
    db, copy = tmp_path / "m.db", tmp_path / "copy.db"
    env = {**os.environ, "MEMSTRATA_EMBED": "off", "MEMSTRATA_NOTES": "off"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "memstrata", *args, "--db", str(db)], capture_output=True,
                              text=True, env=env, timeout=120)

    assert cli("add", "ana moved to Lisbon", "-u", "ana").returncode == 0
    r = cli("backup", str(copy))
    assert r.returncode == 0 and "integrity ok" in r.stdout and check_store_file(copy)[1] == 1
    r = cli("backup", str(copy))
    assert r.returncode == 2 and "--force" in r.stderr
    assert cli("backup", str(copy), "--force").returncode == 0
    assert cli("erase", "-u", "ana", "--yes").returncode == 0
    r = cli("restore", str(tmp_path / "nope.db"), "--yes")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = cli("restore", str(copy), "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert '"episodes": 1' in r.stdout and not (tmp_path / "m.db.before-restore").exists()
    r = cli("search", "Lisbon", "-u", "ana")
    assert r.returncode == 0 and "ana moved to Lisbon" in r.stdout
