"""Storage backends behind one protocol (``base.Store``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import EpisodeDraft, Snapshot, Store, Tenant
from .sqlite import SQLiteStore


def open_store(url_or_path: str | Path) -> Store:
    """Open a store from a path or URL: ``sqlite:///path``, a plain path, or ``:memory:``."""
    text = str(url_or_path)
    if text.startswith("sqlite:///"):
        return SQLiteStore(text[len("sqlite:///"):] or ":memory:")
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(f"unsupported store URL scheme {scheme!r}; use a file path or sqlite:///path")
    return SQLiteStore(text)


__all__ = ["EpisodeDraft", "SQLiteStore", "Snapshot", "Store", "Tenant", "open_store"]
