"""Online backup and restore of a SQLite store.

``backup`` copies a live store with SQLite's online backup API in one step: the copy
is one consistent snapshot (one read transaction on the source), and in WAL mode
writers in this or other processes keep writing while it runs. The copy is written
next to the destination as ``DEST.part``, switched to a single self-contained file
(rollback journal, no ``-wal``), checked with ``PRAGMA integrity_check``, synced, and
only then renamed to ``DEST``. An existing ``DEST`` is refused unless ``force``.

``restore`` replaces a store with a backup. Rules:

- the source must be a SQLite file that passes ``integrity_check`` and carries a
  memstrata schema this version understands (``user_version`` 1..LATEST, the core
  tables present); otherwise nothing is touched;
- the target must not be open anywhere: restore takes SQLite's exclusive lock on it
  first and refuses with "in use" if any process (a server, an MCP session, a CLI
  command) holds it. Stop servers before restoring: a running process caches per-user
  indexes and would not see the file change under it;
- the new file is built and verified beside the target (``TARGET.restore-part``), the
  old one is renamed aside (``TARGET.before-restore``), the new one renamed in, and the
  old one removed only after that succeeded (kept with ``keep_old``). If the swap fails
  half-way the old file is put back.

A backup taken before an erase still holds the erased user: restoring it brings that
user back (erasure cannot reach copies made before it).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidFileError, InvalidInputError, StoreError
from .migrations import LATEST

_CORE_TABLES = {"tenants", "sessions", "episodes", "embeddings", "episodes_fts", "sessions_fts"}


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: str
    bytes: int
    pages: int
    schema_version: int
    episodes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreResult:
    path: str
    source: str
    schema_version: int
    episodes: int
    old_kept: str | None   # where the previous store was kept (keep_old), else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _full(exc: sqlite3.Error | OSError, path: Path) -> bool:
    return "full" in str(exc).lower() or getattr(exc, "errno", None) == 28  # ENOSPC


def check_store_file(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Validate a file as a memstrata store: SQLite, integrity ok, known schema, core
    tables. Returns (schema version, episodes). Raises InvalidFileError naming why."""
    p = Path(path)
    if not p.is_file():
        raise InvalidFileError(f"{str(p)!r} does not exist or is not a file")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InvalidFileError(f"{str(p)!r} cannot be opened: {exc}") from exc
    try:
        try:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise InvalidFileError(f"{str(p)!r} is not a memstrata store ({exc})") from exc
        if result != ["ok"]:
            raise InvalidFileError(f"{str(p)!r} fails the integrity check: {'; '.join(result[:3])}")
        if not 1 <= version <= LATEST or not _CORE_TABLES <= tables:
            missing = sorted(_CORE_TABLES - tables)
            why = f"missing tables {missing}" if missing else f"schema version {version}"
            raise InvalidFileError(f"{str(p)!r} is not a memstrata store this version can use "
                                   f"({why}; supported schema versions 1..{LATEST})")
        episodes = int(conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0])
        return version, episodes
    finally:
        conn.close()


def backup(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, force: bool = False) -> BackupResult:
    """Copy the live store ``source`` to ``dest`` consistently (see the module doc)."""
    src, out = Path(source), Path(dest)
    if not src.is_file():
        raise InvalidInputError(f"no store at {str(src)!r}")
    if out.resolve() == src.resolve():
        raise InvalidInputError(f"backup destination {str(out)!r} is the store itself")
    if out.exists() and not force:
        raise InvalidInputError(f"backup destination {str(out)!r} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise InvalidInputError(f"backup destination directory {str(out.parent)!r} does not exist")
    part = out.with_name(out.name + ".part")
    for stale in (part, Path(f"{part}-journal")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        src_conn = sqlite3.connect(src, timeout=30.0)
        dst_conn = sqlite3.connect(part, isolation_level=None)
        try:
            src_conn.backup(dst_conn)  # all pages in one step: one consistent snapshot
            dst_conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            pages = int(dst_conn.execute("PRAGMA page_count").fetchone()[0])
        finally:
            dst_conn.close()
            src_conn.close()
        version, episodes = check_store_file(part)
        _fsync(part)
        os.replace(part, out)
        _fsync_dir(out.parent)
    except InvalidFileError as exc:
        part.unlink(missing_ok=True)
        raise StoreError(f"backup of {str(src)!r} failed verification: {exc}") from exc
    except (sqlite3.Error, OSError) as exc:
        part.unlink(missing_ok=True)
        if _full(exc, part):
            raise StoreError(f"backup failed: the disk is full for {str(out)!r} ({exc}); "
                             "no backup was written") from exc
        raise StoreError(f"backup of {str(src)!r} to {str(out)!r} failed: {exc}") from exc
    return BackupResult(str(out), out.stat().st_size, pages, version, episodes, time.perf_counter() - started)


def in_use(path: str | os.PathLike[str]) -> bool:
    """Whether any connection (in any process) holds the store open: SQLite's own
    exclusive lock is the test, so it sees servers, MCP sessions and CLI commands."""
    p = Path(path)
    if not p.exists():
        return False
    conn = sqlite3.connect(p, isolation_level=None, timeout=0)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc).lower() or "busy" in str(exc).lower():
            return True
        raise StoreError(f"cannot check whether {str(p)!r} is in use: {exc}") from exc
    finally:
        conn.close()  # the last connection: SQLite checkpoints and removes the WAL


def restore(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
            keep_old: bool = False) -> RestoreResult:
    """Replace the store ``target`` with the backup ``source`` (see the module doc)."""
    src, dst = Path(source), Path(target)
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise InvalidInputError(f"restore source {str(src)!r} is the store itself")
    check_store_file(src)
    if not dst.parent.is_dir():
        raise InvalidInputError(f"store directory {str(dst.parent)!r} does not exist")
    if in_use(dst):
        raise StoreError(f"store {str(dst)!r} is in use by another process (a server?); stop it, then restore")
    part = dst.with_name(dst.name + ".restore-part")
    aside = dst.with_name(dst.name + ".before-restore")
    for stale in (part, Path(f"{part}-journal")):
        stale.unlink(missing_ok=True)
    try:
        src_conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        new_conn = sqlite3.connect(part, isolation_level=None)
        try:
            src_conn.backup(new_conn)
            new_conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            new_conn.close()
            src_conn.close()
        version, episodes = check_store_file(part)
        _fsync(part)
    except (sqlite3.Error, OSError, InvalidFileError) as exc:
        part.unlink(missing_ok=True)
        if not isinstance(exc, InvalidFileError) and _full(exc, part):
            raise StoreError(f"restore failed: the disk is full for {str(part)!r} ({exc}); "
                             "the store was not changed") from exc
        raise StoreError(f"restore of {str(src)!r} failed before the swap; the store was not changed: {exc}") from exc
    moved: list[tuple[Path, Path]] = []
    try:
        if dst.exists():
            for suffix in ("", "-wal"):
                old = Path(f"{dst}{suffix}")
                if old.exists():
                    os.replace(old, Path(f"{aside}{suffix}"))
                    moved.append((old, Path(f"{aside}{suffix}")))
        Path(f"{dst}-shm").unlink(missing_ok=True)  # index of a WAL that is no longer there
        os.replace(part, dst)
        _fsync_dir(dst.parent)
    except OSError as exc:
        for old, kept in reversed(moved):
            os.replace(kept, old)
        part.unlink(missing_ok=True)
        raise StoreError(f"restore of {str(src)!r} into {str(dst)!r} failed during the swap; "
                         f"the old store was put back: {exc}") from exc
    if not keep_old:
        for _, kept in moved:
            kept.unlink(missing_ok=True)
    return RestoreResult(str(dst), str(src), version, episodes, str(aside) if keep_old and moved else None)


__all__ = ["BackupResult", "RestoreResult", "backup", "check_store_file", "in_use", "restore"]
