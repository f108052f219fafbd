"""Request and response bodies of the REST API (they are what /openapi.json documents).

Request models forbid unknown fields, so a typo is a 422 naming the field instead of a
silently ignored option. Responses are built from the library's dataclasses by the
``from_*`` helpers; times are ISO 8601 with a UTC offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

from ..model import ApiKey, Context, Episode, Hit, Link, Note, NoteChange, SessionInfo, Stats, Summary
from ..safety import flags as safety_flags

T = TypeVar("T")
TimeIn = Union[str, float]  # ISO 8601 text, a date, or Unix seconds


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageIn(_In):
    role: str = Field("user", description="user, assistant, system, tool or event (aliases: human, ai, developer)")
    content: str = Field(..., description="The verbatim text of the turn.")
    name: str | None = Field(None, description="The speaker's name, if known.")
    timestamp: TimeIn | None = Field(None, description="When this turn happened; overrides the request's timestamp.")
    metadata: dict[str, Any] | None = None


class AddRequest(_In):
    messages: str | list[MessageIn] = Field(
        ..., description="One user turn as a string, or a list of messages (stored in order as one session's turns).")
    session_id: str | None = Field(None, description="Append to this session; omitted: a new session is opened.")
    timestamp: TimeIn | None = Field(None, description="Event time of the messages (default: now).")
    agent_id: str | None = None
    metadata: dict[str, Any] | None = None
    wait: bool = Field(False, description="Derive notes before answering (201) instead of in the background (202).")


class SearchRequest(_In):
    query: str = Field(..., min_length=1)
    k: int = Field(10, ge=1, le=1000)
    unit: Literal["turn", "round", "session"] = "turn"
    as_of: TimeIn | None = Field(None, description="'Now' for relative expressions in the query (default: now).")
    start: TimeIn | None = Field(None, description="Only events at or after this time.")
    end: TimeIn | None = Field(None, description="Only events before this time.")
    variant: str | None = Field(None, description="Retrieval preset: hybrid (default), episodic, graph, bm25, dense, rrf.")


class ContextRequest(_In):
    query: str = Field(..., min_length=1)
    max_tokens: int = Field(2000, ge=50, le=1_000_000)
    k: int = Field(50, ge=1, le=1000)
    as_of: TimeIn | None = None
    start: TimeIn | None = None
    end: TimeIn | None = None
    variant: str | None = None
    include_flagged: bool = Field(False, description="Also include turns flagged as instructions to a model "
                                  "(memory-poisoning guard); off by default.")


class KeyRequest(_In):
    namespace: str | None = Field(None, description="Namespace the key is confined to (required unless admin).")
    user_id: str | None = Field(None, description="Confine the key further to one user.")
    admin: bool = Field(False, description="An admin key manages keys and reads no memory.")
    label: str = Field("", max_length=200)


class EpisodeOut(BaseModel):
    id: str
    user_id: str
    session_id: str
    position: int
    role: str
    speaker: str | None
    content: str
    event_time: datetime
    ingest_time: datetime
    agent_id: str | None
    metadata: dict[str, Any]
    written_by: str = Field("", description="Provenance: the API key id (REST/MCP), 'python', 'cli'; '' unknown.")
    flags: list[str] = Field([], description="Why the content reads as instructions to a model (memory-poisoning "
                             "guard); empty when clean. Flagged turns are kept but left out of context.")

    @classmethod
    def of(cls, e: Episode) -> "EpisodeOut":
        return cls(id=e.id, user_id=e.user_id, session_id=e.session_id, position=e.position, role=e.role,
                   speaker=e.speaker, content=e.content, event_time=e.event_time, ingest_time=e.ingest_time,
                   agent_id=e.agent_id, metadata=e.metadata, written_by=e.written_by,
                   flags=list(safety_flags(e.content)))


class JobOut(BaseModel):
    id: str = Field(..., description="Poll GET /v1/users/{user_id}/jobs/{id} for the background note processing.")
    status: Literal["pending", "done", "retrying"]
    pending: int = Field(..., description="Episodes of this job still waiting for note processing.")
    failed_attempts: int = Field(0, description="Of those, how many failed at least once (retried automatically).")


class AddResponse(BaseModel):
    session_id: str
    episodes: list[EpisodeOut]
    job: JobOut | None = Field(None, description="Set when notes are derived in the background.")


class HitOut(BaseModel):
    score: float
    unit: str
    episode_id: str
    episode_ids: list[str]
    session_id: str
    speaker: str
    role: str
    event_time: datetime
    text: str
    sources: dict[str, int] = Field(..., description="Which retrievers found it, and at which rank.")
    flags: list[str] = Field([], description="Why the text reads as instructions to a model (memory-poisoning "
                             "guard, see memstrata.safety); empty when clean. Flagged turns are left out of context.")

    @classmethod
    def of(cls, h: Hit) -> "HitOut":
        return cls(score=h.score, unit=h.unit, episode_id=h.episode_id, episode_ids=list(h.episode_ids),
                   session_id=h.session_id, speaker=h.speaker, role=h.role, event_time=h.event_time,
                   text=h.text, sources=dict(h.sources), flags=list(h.flags))


class SearchResponse(BaseModel):
    hits: list[HitOut]


class ContextOut(BaseModel):
    text: str
    episode_ids: list[str]
    n_tokens: int
    hits: list[HitOut]

    @classmethod
    def of(cls, c: Context) -> "ContextOut":
        return cls(text=c.text, episode_ids=list(c.episode_ids), n_tokens=c.n_tokens,
                   hits=[HitOut.of(h) for h in c.hits])


class SessionOut(BaseModel):
    session_id: str
    n_episodes: int
    first_time: datetime
    last_time: datetime

    @classmethod
    def of(cls, s: SessionInfo) -> "SessionOut":
        return cls(session_id=s.session_id, n_episodes=s.n_episodes, first_time=s.first_time, last_time=s.last_time)


class LinkOut(BaseModel):
    source_id: str
    target_id: str
    kind: str
    reason: str
    weight: float

    @classmethod
    def of(cls, link: Link) -> "LinkOut":
        return cls(source_id=link.source_id, target_id=link.target_id, kind=link.kind, reason=link.reason,
                   weight=link.weight)


class NoteOut(BaseModel):
    id: str
    content: str
    context: str
    keywords: list[str]
    tags: list[str]
    entities: list[str]
    subject: str | None
    slot: str | None
    value: str | None
    importance: float
    valid_from: datetime | None
    valid_to: datetime | None
    status: str
    superseded_by: str | None
    source_episode_ids: list[str]
    session_ids: list[str]
    created_at: datetime | None
    updated_at: datetime | None
    recall_count: int
    extractor: str
    links: list[LinkOut] | None = Field(None, description="Set on GET of one note.")

    @classmethod
    def of(cls, n: Note, links: list[Link] | None = None) -> "NoteOut":
        return cls(id=n.id, content=n.content, context=n.context, keywords=list(n.keywords), tags=list(n.tags),
                   entities=list(n.entities), subject=n.subject, slot=n.slot, value=n.value,
                   importance=n.importance, valid_from=n.valid_from, valid_to=n.valid_to, status=n.status,
                   superseded_by=n.superseded_by, source_episode_ids=list(n.source_episode_ids),
                   session_ids=list(n.session_ids), created_at=n.created_at, updated_at=n.updated_at,
                   recall_count=n.recall_count, extractor=n.extractor,
                   links=None if links is None else [LinkOut.of(x) for x in links])


class NoteChangeOut(BaseModel):
    note_id: str
    at: datetime
    action: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, c: NoteChange) -> "NoteChangeOut":
        return cls(note_id=c.note_id, at=c.at, action=c.action, detail=dict(c.detail))


class SummaryOut(BaseModel):
    user_id: str
    session_id: str | None
    text: str
    n_notes: int
    updated_at: datetime

    @classmethod
    def of(cls, s: Summary) -> "SummaryOut":
        return cls(user_id=s.user_id, session_id=s.session_id, text=s.text, n_notes=s.n_notes,
                   updated_at=s.updated_at)


class StatsOut(BaseModel):
    namespace: str | None
    user_id: str | None
    users: int
    sessions: int
    episodes: int
    embedded_episodes: int
    pending_notes: int
    first_time: datetime | None
    last_time: datetime | None

    @classmethod
    def of(cls, s: Stats, pending: int) -> "StatsOut":
        return cls(namespace=s.namespace, user_id=s.user_id, users=s.users, sessions=s.sessions,
                   episodes=s.episodes, embedded_episodes=s.embedded_episodes, pending_notes=pending,
                   first_time=s.first_time, last_time=s.last_time)


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    offset: int
    next_offset: int | None = Field(None, description="Pass as offset for the next page; null on the last page.")


class DeletedOut(BaseModel):
    deleted: int = Field(..., description="Episodes removed (with every note, link and summary derived from them).")


class ImportedOut(BaseModel):
    imported: int


class KeyOut(BaseModel):
    key_id: str
    namespace: str | None
    user_id: str | None
    admin: bool
    label: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> "KeyOut":
        return cls(key_id=k.key_id, namespace=k.namespace, user_id=k.user_id, admin=k.admin, label=k.label,
                   created_at=k.created_at, revoked_at=k.revoked_at)


class IssuedKeyOut(KeyOut):
    token: str = Field(..., description="The secret; shown once, never again.")


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    schema_version: int | None


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
