"""Hybrid, time-aware retrieval over one tenant's episodes.

Pipeline (each step switchable in ``RetrievalConfig``):
1. analyse the query: lexical terms, time expressions resolved against ``as_of``,
   speakers it names;
2. candidates: BM25 over turns and over whole sessions (store), cosine over turn
   vectors and over session centroids (the mean of a session's turn vectors);
3. fuse with reciprocal rank fusion at the session level (turn lists enter it by
   their best turn per session) and at the turn level;
4. boost units inside the query's time ranges and turns by a named speaker; a turn
   also gets a share of its session's score (``session_prior``);
5. aggregate to the unit asked for: turn, round (a user turn and its replies) or session.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..config import RetrievalConfig
from ..errors import InvalidInputError
from ..model import Episode, Hit, Unit
from ..store.base import NoteSnapshot, Snapshot, Store, Tenant
from ..timeutil import to_micros
from . import ann
from .fuse import group_best, relative, rrf, top_indexes
from ..semantic.retention import retention_at
from .notes import NoteIndex
from .query import QueryPlan, analyse, lexical_terms, stem

if TYPE_CHECKING:
    from ..providers.embed import Embedder

_CACHE_TENANTS = 16
_ANN_RETRY_S = 60.0  # after a failed ANN build of a tenant, wait this long before another
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TenantIndex:
    """A snapshot plus the derived arrays ranking needs; rebuilt when the revision moves."""

    snap: Snapshot
    key_row: dict[int, int]
    row_session: np.ndarray      # row -> session index
    session_keys: np.ndarray     # session index -> session key
    session_index: dict[int, int]
    centroids: np.ndarray        # (S, dim) unit vectors; zero rows for sessions without vectors
    has_centroid: np.ndarray     # session index -> it has a centroid (a non-zero row)
    row_round: np.ndarray        # row -> round number (global, increasing)
    speakers: frozenset[str]
    session_starts: np.ndarray   # session index -> its first row (rows are grouped by session)
    speaker_codes: np.ndarray    # row -> index into speaker_names (lower-cased; -1: none)
    speaker_names: tuple[str, ...]

    @classmethod
    def build(cls, snap: Snapshot) -> "TenantIndex":
        n = snap.size
        session_keys, row_session = np.unique(snap.session_keys, return_inverse=True)
        if n > 1 and not bool(np.all(row_session[1:] >= row_session[:-1])):
            # Ranking reduces over each session's rows as one contiguous block.
            raise RuntimeError("store snapshot rows are not grouped by session (Store.snapshot contract)")
        centroids = np.zeros((len(session_keys), snap.vectors.shape[1] if snap.vectors.size else 0), np.float32)
        if snap.session_vectors is not None and len(snap.session_vectors[0]):
            # The store searches turn vectors itself and computed the centroids for us.
            keys, rows = snap.session_vectors
            centroids = np.zeros((len(session_keys), rows.shape[1]), np.float32)
            at = np.searchsorted(session_keys, keys)
            ok = (at < len(session_keys)) & (session_keys[np.minimum(at, len(session_keys) - 1)] == keys)
            centroids[at[ok]] = rows[ok]
        elif snap.vectors.size:
            # Vector rows ascend, so each session's vectors are one contiguous block.
            # (A loop over blocks: np.add.at took 1.5 s at 500k turns, reduceat on axis 0 4 s.)
            owners, first = np.unique(row_session[snap.vector_rows], return_index=True)
            bounds = [*first.tolist(), len(snap.vector_rows)]
            for owner, lo, hi in zip(owners.tolist(), bounds, bounds[1:]):
                centroids[owner] = snap.vectors[lo:hi].sum(axis=0)
            norms = np.linalg.norm(centroids, axis=1, keepdims=True)
            centroids = np.divide(centroids, norms, out=np.zeros_like(centroids), where=norms > 0)
        names = sorted({(s or "").lower() for s in snap.speakers} - {""})
        code_of = {name: i for i, name in enumerate(names)}
        starts = np.searchsorted(row_session, np.arange(len(session_keys))).astype(np.int64)
        return cls(
            snap=snap,
            session_starts=starts,
            speaker_codes=np.fromiter((code_of.get((s or "").lower(), -1) for s in snap.speakers), np.int64, n),
            speaker_names=tuple(names),
            key_row={int(k): i for i, k in enumerate(snap.keys)},
            row_session=row_session.astype(np.int64),
            session_keys=session_keys,
            session_index={int(k): i for i, k in enumerate(session_keys)},
            centroids=centroids,
            has_centroid=centroids.any(axis=1) if centroids.size else np.zeros(len(session_keys), bool),
            row_round=_rounds(snap, row_session, starts),
            speakers=frozenset(s for s in snap.speakers if s),
        )


def _rounds(snap: Snapshot, row_session: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Round number per row. A round opens at each user turn when the session mixes
    user and other roles (user + assistant replies); in sessions where every turn has
    the same role (people talking to each other) a round is a pair of turns."""
    n = snap.size
    if n == 0:
        return np.zeros(0, np.int64)
    is_user = np.fromiter((r == "user" for r in snap.roles), bool, n)
    has_user = np.logical_or.reduceat(is_user, starts)
    has_other = np.logical_or.reduceat(~is_user, starts)
    mixed = (has_user & has_other)[row_session]
    first = np.zeros(n, bool)
    first[starts] = True
    offset = np.arange(n) - starts[row_session]
    opens = np.where(mixed, is_user | first, offset % 2 == 0)
    return np.cumsum(opens, dtype=np.int64) - 1


class Retriever:
    """Ranks one tenant's episodes for a query. Thread-safe; caches per-tenant arrays."""

    def __init__(self, store: Store, embedder: "Embedder | None", config: RetrievalConfig | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config or RetrievalConfig()  # for calls that pass none (prepare, dense_candidates)
        self._cache: OrderedDict[Tenant, TenantIndex] = OrderedDict()
        self._note_cache: OrderedDict[Tenant, tuple[int, NoteIndex]] = OrderedDict()
        self._graphs: OrderedDict[Tenant, ann.TurnIndex] = OrderedDict()  # large tenants (retrieve/ann.py)
        self._graph_jobs: dict[Tenant, threading.Thread] = {}
        self._ann_failed: dict[Tenant, float] = {}  # when a tenant's last ANN build failed
        self.on_recall: Callable[[Tenant, list[int]], None] | None = None
        self._lock = threading.Lock()
        # Bumped by forget(): an index built from a snapshot read before an erase must
        # not be cached after it (a search racing the erase would keep the data alive).
        self._forgotten = 0  # one counter for all tenants: it holds nothing of anyone

    @property
    def model_id(self) -> str | None:
        return self.embedder.model_id if self.embedder is not None else None

    def index(self, tenant: Tenant) -> TenantIndex:
        revision = self.store.revision(tenant)
        with self._lock:
            cached = self._cache.get(tenant)
            if cached is not None and cached.snap.revision == revision:
                self._cache.move_to_end(tenant)
                return cached
            generation = self._forgotten
        built = TenantIndex.build(self.store.snapshot(tenant, self.model_id))
        with self._lock:
            if self._forgotten != generation:
                return built
            self._cache[tenant] = built
            self._cache.move_to_end(tenant)
            while len(self._cache) > _CACHE_TENANTS:
                self._cache.popitem(last=False)
        return built

    def note_index(self, tenant: Tenant, idx: TenantIndex) -> NoteIndex:
        with self._lock:
            cached = self._note_cache.get(tenant)
            if cached is not None and cached[0] == idx.snap.revision:
                self._note_cache.move_to_end(tenant)
                return cached[1]
            generation = self._forgotten
        built = NoteIndex.build(self.store.note_snapshot(tenant, self.model_id), idx.key_row)
        with self._lock:
            if self._forgotten != generation:
                return built
            self._note_cache[tenant] = (idx.snap.revision, built)
            self._note_cache.move_to_end(tenant)
            while len(self._note_cache) > _CACHE_TENANTS:
                self._note_cache.popitem(last=False)
        return built

    def forget(self, tenant: Tenant) -> None:
        with self._lock:
            self._cache.pop(tenant, None)
            self._note_cache.pop(tenant, None)
            self._graphs.pop(tenant, None)
            self._ann_failed.pop(tenant, None)
            self._forgotten += 1

    # -- the ANN index of a large tenant (retrieve/ann.py) -------------------------
    def _ann(self, tenant: Tenant, idx: TenantIndex, cfg: RetrievalConfig) -> "ann.TurnIndex | None":
        """The tenant's IVF index, caught up with this snapshot; None means scan exactly
        (a small tenant, or its first index is still being built)."""
        snap = idx.snap
        # A store that keeps vectors server-side (PostgreSQL) leaves them out of the
        # snapshot: count the tenant's turns instead, and read the vectors when building.
        count = len(snap.vector_rows) if snap.vectors.size else snap.size
        if self.model_id is None or cfg.ann_min_vectors <= 0 or count < cfg.ann_min_vectors:
            return None  # (an index of a tenant that shrank stays cached until evicted)
        with self._lock:
            index = self._graphs.get(tenant)
            if index is not None:
                self._graphs.move_to_end(tenant)
            job = self._graph_jobs.get(tenant)
            building = job is not None and job.is_alive()
            generation = self._forgotten
        if index is not None:
            self._sync_ann(tenant, index, snap)  # new turns to its tail, lost ones dead
            if index.stale_share <= ann.REBUILD_SHARE or building:
                return index
        elif building:
            return None
        with self._lock:  # a build that keeps failing is retried once a minute, not every search
            failed = self._ann_failed.get(tenant)
        if failed is not None and time.monotonic() - failed < _ANN_RETRY_S:
            return index
        job = threading.Thread(target=self._build_ann, args=(tenant, snap, generation),
                               name=f"memstrata-ann-{tenant.user_id}", daemon=True)
        with self._lock:
            running = self._graph_jobs.get(tenant)
            if running is not None and running.is_alive():
                return index
            self._graph_jobs[tenant] = job
        job.start()
        return index  # the old index (if any) answers until the new one is ready

    def _sync_ann(self, tenant: Tenant, index: "ann.TurnIndex", snap: Snapshot) -> None:
        if snap.vectors.size:
            index.sync_snapshot(snap)
        elif self.model_id is not None:
            model = self.model_id
            index.sync(snap.revision, snap.keys,
                       lambda new: self.store.turn_vectors(tenant, model, snap.keys[new].tolist()))

    def _build_ann(self, tenant: Tenant, snap: Snapshot, generation: int) -> None:
        built: ann.TurnIndex | None = None
        try:
            if snap.vectors.size:
                built = ann.TurnIndex.build(snap)
            elif self.model_id is not None:
                keys, vectors = self.store.turn_vectors(tenant, self.model_id)
                if len(keys):
                    built = ann.TurnIndex(keys, vectors, snap.revision)
        except Exception:  # noqa: BLE001 - e.g. the store closed meanwhile: searches stay exact
            _log.warning("ANN index build for a tenant failed; its searches stay on the exact path "
                         "(retried in %.0f s)", _ANN_RETRY_S, exc_info=True)
            with self._lock:
                if len(self._ann_failed) > 1_000:
                    self._ann_failed.clear()
                self._ann_failed[tenant] = time.monotonic()
        finally:
            with self._lock:
                self._graph_jobs.pop(tenant, None)
        if built is None:
            return
        with self._lock:
            if self._forgotten != generation:
                return  # the tenant was erased (or another forgotten) meanwhile: drop it
            # (If the old index has followed newer writes meanwhile, the next search's
            # sync brings this one up to date the same way.)
            self._graphs[tenant] = built
            self._graphs.move_to_end(tenant)
            self._ann_failed.pop(tenant, None)
            while len(self._graphs) > _CACHE_TENANTS:
                self._graphs.popitem(last=False)

    def prepare(self, tenant: Tenant, cfg: RetrievalConfig | None = None, timeout: float | None = None) -> bool:
        """Build the tenant's search structures now (the index, and for a large tenant its
        ANN index, waiting up to ``timeout`` seconds for it). True when search will use
        the ANN index; False for a tenant scanned exactly or an index still building."""
        cfg = cfg or self.config
        idx = self.index(tenant)
        self._ann(tenant, idx, cfg)  # starts a build (or a rebuild) when one is due
        with self._lock:
            job = self._graph_jobs.get(tenant)
        if job is not None:
            job.join(timeout)
        return self._ann(tenant, idx, cfg) is not None

    def search(
        self, tenant: Tenant, query: str, *, k: int, unit: Unit, cfg: RetrievalConfig,
        as_of: datetime, start: datetime | None = None, end: datetime | None = None,
    ) -> list[Hit]:
        if unit not in ("turn", "round", "session"):
            raise InvalidInputError(f"unit must be turn, round or session, not {unit!r}")
        idx = self.index(tenant)
        if idx.snap.size == 0:
            return []
        plan = analyse(query, as_of=as_of, known_speakers=idx.speakers,
                       find_time=cfg.time_mode != "off", strip_time_words=cfg.strip_time_words,
                       drop_speaker_terms=cfg.drop_speaker_terms, dense_drop_speakers=cfg.dense_drop_speakers)
        ranking = self._rank(tenant, idx, plan, cfg, as_of, start, end)
        diversity = cfg.diversity if (plan.aggregate or cfg.diversity_scope == "all") else 0.0
        restated = (cfg.refresh_window, cfg.refresh_cos) if cfg.refresh_window and not plan.past else None
        hits, rows = _assemble(self.store, tenant, idx, ranking, unit, k, diversity, restated)
        if self.on_recall is not None and ranking.notes is not None and rows:
            self._report_recalls(tenant, idx, *ranking.notes, rows)
        return hits

    def _report_recalls(self, tenant: Tenant, idx: TenantIndex, nidx: NoteIndex, note_scores: np.ndarray,
                        rows: list[int]) -> None:
        """Notes that matched the query and come from a returned unit were recalled:
        the forgetting curve reinforces them (MemoryBank)."""
        # ``nidx`` is the note index this ranking used, built against ``idx``: never the
        # cache's current entry, which a concurrent search may have rebuilt for a newer
        # snapshot (its episode rows would not fit ``idx``).
        if self.on_recall is None or nidx.snap.size != len(note_scores):
            return
        wanted = np.zeros(idx.snap.size, bool)
        wanted[rows] = True
        pairs = wanted[nidx.episode_of] & (note_scores[nidx.note_of] > 0)
        keys = nidx.snap.keys[np.unique(nidx.note_of[pairs])]
        if len(keys):
            self.on_recall(tenant, [int(k) for k in keys])

    # -- ranking ---------------------------------------------------------------
    def _rank(
        self, tenant: Tenant, idx: TenantIndex, plan: QueryPlan, cfg: RetrievalConfig,
        as_of: datetime, start: datetime | None, end: datetime | None,
    ) -> "Ranking":
        snap = idx.snap
        if cfg.hide_future:
            upper = as_of + timedelta(microseconds=1)
            end = upper if end is None else min(end, upper)
        mask = np.ones(snap.size, dtype=bool) if end is None else snap.times < to_micros(end)
        if start is not None:
            mask &= snap.times >= to_micros(start)
        whole = end is None and start is None  # no filter: skip the per-row mask arithmetic
        time_factor: np.ndarray | None = None  # None: 1 everywhere (no time in the query)
        if plan.ranges and cfg.time_mode != "off":
            time_factor, hard = _time_factors(snap.times, plan, cfg)
            if cfg.time_mode == "filter" and (hard & mask).any():
                mask &= hard
                whole = False
        w_lex, w_dense, w_slex, w_sdense = cfg.weights
        n_sessions = len(idx.session_keys)
        # Candidate lists: (name, indexes best first, scores, weight).
        turn_lists: list[tuple[str, np.ndarray, np.ndarray, float]] = []
        session_lists: list[tuple[np.ndarray, np.ndarray, float]] = []
        if cfg.lexical and plan.terms:
            found = self.store.lexical_turns(tenant, plan.terms, limit=cfg.candidates, start=start, end=end)
            pairs = [(idx.key_row[k], sc) for k, sc in found if k in idx.key_row and mask[idx.key_row[k]]]
            turn_lists.append(("lexical", np.array([r for r, _ in pairs], np.int64),
                               np.array([sc for _, sc in pairs]), w_lex))
        query_vec = self._embed_query(plan.embed_text) if (cfg.dense or cfg.session_dense) else None
        if cfg.dense and query_vec is not None:
            found = self._dense(tenant, idx, query_vec, cfg.candidates, mask, start, end, cfg)
            if found is not None:
                turn_lists.append(("dense", *found, w_dense))
        recalled: tuple[NoteIndex, np.ndarray] | None = None
        stale: tuple[np.ndarray, np.ndarray] | None = None
        if cfg.notes_weight or cfg.graph_weight:
            recalled, stale = self._note_lists(tenant, idx, plan, cfg, query_vec, mask, as_of, turn_lists)
        expansion: list[str] = []
        if cfg.prf_terms and cfg.session_lexical and plan.terms and turn_lists:
            expansion = self._feedback_terms(tenant, idx, plan, turn_lists, cfg.prf_terms)
        if expansion and cfg.prf_weight:
            found = self.store.lexical_turns(tenant, [*plan.terms, *expansion], limit=cfg.candidates,
                                             start=start, end=end)
            pairs = [(idx.key_row[k], sc) for k, sc in found if k in idx.key_row and mask[idx.key_row[k]]]
            turn_lists.append(("feedback", np.array([r for r, _ in pairs], np.int64),
                               np.array([sc for _, sc in pairs]), cfg.prf_weight))
        if whole:
            session_mask = np.ones(n_sessions, bool)
        else:
            session_mask = np.logical_or.reduceat(mask, idx.session_starts) if n_sessions else np.zeros(0, bool)
        if cfg.session_lexical and plan.terms:
            found = self.store.lexical_sessions(tenant, [*plan.terms, *expansion], limit=cfg.candidates)
            pairs = [(idx.session_index[k], sc) for k, sc in found
                     if k in idx.session_index and session_mask[idx.session_index[k]]]
            session_lists.append((np.array([r for r, _ in pairs], np.int64), np.array([sc for _, sc in pairs]), w_slex))
        if cfg.session_dense and query_vec is not None and idx.centroids.size:
            sims = idx.centroids @ query_vec
            order = top_indexes(sims + 2.0, cfg.candidates, session_mask & idx.has_centroid)
            session_lists.append((order, sims[order], w_sdense))
        for _, rows, scores, weight in turn_lists:  # a turn list votes for a session with its best turn
            groups, best = group_best(idx.row_session[rows], scores, n_sessions)
            session_lists.append((groups, best, weight))
        if cfg.fusion == "rrf":
            turn_score = rrf(snap.size, [(rows, w) for _, rows, _, w in turn_lists], cfg.rrf_k)
            session_score = rrf(n_sessions, [(ids, w) for ids, _, w in session_lists], cfg.rrf_k)
        else:
            turn_score = relative(snap.size, [(rows, sc, w) for _, rows, sc, w in turn_lists])
            session_score = relative(n_sessions, session_lists)
        if time_factor is not None:
            session_score *= np.maximum.reduceat(time_factor, idx.session_starts)
        if stale is not None:  # a session whose best note for the query was superseded
            raw_s = np.zeros(n_sessions)
            kept_s = np.zeros(n_sessions)
            np.maximum.at(raw_s, idx.row_session, stale[0])
            np.maximum.at(kept_s, idx.row_session, stale[1])
            session_score *= np.divide(kept_s, raw_s, out=np.ones(n_sessions), where=raw_s > 0)
        if cfg.neighbor_weight:
            turn_score = turn_score + cfg.neighbor_weight * _neighbor_max(turn_score, idx.row_session)
        if time_factor is not None:
            turn_score = turn_score * time_factor
        if plan.speakers and cfg.speaker_boost:
            codes = [i for i, name in enumerate(idx.speaker_names) if name in plan.speakers]
            spoken = np.isin(idx.speaker_codes, codes)
            turn_score = np.where(spoken, turn_score * (1 + cfg.speaker_boost), turn_score)
        # Only scored turns (candidates and their neighbours) take a share of their
        # session's score: work on those rows, not on the whole tenant.
        scored = np.flatnonzero(turn_score > 0)
        turn_score[scored] += cfg.session_prior * session_score[idx.row_session[scored]]
        ranks = {name: {int(r): i + 1 for i, r in enumerate(rows[:100])} for name, rows, _, _ in turn_lists}
        if whole:
            return Ranking(turn_score, session_score, turn_score > 0, session_mask, ranks, recalled)
        return Ranking(turn_score * mask, session_score * session_mask, mask & (turn_score > 0), session_mask, ranks,
                       recalled, mask)

    def _note_lists(
        self, tenant: Tenant, idx: TenantIndex, plan: QueryPlan, cfg: RetrievalConfig,
        query_vec: np.ndarray | None, mask: np.ndarray, as_of: datetime,
        turn_lists: list[tuple[str, np.ndarray, np.ndarray, float]],
    ) -> tuple[tuple[NoteIndex, np.ndarray] | None, tuple[np.ndarray, np.ndarray] | None]:
        """Add the ``notes`` and ``graph`` lists (see retrieve/notes.py) and demote turns
        whose best note for the query was superseded before ``as_of``. Returns the note
        scores and, when any matching note is superseded, per-turn (raw, kept) scores."""
        nidx = self.note_index(tenant, idx)
        notes = nidx.snap
        if notes.size == 0:
            return None, None
        validity = nidx.validity(to_micros(as_of), cfg.superseded_factor)
        lists: list[tuple[np.ndarray, np.ndarray, float]] = []
        if plan.terms:
            row_of = {int(k): i for i, k in enumerate(notes.keys)}
            found = [(row_of[k], sc) for k, sc in self.store.lexical_notes(tenant, plan.terms, limit=cfg.candidates)
                     if k in row_of]
            lists.append((np.array([r for r, _ in found], np.int64), np.array([sc for _, sc in found]), 1.0))
        if query_vec is not None and notes.vectors.size:
            sims = notes.vectors @ query_vec
            order = top_indexes(sims + 2.0, cfg.candidates)
            lists.append((notes.vector_rows[order], sims[order], 1.0))
        raw_score = relative(notes.size, lists)
        if cfg.refresh_cos < 1.0 and notes.vectors.size:
            validity = validity * _refreshed(notes, raw_score, cfg)
        note_score = raw_score * validity
        if cfg.retention_weight:
            kept = retention_at(to_micros(as_of), notes.reinforced, notes.importance, notes.recall_count,
                                base_days=cfg.retention_days)
            note_score *= (1.0 - cfg.retention_weight) + cfg.retention_weight * kept
        if cfg.notes_weight:
            ep = nidx.to_episodes(note_score, idx.snap.size) * mask
            rows = top_indexes(ep, cfg.candidates, ep > 0)
            turn_lists.append(("notes", rows, ep[rows], cfg.notes_weight))
        if cfg.graph_weight:
            seeds = nidx.concept_seeds(tuple(stem(t) for t in plan.terms))
            top = top_indexes(note_score, cfg.graph_seed_notes, note_score > 0)
            if len(top) and seeds.sum() > 0:
                seeds[top] += seeds.sum() * note_score[top] / note_score[top].sum()
            elif len(top):
                seeds[top] += note_score[top]
            pr = nidx.ppr(seeds, damping=cfg.ppr_damping) * validity
            ep = nidx.to_episodes(pr, idx.snap.size) * mask
            rows = top_indexes(ep, cfg.candidates, ep > 0)
            turn_lists.append(("graph", rows, ep[rows], cfg.graph_weight))
        stale = None
        if cfg.superseded_factor < 1.0 and ((validity < 1.0) & (raw_score > 0)).any():
            # A turn whose best note for this query was superseded is demoted by the
            # same factor (a turn can carry a stale fact and a current one).
            raw = nidx.to_episodes(raw_score, idx.snap.size)
            kept = nidx.to_episodes(raw_score * validity, idx.snap.size)
            factor = np.divide(kept, raw, out=np.ones_like(raw), where=raw > 0)
            for i, (name, rows, scores, w) in enumerate(turn_lists):
                turn_lists[i] = (name, rows, scores * factor[rows], w)
            stale = (raw, kept)
        return (nidx, note_score), stale

    def _feedback_terms(self, tenant: Tenant, idx: TenantIndex, plan: QueryPlan,
                        turn_lists: list[tuple[str, np.ndarray, np.ndarray, float]], n: int) -> list[str]:
        """Pseudo-relevance feedback (RM3-style, Lavrenko & Croft 2001, simplified): terms
        shared by at least two of the top turns of the first-pass lists, most widespread
        first, become extra query terms. Multi-session and multi-hop questions name a
        topic once; the turns about it share vocabulary the question does not use."""
        rows = list(dict.fromkeys(int(r) for _, rows, _, _ in turn_lists for r in rows[:3]))
        episodes = self.store.episodes_by_keys(tenant, [int(idx.snap.keys[r]) for r in rows])
        query = set(plan.terms)
        df: dict[str, int] = {}
        for ep in episodes.values():
            for term in set(lexical_terms(ep.content)):
                if term not in query and len(term) > 2 and not term.isdigit():
                    df[term] = df.get(term, 0) + 1
        shared = sorted((t for t, c in df.items() if c >= 2), key=lambda t: (-df[t], t))
        return shared[:n]

    def _dense(self, tenant: Tenant, idx: TenantIndex, query_vec: np.ndarray, limit: int, mask: np.ndarray,
               start: datetime | None = None, end: datetime | None = None,
               cfg: RetrievalConfig | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Nearest turns as (rows, cosines), best first, among rows where ``mask`` holds:
        from the tenant's IVF index when it is large and the index is ready
        (retrieve/ann.py), else from the store's own vector index when it has one
        (pgvector HNSW), else an exact scan of the snapshot's vectors. None when there is
        nothing to search."""
        snap = idx.snap
        if self.model_id is None:
            return None
        cfg = cfg or self.config
        index = self._ann(tenant, idx, cfg)
        if index is not None:
            whole = bool(mask.all())
            # Under a filter (time bounds, hide_future) ask deeper and drop what it hides;
            # if too little is left, the filter is narrow and the exact scan below answers.
            # Keys the snapshot no longer has (deleted turns still in the index) drop too.
            want = (limit if whole else 4 * limit) + min(index.dead, limit)
            keys, sims = index.search(query_vec, want, cfg.ann_probe)
            rows = np.fromiter((idx.key_row.get(int(k), -1) for k in keys), np.int64, len(keys))
            ok = rows >= 0
            ok[ok] = mask[rows[ok]]
            if int(ok.sum()) >= limit or (whole and len(keys) < want):
                return rows[ok][:limit], sims[ok][:limit]
        found = self.store.dense_turns(tenant, query_vec, self.model_id, limit=limit, start=start, end=end)
        if found is not None:
            # The index knows only time bounds; the other filters (hide_future, time
            # filter mode) apply here, as on the exact path.
            pairs = [(idx.key_row[k], sim) for k, sim in found if k in idx.key_row and mask[idx.key_row[k]]]
            return np.array([r for r, _ in pairs], np.int64), np.array([sim for _, sim in pairs], np.float64)
        if not snap.vectors.size:
            return None
        sims = snap.vectors @ query_vec
        order = top_indexes(sims + 2.0, limit, mask[snap.vector_rows])
        return snap.vector_rows[order], sims[order]

    def dense_candidates(self, tenant: Tenant, vector: np.ndarray, limit: int,
                         cfg: RetrievalConfig | None = None) -> list[tuple[str, float]]:
        """The dense path alone: (episode id, cosine) of the ``limit`` turns nearest to a
        unit ``vector``, best first, by the same route search takes (the store's vector
        index, the tenant's IVF index, or an exact scan). For benchmarks that compare it with
        exact search."""
        idx = self.index(tenant)
        if idx.snap.size == 0:
            return []
        found = self._dense(tenant, idx, np.asarray(vector, np.float32), limit, np.ones(idx.snap.size, bool),
                            cfg=cfg)
        if found is None:
            return []
        rows, sims = found
        keys = [int(idx.snap.keys[r]) for r in rows]
        episodes = self.store.episodes_by_keys(tenant, keys)
        return [(episodes[k].id, float(sim)) for k, sim in zip(keys, sims) if k in episodes]

    def _embed_query(self, text: str) -> np.ndarray | None:
        if self.embedder is None:
            return None
        return np.asarray(self.embedder.embed([text])[0], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Ranking:
    turn: np.ndarray
    session: np.ndarray
    turn_mask: np.ndarray
    session_mask: np.ndarray
    ranks: dict[str, dict[int, int]]
    notes: "tuple[NoteIndex, np.ndarray] | None" = None   # the note index used, and note scores
    mask: np.ndarray | None = None  # rows the query may see (time filters); None: all


def _refreshed(notes: "NoteSnapshot", raw: np.ndarray, cfg: RetrievalConfig) -> np.ndarray:
    """Query-time knowledge updates: among the notes that match the query, one that a
    *later* note of the same subject restates closely (cosine >= ``refresh_cos``) is
    treated as superseded by it when the two state different quantities. The
    extractor only records an update when it recognises the attribute; this catches
    "I've tried three Korean restaurants" -> "I just tried my fourth" when both answer
    the same question, and leaves restatements without a changed quantity alone (they
    are evidence to gather, not to replace)."""
    factor = np.ones(notes.size)
    with_vec = np.zeros(notes.size, bool)
    with_vec[notes.vector_rows] = True
    top = top_indexes(raw, 50, (raw > 0) & with_vec)
    if len(top) < 2:
        return factor
    vec_row = {int(r): i for i, r in enumerate(notes.vector_rows)}
    vecs = notes.vectors[[vec_row[int(r)] for r in top]]
    sims = vecs @ vecs.T
    starts = notes.valid_from[top]
    subjects = [notes.subjects[int(r)] for r in top]
    for a in range(len(top)):
        for b in range(len(top)):
            if (a != b and sims[a, b] >= cfg.refresh_cos and starts[b] > starts[a]
                    and subjects[a] == subjects[b] and _values_differ(notes.norms[int(top[a])], notes.norms[int(top[b])])):
                factor[top[a]] = cfg.refresh_factor
                break
    return factor


_NUMERIC = re.compile(r"\b(?:\d+(?:[.,:]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                      r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|twice|once)\b")


def _values_differ(a: str, b: str) -> bool:
    """Both statements carry a quantity and the quantities differ ("three" -> "fourth")."""
    na, nb = set(_NUMERIC.findall(a)), set(_NUMERIC.findall(b))
    return bool(na) and bool(nb) and na != nb


def _time_factors(times: np.ndarray, plan: QueryPlan, cfg: RetrievalConfig) -> tuple[np.ndarray, np.ndarray]:
    factor = np.ones(len(times))
    hard = np.zeros(len(times), dtype=bool)
    for r in plan.ranges:
        inside = (times >= to_micros(r.start)) & (times < to_micros(r.end))
        boost = 1 + (cfg.time_boost / 2 if r.fuzzy else cfg.time_boost)
        factor = np.where(inside, np.maximum(factor, boost), factor)
        if not r.fuzzy:
            hard |= inside
    return factor, hard


def _neighbor_max(scores: np.ndarray, row_session: np.ndarray) -> np.ndarray:
    """Per row, the larger score of the turns just before and after it in its session.
    Only rows next to a scored row can get anything: work on those (O(candidates))."""
    out = np.zeros_like(scores)
    rows = np.flatnonzero(scores)
    n = len(scores)
    for step in (-1, 1):
        nb = rows + step
        ok = (nb >= 0) & (nb < n)
        src, nb = rows[ok], nb[ok]
        same = row_session[src] == row_session[nb]
        np.maximum.at(out, nb[same], scores[src[same]])
    return out


def _diversify(scores: np.ndarray, mask: np.ndarray, row_session: np.ndarray, depth: int,
               diversity: float, pool_size: int | None = None) -> np.ndarray:
    """Greedy session-diverse top list (MMR, Carbonell & Goldstein 1998, with 'same
    session' as the redundancy measure): each turn already taken from a session
    multiplies the scores of that session's other turns by (1 - diversity).
    Questions that gather facts from many conversations need the spread; a single
    fact is usually at the top either way."""
    pool = top_indexes(scores, pool_size or depth * 5, mask)
    if len(pool) <= 1:
        return pool
    base = scores[pool].astype(np.float64)
    sess = row_session[pool]
    taken_per: dict[int, int] = {}
    chosen: list[int] = []
    alive = np.ones(len(pool), bool)
    for _ in range(min(depth, len(pool))):
        penalty = np.array([(1 - diversity) ** taken_per.get(int(s), 0) for s in sess])
        adjusted = np.where(alive, base * penalty, -np.inf)
        j = int(np.argmax(adjusted))
        chosen.append(int(pool[j]))
        alive[j] = False
        taken_per[int(sess[j])] = taken_per.get(int(sess[j]), 0) + 1
    return np.asarray(chosen, np.int64)


def _assemble(store: Store, tenant: Tenant, idx: TenantIndex, ranking: Ranking, unit: Unit,
              k: int, diversity: float = 0.0, restated: tuple[int, float] | None = None) -> tuple[list[Hit], list[int]]:
    """The ``k`` best units. ``restated`` = (window, cosine): see ``_restatements_first``."""
    snap = idx.snap
    window = restated[0] if restated is not None and ranking.notes is not None else 0
    want = k + window
    # (score, best row, rows whose text the hit shows, rows whose notes speak for it)
    groups: list[tuple[float, int, list[int], np.ndarray]] = []
    if unit == "session":
        sessions = top_indexes(ranking.session, want, ranking.session_mask)
        ends = np.append(idx.session_starts[1:], snap.size)
        for s in sessions:
            rows = np.flatnonzero((idx.row_session == s) & ranking.turn_mask)
            if len(rows) == 0:
                rows = np.flatnonzero(idx.row_session == s)
            best = rows[np.argmax(ranking.turn[rows])]
            members = np.arange(idx.session_starts[s], ends[s])
            if ranking.mask is not None:  # a time filter: the session speaks only through visible turns
                members = members[ranking.mask[members]]
            groups.append((float(ranking.session[s]), int(best), [int(best)], members))
    else:
        # The first k units are the ones a search without the reorder returns: the extra
        # `window` come from the same pool (rounds: from the same k * 4 turns).
        depth = want if unit == "turn" else k * 4
        if diversity > 0:
            turns = _diversify(ranking.turn, ranking.turn_mask, idx.row_session, depth, diversity, pool_size=k * 5)
        else:
            turns = top_indexes(ranking.turn, depth, ranking.turn_mask)
        seen_rounds: set[int] = set()
        for r in turns:
            if unit == "turn":
                groups.append((float(ranking.turn[r]), int(r), [int(r)], np.array([r])))
                continue
            rnd = int(idx.row_round[r])
            if rnd in seen_rounds:
                continue
            seen_rounds.add(rnd)
            members = np.flatnonzero(idx.row_round == rnd)
            visible = members if ranking.mask is None else members[ranking.mask[members]]
            groups.append((float(ranking.turn[r]), int(r), [int(m) for m in members], visible))
            if len(groups) == want:
                break
    if window and restated is not None and len(groups) > 1:
        groups = _restatements_first(groups, idx, ranking, window, restated[1])
    groups = groups[:k]
    keys = {int(snap.keys[r]) for _, best, text_rows, _ in groups for r in [best, *text_rows]}
    episodes = store.episodes_by_keys(tenant, sorted(keys))
    hits = []
    for score, best, text_rows, _ in groups:
        ep = episodes.get(int(snap.keys[best]))
        if ep is None:  # deleted between snapshot and fetch
            continue
        texts = [episodes[int(snap.keys[r])] for r in text_rows if int(snap.keys[r]) in episodes]
        hits.append(_hit(score, unit, ep, texts, ranking, best))
    return hits, [r for _, best, text_rows, _ in groups for r in (best, *text_rows)]


def _restatements_first(groups: list[tuple[float, int, list[int], np.ndarray]], idx: TenantIndex,
                        ranking: Ranking, window: int, min_cos: float) -> list[tuple[float, int, list[int], np.ndarray]]:
    """Newest restatement first (query-time knowledge updates, for hits the extractor
    did not link). Each hit is represented by its best note for the query (from its
    visible turns). A hit whose note restates the note of a hit ranked at most ``window``
    places above it (same subject, cosine >= ``min_cos``) and was said *later* moves
    ahead of that hit and takes its score (a tie, broken by recency); it never passes a
    restatement said after it. Asked about a fact stated twice, the current statement
    comes first. The caller skips this for questions about an earlier state
    (``asks_about_past``)."""
    assert ranking.notes is not None
    nidx, note_score = ranking.notes
    notes = nidx.snap
    if not notes.vectors.size or not len(nidx.note_of):
        return groups
    # Work from the notes that matched the query (a few hundred), not the whole tenant.
    scored = np.flatnonzero(note_score > 0)
    with_vec = np.searchsorted(notes.vector_rows, scored)  # vector_rows ascend
    with_vec = np.minimum(with_vec, len(notes.vector_rows) - 1)
    keep = notes.vector_rows[with_vec] == scored
    scored, vec_of = scored[keep], with_vec[keep]
    lo = np.searchsorted(nidx.note_of, scored, "left")  # note_of ascends: each note's pairs
    hi = np.searchsorted(nidx.note_of, scored, "right")
    counts = hi - lo
    if counts.sum() == 0:
        return groups
    pair = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    pair_vec = np.repeat(vec_of, counts)
    member_rows = np.concatenate([g[3] for g in groups]).astype(np.int64)
    member_group = np.repeat(np.arange(len(groups)), [len(g[3]) for g in groups])
    order = np.argsort(member_rows, kind="stable")
    member_rows, member_group = member_rows[order], member_group[order]
    ep = nidx.episode_of[pair]
    at = np.minimum(np.searchsorted(member_rows, ep), max(len(member_rows) - 1, 0))
    inside = (member_rows[at] == ep) if len(member_rows) else np.zeros(len(ep), bool)
    pair, pair_vec, ep, grp = pair[inside], pair_vec[inside], ep[inside], member_group[at[inside]]
    best = np.argsort(-note_score[nidx.note_of[pair]], kind="stable")  # best pair first
    owners, first = np.unique(grp[best], return_index=True)  # each group's best pair
    note = np.full(len(groups), -1, np.int64)
    vec = np.zeros(len(groups), np.int64)
    said = np.zeros(len(groups), np.int64)
    note[owners] = nidx.note_of[pair[best[first]]]
    vec[owners] = pair_vec[best[first]]
    said[owners] = idx.snap.times[ep[best[first]]]

    def restates(g: int, h: int) -> bool:
        n, m = int(note[g]), int(note[h])
        return (m >= 0 and m != n and notes.subjects[m] == notes.subjects[n]
                and float(notes.vectors[vec[g]] @ notes.vectors[vec[h]]) >= min_cos)

    placed: list[int] = []
    scores = [g[0] for g in groups]
    for g in range(len(groups)):
        target = None
        if note[g] >= 0 and notes.subjects[int(note[g])]:
            for pos in range(len(placed) - 1, max(len(placed) - window, 0) - 1, -1):
                h = placed[pos]
                if restates(g, h):
                    if said[h] >= said[g]:
                        break  # never pass a restatement said at the same time or later
                    target = pos
        if target is None:
            placed.append(g)
        else:
            scores[g] = max(scores[g], scores[placed[target]])
            placed.insert(target, g)
    return [(scores[g], *groups[g][1:]) for g in placed]


def _hit(score: float, unit: Unit, ep: Episode, texts: list[Episode], ranking: Ranking, best: int) -> Hit:
    if len(texts) > 1:
        text = "\n".join(f"{t.author}: {t.content}" for t in texts)
    else:
        text = ep.content
    sources = {name: ranks[best] for name, ranks in ranking.ranks.items() if best in ranks}
    return Hit(
        score=round(score, 6), unit=unit, episode_id=ep.id, session_id=ep.session_id,
        speaker=ep.author, role=ep.role, event_time=ep.event_time, text=text,
        episode_ids=tuple(dict.fromkeys([ep.id, *(t.id for t in texts)])), sources=sources,
    )
