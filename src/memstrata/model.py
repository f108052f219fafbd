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
    written_by: str = ""  # provenance: API key id, 'python', 'cli', 'mcp-stdio', 'import'; '' = unknown (pre-v4)

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
    flags: tuple[str, ...] = ()  # memstrata.safety reason codes: the text reads as instructions to a model


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


# Semantic memory derived from episodes (notes, links, history, summaries).
NoteStatus = Literal["active", "superseded", "forgotten"]
LinkKind = Literal["related", "updates", "contradicts", "elaborates"]
LINK_KINDS: frozenset[str] = frozenset({"related", "updates", "contradicts", "elaborates"})


@dataclass(frozen=True, slots=True)
class Note:
    """An atomic fact derived from one or more episodes (A-MEM's note: content, context,
    keywords, tags), with provenance and a validity interval in event time.

    ``valid_from``/``valid_to``: when the fact held in the conversation's world
    (``valid_to`` is set when a newer note updates or contradicts it). ``created_at``:
    when memstrata derived it (system time). ``subject``/``slot``/``value``: the
    attribute the fact states (e.g. "Alice" / "residence" / "Berlin") when the extractor
    recognised one; notes with the same subject and slot supersede each other."""

    id: str
    namespace: str
    user_id: str
    content: str
    source_episode_ids: tuple[str, ...]
    session_ids: tuple[str, ...] = ()
    context: str = ""
    keywords: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    subject: str | None = None
    slot: str | None = None
    value: str | None = None
    importance: float = 0.5
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    status: NoteStatus = "active"
    superseded_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    recall_count: int = 0
    last_recalled: datetime | None = None
    extractor: str = ""

    def valid_at(self, when: datetime) -> bool:
        """Whether the fact held at ``when`` (event time)."""
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_to is None or when < self.valid_to


@dataclass(frozen=True, slots=True)
class Link:
    """A typed edge between two notes of one tenant: ``source`` relates to ``target``
    (``updates``: source is the newer value of target's attribute)."""

    source_id: str
    target_id: str
    kind: LinkKind
    reason: str = ""
    weight: float = 1.0
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NoteChange:
    """One entry of a note's history (``Memory.history``). Content-free once the note's
    sources are deleted: the entry then records only that something was removed."""

    note_id: str
    at: datetime
    action: str            # created, merged, superseded, contradicted, linked, edited, forgotten, deleted
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Summary:
    """A compact summary of one session (``session_id`` set) or of a user's memory."""

    namespace: str
    user_id: str
    session_id: str | None
    text: str
    n_notes: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A server credential. A data key is bound to a ``namespace`` and optionally to one
    ``user_id``: every request made with it is confined there. An ``admin`` key manages
    keys and reads no memory. The secret itself is never stored (only its SHA-256)."""

    key_id: str
    namespace: str | None
    user_id: str | None
    admin: bool
    label: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
