"""The write path after ``add``: pending episodes -> notes -> evolution -> summaries.

``add`` stores episodes and, in the same transaction, one ``pending`` row per episode.
A ``Processor`` consumes pending rows in batches; each batch's notes, links, history
and the removal of its pending rows are one transaction, so a crash at any point
leaves either the whole batch or none of it, and the next run resumes where the last
one stopped. A batch that fails (an LLM timeout, a bug) is marked with the error and
retried up to ``max_attempts`` times; episodes are never touched by processing.

Two workers in different processes may race for the same batch: the store refuses a
batch whose pending rows were consumed meanwhile (``ConflictError``) and the loser
reloads and goes on, so no note is derived twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConflictError
from ..safety import flags as safety_flags
from ..store.base import NoteWrite, Store, Tenant
from .evolve import EvolveConfig, NoteState, Relator, evolve
from .extract import Extractor, RuleExtractor
from .summary import session_summary, user_summary

if TYPE_CHECKING:
    from ..model import Episode
    from ..providers.embed import Embedder

log = logging.getLogger("memstrata.process")
NOTE_MAX_TOKENS = 64


@dataclass(slots=True)
class ProcessReport:
    episodes: int = 0
    notes_created: int = 0
    merged: int = 0
    superseded: int = 0
    links: int = 0
    failed_batches: int = 0
    tenants: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: "ProcessReport") -> None:
        for name in ("episodes", "notes_created", "merged", "superseded", "links", "failed_batches", "tenants"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors


class Processor:
    """Turns pending episodes into notes. Thread-safe: one tenant is processed by one
    thread at a time in this process."""

    def __init__(self, store: Store, embedder: "Embedder | None", *, extractor: Extractor | None = None,
                 relator: Relator | None = None, evolve_config: EvolveConfig = EvolveConfig(),
                 batch_size: int = 128, max_attempts: int = 3) -> None:
        self.store = store
        self.embedder = embedder
        self.extractor = extractor or RuleExtractor()
        self.relator = relator
        self.evolve_config = evolve_config
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self._locks: dict[Tenant, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, tenant: Tenant) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(tenant, threading.Lock())

    def run(self, tenant: Tenant | None = None, *, stop: threading.Event | None = None,
            progress: Callable[[int], None] | None = None) -> ProcessReport:
        """Process every pending episode (of one tenant, or of all)."""
        started = time.perf_counter()
        report = ProcessReport()
        for t in [tenant] if tenant is not None else self.store.pending_tenants():
            if stop is not None and stop.is_set():
                break
            report.add(self.process_tenant(t, stop=stop, progress=progress))
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _state(self, tenant: Tenant) -> NoteState:
        state = NoteState.load(self.store.note_snapshot(tenant, self._model_id))
        state.texts = lambda ids: {n.id: n.content for n in self.store.get_notes(tenant, ids)}
        return state

    def process_tenant(self, tenant: Tenant, *, stop: threading.Event | None = None,
                       progress: Callable[[int], None] | None = None) -> ProcessReport:
        report = ProcessReport(tenants=1)
        with self._lock(tenant):
            state = self._state(tenant)
            touched: set[str] = set()
            while stop is None or not stop.is_set():
                batch = [(k, e) for k, e in self.store.pending_episodes(tenant, limit=self.batch_size,
                                                                        max_attempts=self.max_attempts)]
                if not batch:
                    break
                write = NoteWrite(done=[k for k, _ in batch], model_id=self._model_id)
                try:
                    # Episodes flagged as instructions to a model (memory poisoning) are kept
                    # verbatim but derive no notes: a note would launder the flag away.
                    clean = [(k, e) for k, e in batch if not safety_flags(e.content)]
                    drafts = self.extractor.extract(clean, self._before(tenant, clean)) if clean else []
                    vectors = self._vectors([d.embed_text or d.content for d in drafts])
                    before = len(state)
                    evolve(drafts, vectors, state, write, self.evolve_config, self.relator)
                    self.store.apply_notes(tenant, write)
                except ConflictError:
                    # Another worker consumed this batch first; start again from the store.
                    state = self._state(tenant)
                    continue
                except Exception as exc:  # noqa: BLE001 - any failure is recorded, episodes are safe
                    log.warning("note processing failed for %d episodes: %s", len(batch), exc)
                    self.store.mark_pending_failed(tenant, [k for k, _ in batch], f"{type(exc).__name__}: {exc}")
                    report.failed_batches += 1
                    report.errors.append(f"{type(exc).__name__}: {exc}")
                    break  # retried on the next run (an outage should not spin here)
                report.episodes += len(batch)
                report.notes_created += len(state) - before
                report.merged += sum(1 for _, a, _ in write.history if a == "merged")
                report.superseded += sum(1 for _, a, _ in write.history if a in ("superseded", "contradicted"))
                report.links += len(write.links)
                touched |= {e.session_id for _, e in batch}
                changed = [i for i, _ in write.updates]
                if changed:  # sessions whose notes were superseded by this batch
                    touched |= {sid for n in self.store.get_notes(tenant, changed) for sid in n.session_ids}
                if progress:
                    progress(len(batch))
            if touched:
                self.rebuild_summaries(tenant, touched)
        return report

    def rebuild_summaries(self, tenant: Tenant, session_ids: set[str] | None = None) -> None:
        """Recompute the summaries of these sessions (all when None) and the user's."""
        notes = self.store.get_notes(tenant, limit=10_000_000)
        by_session: dict[str, list] = {}
        for n in notes:
            for sid in n.session_ids[:1]:
                by_session.setdefault(sid, []).append(n)
        wanted = set(by_session) if session_ids is None else session_ids
        rows: list[tuple[str | None, str, int]] = []
        for sid in sorted(wanted):
            text, count = session_summary(sid, by_session.get(sid, []))
            rows.append((sid, text, count))
        text, count = user_summary(notes)
        rows.append((None, text, count))
        self.store.put_summaries(tenant, rows)

    def _before(self, tenant: Tenant, turns: list[tuple[int, "Episode"]]) -> dict[int, "Episode | None"]:
        """Each turn's predecessor in its session. Positions are integers, so a turn of
        the batch at position p - 1 is it; otherwise (a batch starting mid-session, a gap)
        the store says. A flagged predecessor is None: its words must not reach a note
        through the next turn."""
        at = {(e.session_id, e.position): e for _, e in turns}
        missing = [e.id for _, e in turns if (e.session_id, e.position - 1) not in at and e.position > 0]
        windows = self.store.neighbours_many(tenant, missing, radius=1) if missing else {}
        out: dict[int, Episode | None] = {}
        for key, ep in turns:
            prev = at.get((ep.session_id, ep.position - 1))
            if prev is None:
                earlier = [w for w in windows.get(ep.id, []) if w.position < ep.position]
                prev = earlier[-1] if earlier else None
            out[key] = None if prev is None or safety_flags(prev.content) else prev
        return out

    @property
    def _model_id(self) -> str | None:
        return self.embedder.model_id if self.embedder is not None else None

    def _vectors(self, texts: list[str]) -> list[np.ndarray | None]:
        if self.embedder is None or not texts:
            return [None] * len(texts)
        matrix = self.embedder.embed(texts, max_tokens=NOTE_MAX_TOKENS)
        return [np.asarray(v, np.float32) for v in matrix]
