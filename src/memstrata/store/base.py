"""The storage contract. Every backend passes the same contract tests (tests/contract).

Everything above ``store/`` talks to a ``Store`` only through this protocol: no SQL,
no backend names. Every method takes a ``Tenant`` and never sees rows of another one;
that is enforced here, in the store, not by callers filtering results.

Keys: episodes and sessions have public string ids and internal integer ``key``s
(dense per backend) that retrieval uses for arrays; keys never leave the library.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..model import ApiKey, Episode, Link, Note, NoteChange, SessionInfo, Stats, Summary


@dataclass(frozen=True, slots=True)
class Tenant:
    namespace: str
    user_id: str


@dataclass(frozen=True, slots=True)
class EpisodeDraft:
    """A validated turn ready to store. ``position`` None means 'append to the session'."""

    id: str
    session_id: str
    role: str
    content: str
    event_time: datetime
    ingest_time: datetime
    speaker: str | None = None
    agent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    position: int | None = None
    written_by: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Column arrays of one tenant's episodes (no text), for ranking without row fetches.

    Rows are ordered by (session key, position). ``vectors`` holds one row per episode
    that has an embedding of ``model_id``; ``vector_rows`` maps those rows to indexes
    into the other arrays."""

    revision: int
    keys: np.ndarray            # int64 episode keys
    session_keys: np.ndarray    # int64
    positions: np.ndarray       # int64
    times: np.ndarray           # int64 microseconds since epoch, event time
    roles: tuple[str, ...]
    speakers: tuple[str | None, ...]
    session_ids: dict[int, str]  # session key -> public session id
    vectors: np.ndarray         # float32 (m, dim), L2-normalised
    vector_rows: np.ndarray     # int64 (m,), index into keys
    # Stores that search turn vectors themselves (``Store.dense_turns`` returns a list)
    # may leave ``vectors`` empty; they then give each session's centroid (the
    # normalised mean of its turn vectors) here: (session keys, (S, dim) unit rows).
    session_vectors: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])


# Tables a store copies row by row for ``memstrata migrate`` (parents before children).
# Columns and value types are the same in every backend: integers (times are
# microseconds since the epoch), floats, text, None, and vectors as little-endian
# float16 bytes. Internal keys are kept, so links between rows survive the copy.
TABLES: dict[str, tuple[str, ...]] = {
    "api_keys": ("key_id", "secret_hash", "namespace", "user_id", "admin", "label", "created_at", "revoked_at"),
    "tenants": ("namespace", "user_id", "revision"),
    "sessions": ("key", "namespace", "user_id", "session_id", "scope", "n_episodes", "first_time", "last_time", "doc"),
    "episodes": ("key", "id", "namespace", "user_id", "agent_id", "session_key", "position", "role", "speaker",
                 "content", "event_time", "ingest_time", "metadata", "scope", "written_by"),
    "embeddings": ("episode_key", "model_id", "vec"),
    "pending": ("episode_key", "namespace", "user_id", "attempts", "error"),
    "notes": ("key", "id", "namespace", "user_id", "scope", "content", "context", "keywords", "tags", "entities",
              "subject", "slot", "value", "norm", "negated", "importance", "valid_from", "valid_to", "status",
              "superseded_by", "created_at", "updated_at", "recall_count", "last_recalled", "extractor"),
    "note_sources": ("note_key", "episode_key"),
    "note_vectors": ("note_key", "model_id", "vec"),
    "links": ("source_key", "target_key", "kind", "weight", "reason", "created_at"),
    "note_history": ("key", "namespace", "user_id", "note_id", "at", "action", "detail"),
    "summaries": ("namespace", "user_id", "session_key", "text", "n_notes", "updated_at"),
}


@dataclass(frozen=True, slots=True)
class NewNote:
    """A note to insert. ``source_keys`` are episode keys of the same tenant."""

    id: str
    content: str
    source_keys: tuple[int, ...]
    context: str = ""
    keywords: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    subject: str | None = None
    slot: str | None = None
    value: str | None = None
    norm: str = ""
    negated: bool = False
    importance: float = 0.5
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    status: str = "active"
    extractor: str = ""
    vector: np.ndarray | None = None


@dataclass(slots=True)
class NoteWrite:
    """Everything one processing step changes, applied in one transaction: new notes,
    provenance added to existing notes (merged duplicates), field updates (status,
    validity), links and history entries (by note id), and the pending episodes the
    step consumed. ``model_id`` names the vectors of ``new``."""

    new: list[NewNote] = field(default_factory=list)
    add_sources: list[tuple[str, int]] = field(default_factory=list)       # (note id, episode key)
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (note id, column -> value)
    links: list[tuple[str, str, str, str]] = field(default_factory=list)     # (source id, target id, kind, reason)
    history: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (note id, action, detail)
    done: list[int] = field(default_factory=list)                            # pending episode keys consumed
    model_id: str | None = None
    # ids of episodes whose words new or merged notes quote (an answer's question): if
    # one was deleted while the step ran, the step is refused (ConflictError) and redone
    quoted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new or self.add_sources or self.updates or self.links or self.history or self.done)


@dataclass(frozen=True, slots=True)
class NoteSnapshot:
    """Column arrays of one tenant's notes (no text) for ranking, graph recall and
    evolution. Row order is note key order (creation order)."""

    revision: int
    keys: np.ndarray             # int64 note keys
    ids: tuple[str, ...]
    active: np.ndarray           # bool
    valid_from: np.ndarray       # int64 micros; INT64_MIN when open
    valid_to: np.ndarray         # int64 micros; INT64_MAX when open
    importance: np.ndarray       # float64
    recall_count: np.ndarray     # int64
    reinforced: np.ndarray       # int64 micros: last recall, else the newest source's event time
    subjects: tuple[str | None, ...]
    slots: tuple[str | None, ...]
    values: tuple[str | None, ...]
    norms: tuple[str, ...]
    negated: np.ndarray          # bool
    entities: tuple[tuple[str, ...], ...]
    keywords: tuple[tuple[str, ...], ...]
    source_ptr: np.ndarray       # CSR: sources of row i are source_keys[source_ptr[i]:source_ptr[i+1]]
    source_keys: np.ndarray      # int64 episode keys
    vectors: np.ndarray          # float32 (m, dim)
    vector_rows: np.ndarray      # int64 (m,)
    links: np.ndarray            # int64 (l, 2) rows (source, target)
    link_kinds: tuple[str, ...]

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])


@runtime_checkable
class Store(Protocol):
    """Persistence for one memory file/database. Implementations: SQLiteStore, PostgresStore."""

    url: str

    def add_episodes(
        self,
        tenant: Tenant,
        drafts: Sequence[EpisodeDraft],
        vectors: np.ndarray | None = None,
        model_id: str | None = None,
    ) -> list[Episode]:
        """Store all drafts atomically (all or nothing); ``vectors[i]`` belongs to
        ``drafts[i]`` (a row of NaN means 'no vector'). Returns the stored episodes."""
        ...

    def get_episode(self, tenant: Tenant, episode_id: str) -> Episode | None: ...

    def episodes_by_keys(self, tenant: Tenant, keys: Sequence[int]) -> dict[int, Episode]: ...

    def list_episodes(
        self,
        tenant: Tenant,
        *,
        session_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Episode]:
        """Episodes in (event_time, session, position) order."""
        ...

    def list_sessions(self, tenant: Tenant) -> list[SessionInfo]: ...

    def neighbours(self, tenant: Tenant, episode_id: str, *, radius: int = 1) -> list[Episode]:
        """The episode and up to ``radius`` turns before and after it in its session,
        in position order ([] if the episode is not the tenant's)."""
        ...

    def neighbours_many(self, tenant: Tenant, episode_ids: Sequence[str], *,
                        radius: int = 1) -> dict[str, list[Episode]]:
        """``neighbours`` for many episodes at once (one round trip where the store is a
        server): episode id -> its window; ids that are not the tenant's are left out."""
        ...

    def delete_episodes(self, tenant: Tenant, episode_ids: Sequence[str]) -> int:
        """Delete these episodes (and everything derived from them); returns how many."""
        ...

    def delete_session(self, tenant: Tenant, session_id: str) -> int: ...

    def erase_tenant(self, tenant: Tenant) -> int:
        """Remove every record of the tenant and scrub freed storage; returns episodes removed."""
        ...

    def lexical_turns(
        self, tenant: Tenant, terms: Sequence[str], *, limit: int,
        start: datetime | None = None, end: datetime | None = None,
    ) -> list[tuple[int, float]]:
        """BM25 over turns: (episode key, score), best first, higher is better."""
        ...

    def lexical_sessions(self, tenant: Tenant, terms: Sequence[str], *, limit: int) -> list[tuple[int, float]]:
        """BM25 over whole-session documents: (session key, score), best first."""
        ...

    def snapshot(self, tenant: Tenant, model_id: str | None) -> Snapshot: ...

    def dense_turns(
        self, tenant: Tenant, vector: np.ndarray, model_id: str, *, limit: int,
        start: datetime | None = None, end: datetime | None = None,
    ) -> list[tuple[int, float]] | None:
        """Nearest episodes to a unit ``vector`` by cosine, from the store's own vector
        index: (episode key, cosine), best first, at most ``limit``, only the tenant's
        episodes with an embedding of ``model_id`` and event time in [start, end).
        None when the store keeps no vector index (the retriever then scans
        ``Snapshot.vectors`` itself)."""
        ...

    def turn_vectors(self, tenant: Tenant, model_id: str,
                     keys: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The tenant's turn vectors of ``model_id`` (only those of ``keys`` when given):
        (episode keys ascending, float32 (m, dim) unit rows). For an index the retriever
        keeps itself when ``Snapshot.vectors`` is left empty (retrieve/ann.py)."""
        ...

    def revision(self, tenant: Tenant) -> int:
        """A number that changes whenever the tenant's data changes (for caches)."""
        ...

    def export_rows(
        self, tenant: Tenant | None, namespace: str | None = None
    ) -> Iterator[tuple[Episode, np.ndarray | None, str | None]]:
        """Every episode with its vector and model id, tenant by tenant, in order."""
        ...

    def stats(self, tenant: Tenant | None, namespace: str | None = None) -> Stats: ...

    def integrity_check(self) -> str:
        """``"ok"``, or what is wrong with the store itself (SQLite: PRAGMA integrity_check
        of the file; PostgreSQL: the database answers and carries this schema)."""
        ...

    def tenants(self, namespace: str | None = None) -> list[Tenant]: ...

    # -- semantic memory ---------------------------------------------------------
    def pending_tenants(self) -> list[Tenant]:
        """Tenants with episodes still waiting for note processing."""
        ...

    def pending_episodes(self, tenant: Tenant, *, limit: int,
                         max_attempts: int | None = None) -> list[tuple[int, Episode]]:
        """The oldest unprocessed episodes of the tenant as (episode key, episode),
        skipping those that already failed ``max_attempts`` times."""
        ...

    def pending_count(self, tenant: Tenant | None = None) -> int: ...

    def mark_pending_failed(self, tenant: Tenant, keys: Sequence[int], error: str) -> None:
        """Record a failed processing attempt; the episodes stay queued."""
        ...

    def apply_notes(self, tenant: Tenant, write: NoteWrite) -> dict[str, int]:
        """Apply one processing step atomically; returns note id -> key for new notes.
        Sources or pending keys that no longer exist (deleted meanwhile) are skipped."""
        ...

    def note_snapshot(self, tenant: Tenant, model_id: str | None) -> NoteSnapshot: ...

    def get_notes(self, tenant: Tenant, note_ids: Sequence[str] | None = None, *,
                  keys: Sequence[int] | None = None, status: str | None = None,
                  limit: int = 100, offset: int = 0) -> list[Note]:
        """Notes by id or key (any status), or a page of all notes (newest first)."""
        ...

    def notes_of_episode(self, tenant: Tenant, episode_id: str) -> list[Note]: ...

    def lexical_notes(self, tenant: Tenant, terms: Sequence[str], *, limit: int) -> list[tuple[int, float]]:
        """BM25 over note content and keywords: (note key, score), best first."""
        ...

    def note_links(self, tenant: Tenant, note_id: str) -> list[Link]: ...

    def note_history(self, tenant: Tenant, note_id: str) -> list[NoteChange]: ...

    def record_recalls(self, tenant: Tenant, counts: dict[int, int], at: datetime) -> None:
        """Add recall counts to notes (reinforcement for the forgetting curve)."""
        ...

    def forget_notes(self, tenant: Tenant, keys: Sequence[int], reason: str) -> int:
        """Remove derived notes (never episodes); history keeps a content-free entry."""
        ...

    def put_summaries(self, tenant: Tenant, rows: Sequence[tuple[str | None, str, int]]) -> None:
        """Replace summaries: (session id or None for the user's, text, note count)."""
        ...

    def get_summaries(self, tenant: Tenant, session_id: str | None = None) -> list[Summary]: ...

    def pending_span(self, tenant: Tenant, session_id: str, first: int, last: int) -> tuple[int, int]:
        """Of the tenant's episodes in ``session_id`` at positions ``first..last``: how many
        still wait for note processing, and how many of those have failed at least once."""
        ...

    # -- moving between stores (memstrata migrate) --------------------------------
    def dump_table(self, table: str, *, batch: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        """Every row of ``table`` (a name in ``TABLES``), columns in ``TABLES`` order,
        in primary-key order, in batches."""
        ...

    def load_table(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows as ``dump_table`` yields them, keys kept; derived indexes
        (full text, vector) are kept in step. Meant for an empty store."""
        ...

    def finish_load(self) -> None:
        """Build what ``load_table`` deferred (PostgreSQL: the large tenants' HNSW graphs);
        call once after the last ``load_table``. Search is correct before, only slower."""
        ...

    def wait_indexes(self, timeout: float | None = None) -> bool:
        """Wait for the vector index work the store runs in the background (PostgreSQL: a
        large tenant's HNSW graph; SQLite has none); False if ``timeout`` seconds passed
        first. Search is correct meanwhile, only slower."""
        ...

    # -- API keys of the servers (not tenant data: the server's own credentials) ----
    def put_api_key(self, key: ApiKey, secret_hash: str) -> None: ...

    def get_api_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its secret's hash, revoked or not."""
        ...

    def list_api_keys(self) -> list[ApiKey]: ...

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        """Mark a key revoked; False if there is no such key (or it was already revoked)."""
        ...

    def close(self) -> None: ...
