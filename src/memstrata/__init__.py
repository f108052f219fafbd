"""memstrata: long-term memory for LLM agents, offline-first.

The public surface is pinned by tests/unit/test_public_api.py.
"""

from __future__ import annotations

from .config import EmbedConfig, Limits, MemoryConfig, NotesConfig, RetrievalConfig
from .errors import (
    ConfigError,
    ConflictError,
    InvalidFileError,
    InvalidInputError,
    InvalidMessageError,
    InvalidTimestampError,
    MemstrataError,
    NotFoundError,
    StoreError,
)
from .memory import Memory
from .model import Context, Episode, Hit, Link, Note, NoteChange, Scope, SessionInfo, Stats, Summary
from .semantic.process import ProcessReport

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConflictError",
    "Context",
    "EmbedConfig",
    "Episode",
    "Hit",
    "InvalidFileError",
    "InvalidInputError",
    "InvalidMessageError",
    "InvalidTimestampError",
    "Limits",
    "Link",
    "Memory",
    "MemoryConfig",
    "MemstrataError",
    "Note",
    "NoteChange",
    "NotFoundError",
    "NotesConfig",
    "ProcessReport",
    "RetrievalConfig",
    "Scope",
    "SessionInfo",
    "Stats",
    "StoreError",
    "Summary",
    "__version__",
]
