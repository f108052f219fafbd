"""memstrata: long-term memory for LLM agents, offline-first.

The public surface is pinned by tests/unit/test_public_api.py.
"""

from __future__ import annotations

from .config import EmbedConfig, Limits, MemoryConfig, RetrievalConfig
from .errors import (
    ConfigError,
    InvalidFileError,
    InvalidInputError,
    InvalidMessageError,
    InvalidTimestampError,
    MemstrataError,
    NotFoundError,
    StoreError,
)
from .memory import Memory
from .model import Context, Episode, Hit, Scope, SessionInfo, Stats

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Context",
    "EmbedConfig",
    "Episode",
    "Hit",
    "InvalidFileError",
    "InvalidInputError",
    "InvalidMessageError",
    "InvalidTimestampError",
    "Limits",
    "Memory",
    "MemoryConfig",
    "MemstrataError",
    "NotFoundError",
    "RetrievalConfig",
    "Scope",
    "SessionInfo",
    "Stats",
    "StoreError",
    "__version__",
]
