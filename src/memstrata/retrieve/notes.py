"""Note-level candidate lists for retrieval.

Notes are short, attributed statements derived from turns, so they are sharper keys
than whole turns (LongMemEval's fact-augmented keys, A-MEM's notes): a question about
"activities" meets "Melanie: I'm off to go swimming with the kids" better than the
three-sentence turn around it. Two lists come from notes, each mapped back to the
episodes the notes came from (an episode scores its best note):

- ``notes``: BM25 over note text + keywords fused with cosine over note vectors;
- ``graph``: Personalized PageRank (HippoRAG 2) over a graph of notes and the concepts
  they mention (named entities and keywords), linked notes joined directly. Seeds:
  query terms that name a concept, weighted by specificity (1 / number of notes that
  mention it), plus the best notes of the first list. Mass flows from the query's
  concepts through notes to other concepts they share, reaching evidence that shares
  no word with the query but shares an entity with evidence that does.

Validity: a note whose ``valid_to`` is at or before ``as_of`` (superseded by a later
statement) is down-weighted, so the current fact outranks the one it replaced; asked
``as_of`` an earlier time, the older note is the valid one and is not penalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..store.base import NoteSnapshot
from .query import stem, tokenize


@dataclass(frozen=True, slots=True)
class NoteIndex:
    snap: NoteSnapshot
    note_of: np.ndarray          # flat: note row of each (note, episode) pair
    episode_of: np.ndarray       # flat: episode row (TenantIndex row) of each pair
    concept_ids: dict[str, int]  # concept term -> concept index
    edges_note: np.ndarray       # note-concept incidence: note rows
    edges_concept: np.ndarray    # ... and concept indexes
    concept_df: np.ndarray       # notes per concept

    @classmethod
    def build(cls, snap: NoteSnapshot, key_row: dict[int, int]) -> "NoteIndex":
        counts = np.diff(snap.source_ptr)
        note_rows = np.repeat(np.arange(snap.size, dtype=np.int64), counts)
        ep_rows = np.fromiter((key_row.get(int(k), -1) for k in snap.source_keys), np.int64, len(snap.source_keys))
        keep = ep_rows >= 0
        concept_ids: dict[str, int] = {}
        en: list[int] = []
        ec: list[int] = []
        for row in range(snap.size):
            terms = {stem(t) for e in snap.entities[row] for t in tokenize(e) if len(t) > 2}
            terms |= {stem(t) for t in snap.keywords[row] if len(t) > 2}
            for t in terms:
                en.append(row)
                ec.append(concept_ids.setdefault(t, len(concept_ids)))
        edges_note = np.asarray(en, np.int64)
        edges_concept = np.asarray(ec, np.int64)
        return cls(snap, note_rows[keep], ep_rows[keep], concept_ids, edges_note, edges_concept,
                   np.bincount(edges_concept, minlength=len(concept_ids)).astype(np.float64))

    def validity(self, as_of_micros: int, superseded_factor: float) -> np.ndarray:
        """1 for notes valid (or not yet closed) at ``as_of``, ``superseded_factor`` for
        notes whose validity ended at or before it."""
        closed = self.snap.valid_to <= as_of_micros
        return np.where(closed, superseded_factor, 1.0)

    def to_episodes(self, note_score: np.ndarray, n_rows: int) -> np.ndarray:
        out = np.zeros(n_rows)
        if len(self.note_of):
            np.maximum.at(out, self.episode_of, note_score[self.note_of])
        return out

    def ppr(self, seeds: np.ndarray, *, damping: float = 0.5, iterations: int = 30) -> np.ndarray:
        """Personalized PageRank over the note-concept graph (plus note links);
        ``seeds`` is a vector over notes + concepts. Returns note scores."""
        n_notes, n_con = self.snap.size, len(self.concept_ids)
        total = n_notes + n_con
        if total == 0 or seeds.sum() <= 0:
            return np.zeros(n_notes)
        links = self.snap.links
        src = np.concatenate([self.edges_note, self.edges_concept + n_notes, links[:, 0], links[:, 1]])
        dst = np.concatenate([self.edges_concept + n_notes, self.edges_note, links[:, 1], links[:, 0]])
        out_degree = np.bincount(src, minlength=total).astype(np.float64)
        weight = 1.0 / out_degree[src]
        restart = seeds / seeds.sum()
        p = restart.copy()
        for _ in range(iterations):
            spread = np.bincount(dst, weights=p[src] * weight, minlength=total)
            # mass at nodes without edges returns to the seeds
            spread += restart * p[out_degree == 0].sum()
            p_next = (1 - damping) * restart + damping * spread
            if np.abs(p_next - p).sum() < 1e-6:
                p = p_next
                break
            p = p_next
        return p[:n_notes]

    def concept_seeds(self, terms: tuple[str, ...]) -> np.ndarray:
        seeds = np.zeros(self.snap.size + len(self.concept_ids))
        for t in terms:
            cid = self.concept_ids.get(t)
            if cid is not None and self.concept_df[cid] > 0:
                seeds[self.snap.size + cid] += 1.0 / self.concept_df[cid]
        return seeds
