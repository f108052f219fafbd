"""Storage backends behind one protocol (``base.Store``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, InvalidInputError
from .base import EpisodeDraft, Snapshot, Store, Tenant
from .sqlite import SQLiteStore


def open_store(url_or_path: str | Path) -> Store:
    """Open a store from a path or URL: ``sqlite:///path``, a plain path, ``:memory:``, or
    ``postgresql://user:password@host/db`` (PostgreSQL with pgvector; the 'postgres' extra)."""
    text = str(url_or_path)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore  # noqa: PLC0415  (psycopg is an optional extra)
        except ImportError as exc:
            if (exc.name or "").split(".")[0] not in ("psycopg", "psycopg_pool"):
                raise
            raise ConfigError(f"store URL {text.split('://', 1)[0]}://... needs psycopg: "
                              "pip install 'memstrata[postgres]'") from exc
        return PostgresStore(text)
    if text.startswith("sqlite:///"):
        return SQLiteStore(text[len("sqlite:///"):] or ":memory:")
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(f"unsupported store URL scheme {scheme!r}; use a file path, sqlite:///path or postgresql://...")
    return SQLiteStore(text)


def sqlite_file(url_or_path: str | Path) -> Path:
    """The file of a SQLite store location (a path or ``sqlite:///path``), for the
    commands that work on the file itself (backup, restore, verify-erased); any other URL
    is refused with its password left out."""
    text = str(url_or_path)
    if text.startswith("sqlite:///"):
        return Path(text[len("sqlite:///"):])
    if "://" in text:
        from .postgres_url import redact  # noqa: PLC0415

        raise InvalidInputError(f"{redact(text)} is not a SQLite file: this command reads or copies the file "
                                "itself (for PostgreSQL use the server's own tools, e.g. pg_dump)")
    return Path(text)


__all__ = ["EpisodeDraft", "SQLiteStore", "Snapshot", "Store", "Tenant", "open_store", "sqlite_file"]
