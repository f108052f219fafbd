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

from ..model import Episode, SessionInfo, Stats


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

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])


@runtime_checkable
class Store(Protocol):
    """Persistence for one memory file/database. Implementations: SQLiteStore."""

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

    def revision(self, tenant: Tenant) -> int:
        """A number that changes whenever the tenant's data changes (for caches)."""
        ...

    def export_rows(
        self, tenant: Tenant | None, namespace: str | None = None
    ) -> Iterator[tuple[Episode, np.ndarray | None, str | None]]:
        """Every episode with its vector and model id, tenant by tenant, in order."""
        ...

    def stats(self, tenant: Tenant | None, namespace: str | None = None) -> Stats: ...

    def tenants(self, namespace: str | None = None) -> list[Tenant]: ...

    def close(self) -> None: ...
