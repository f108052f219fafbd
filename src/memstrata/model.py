"""Typed records that cross the public API.

Times are timezone-aware UTC ``datetime`` objects everywhere above the store.
``event_time`` is when a turn happened (the conversation's clock); ``ingest_time``
is when memstrata stored it (the system's clock): the two axes of a bi-temporal model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Role = Literal["user", "assistant", "system", "tool", "event"]
ROLES: frozenset[str] = frozenset({"user", "assistant", "system", "tool", "event"})
Unit = Literal["turn", "round", "session"]

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a record belongs to. ``namespace`` + ``user_id`` is the tenant boundary."""

    user_id: str
    namespace: str = DEFAULT_NAMESPACE
    agent_id: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Episode:
    """One verbatim turn or event: the source of truth everything else derives from."""

    id: str
    namespace: str
    user_id: str
    session_id: str
    position: int
    role: Role
    content: str
    event_time: datetime
    ingest_time: datetime
    speaker: str | None = None
    agent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def author(self) -> str:
        """The speaker's name if known, else the role."""
        return self.speaker or self.role


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A conversation session of one user, with its span in event time."""

    session_id: str
    namespace: str
    user_id: str
    n_episodes: int
    first_time: datetime
    last_time: datetime


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result. ``text`` is the matched unit's text (a turn, a round or the
    best-matching turn of a session); ``episode_ids`` lists every episode the unit covers."""

    score: float
    unit: Unit
    episode_id: str
    session_id: str
    speaker: str
    role: str
    event_time: datetime
    text: str
    episode_ids: tuple[str, ...] = ()
    sources: dict[str, int] = field(default_factory=dict)  # retriever name -> rank (1-based)


@dataclass(frozen=True, slots=True)
class Context:
    """A packed, chronologically ordered context ready to paste into a prompt."""

    text: str
    episode_ids: tuple[str, ...]
    n_tokens: int
    hits: tuple[Hit, ...]

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts for one tenant (or the whole file when ``user_id`` is None)."""

    namespace: str | None
    user_id: str | None
    users: int
    sessions: int
    episodes: int
    embedded_episodes: int
    first_time: datetime | None
    last_time: datetime | None
    store_bytes: int | None


# Notes and Links: semantic memory derived from episodes. The schema reserves their
# tables now; the extraction pipeline that fills them is a separate stage (issue #3).
@dataclass(frozen=True, slots=True)
class Note:
    id: str
    namespace: str
    user_id: str
    content: str
    source_episode_ids: tuple[str, ...]
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    keywords: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    status: Literal["active", "superseded", "deleted"] = "active"


@dataclass(frozen=True, slots=True)
class Link:
    source_id: str
    target_id: str
    kind: Literal["related", "updates", "contradicts", "elaborates"]
    weight: float = 1.0
    reason: str = ""
