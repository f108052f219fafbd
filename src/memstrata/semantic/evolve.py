"""Evolution: how a new note meets the notes already there (A-MEM's link + evolve,
Graphiti's invalidation instead of overwrite).

For each draft, in event-time order, the first rule that applies decides:

1. **duplicate** — same normalised statement, or (with vectors) cosine >= ``dup_cos``
   with the same subject, polarity and numbers, or the same (subject, slot, value):
   no new note; the existing one gains the draft's sources (both provenances kept).
2. **updates** — same subject and slot with a different value, or a near-identical
   statement (cosine >= ``update_cos``) whose numbers changed: the newer note closes the
   older one's validity (``valid_to`` = the newer one's ``valid_from``), marks it
   superseded and links to it. A draft older than the note it meets (out-of-order
   ingest) is itself stored as the superseded one.
3. **contradicts** — a near-identical statement of the same subject with the opposite
   polarity ("I eat meat" / "I don't eat meat anymore"): handled like an update, with a
   ``contradicts`` link.
4. otherwise a new note, with ``related`` links to the most similar existing notes
   (cosine >= ``related_cos``, or a shared named entity other than the speaker).

Decisions by an LLM (``semantic/llm.py``) plug in through ``Relator``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..store.base import NewNote, NoteSnapshot, NoteWrite
from ..timeutil import from_micros, to_micros
from ..retrieve.query import STOPWORDS
from .extract import NoteDraft

_NUM = re.compile(r"\d+(?:[.,:]\d+)?")
_I64_MIN = np.iinfo(np.int64).min


def new_note_id() -> str:
    return "n" + uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class EvolveConfig:
    dup_cos: float = 0.95
    update_cos: float = 0.85
    related_cos: float = 0.6
    max_related: int = 3


@dataclass(frozen=True, slots=True)
class Relation:
    target: int          # row in NoteState
    kind: str            # duplicate, updates, contradicts, related, elaborates
    reason: str


class Relator(Protocol):
    """Decides how a draft relates to candidate notes (LLM-backed implementations)."""

    def relate(self, draft: NoteDraft, candidates: Sequence[tuple[int, str, str]]) -> list[Relation]:
        """``candidates``: (state row, note id, note text), most similar first."""
        ...


@dataclass(slots=True)
class NoteState:
    """The tenant's notes as evolution sees them, updated as drafts are applied."""

    ids: list[str] = field(default_factory=list)
    active: list[bool] = field(default_factory=list)
    subjects: list[str | None] = field(default_factory=list)
    slots: list[str | None] = field(default_factory=list)
    values: list[str | None] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    negated: list[bool] = field(default_factory=list)
    entities: list[tuple[str, ...]] = field(default_factory=list)
    valid_from: list[int] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    has_vec: list[bool] = field(default_factory=list)
    by_norm: dict[str, int] = field(default_factory=dict)
    by_slot: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    texts: Callable[[list[str]], dict[str, str]] | None = None   # note id -> content, for relators

    @classmethod
    def load(cls, snap: NoteSnapshot) -> "NoteState":
        st = cls()
        dim = snap.vectors.shape[1] if snap.vectors.size else 0
        vec_of = {int(r): i for i, r in enumerate(snap.vector_rows)}
        st.vectors = np.zeros((max(16, snap.size * 2), dim), np.float32)
        for i in range(snap.size):
            vec = snap.vectors[vec_of[i]] if i in vec_of else None
            st._append(snap.ids[i], bool(snap.active[i]), snap.subjects[i], snap.slots[i], snap.values[i],
                       snap.norms[i], bool(snap.negated[i]), snap.entities[i],
                       int(snap.valid_from[i]) if snap.valid_from[i] != _I64_MIN else 0, vec)
        return st

    def __len__(self) -> int:
        return len(self.ids)

    def _append(self, note_id: str, active: bool, subject: str | None, slot: str | None, value: str | None,
                norm: str, negated: bool, entities: tuple[str, ...], valid_from: int, vec: np.ndarray | None) -> int:
        row = len(self.ids)
        self.ids.append(note_id)
        self.active.append(active)
        self.subjects.append(subject)
        self.slots.append(slot)
        self.values.append(value)
        self.norms.append(norm)
        self.negated.append(negated)
        self.entities.append(entities)
        self.valid_from.append(valid_from)
        if vec is not None and self.vectors.shape[1] == 0:
            self.vectors = np.zeros((max(16, self.vectors.shape[0]), len(vec)), np.float32)
        if row >= self.vectors.shape[0]:  # grow for rows without a vector too: rows stay aligned
            grown = np.zeros((max(16, row * 2), self.vectors.shape[1]), np.float32)
            grown[: self.vectors.shape[0]] = self.vectors
            self.vectors = grown
        if vec is not None:
            self.vectors[row] = vec
        self.has_vec.append(vec is not None)
        if active:
            self.by_norm[norm] = row
            if subject and slot:
                self.by_slot.setdefault((subject.lower(), slot), []).append(row)
        return row

    def deactivate(self, row: int) -> None:
        self.active[row] = False
        if self.by_norm.get(self.norms[row]) == row:
            del self.by_norm[self.norms[row]]
        if self.subjects[row] and self.slots[row]:
            rows = self.by_slot.get((self.subjects[row].lower(), self.slots[row]), [])  # type: ignore[union-attr]
            if row in rows:
                rows.remove(row)

    def similar(self, vec: np.ndarray | None, norm: str, k: int) -> list[tuple[int, float]]:
        """Most similar active notes: cosine with vectors, else token Jaccard."""
        n = len(self.ids)
        if n == 0:
            return []
        active = np.asarray(self.active, bool)
        if vec is not None and self.vectors.shape[1] == len(vec):
            sims = self.vectors[:n] @ vec
            sims = np.where(active & np.asarray(self.has_vec, bool), sims, -1.0)
        else:
            words = set(norm.split())
            sims = np.array([_jaccard(words, set(m.split())) if a else -1.0 for m, a in zip(self.norms, active)])
        top = np.argsort(-sims, kind="stable")[:k]
        return [(int(i), float(sims[i])) for i in top if sims[i] > 0]


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


_ASPECT = frozenset("anymore now longer every day days always never still again currently really not no "
                    "don't didn't doesn't isn't wasn't can't won't stopped quit".split())


def _claim_terms(norm: str) -> set[str]:
    """Content words of a statement without negation and aspect words, so that
    "i eat meat every day" and "i don't eat meat anymore" share their claim."""
    return {w for w in norm.split() if w not in STOPWORDS and w not in _ASPECT and len(w) > 1}


def _same_claim(a: str, b: str) -> bool:
    ta, tb = _claim_terms(a), _claim_terms(b)
    shared = len(ta & tb)
    return shared >= 2 and shared / min(len(ta), len(tb)) >= 0.6


def _numbers(text: str) -> tuple[str, ...]:
    return tuple(_NUM.findall(text))


def evolve(drafts: Sequence[NoteDraft], vectors: Sequence[np.ndarray | None], state: NoteState, write: NoteWrite,
           cfg: EvolveConfig = EvolveConfig(), relator: Relator | None = None) -> None:
    """Fold drafts into ``state`` and record every change in ``write``."""
    order = sorted(range(len(drafts)), key=lambda i: drafts[i].event_time)
    for i in order:
        _one(drafts[i], vectors[i], state, write, cfg, relator)


def _one(d: NoteDraft, vec: np.ndarray | None, st: NoteState, write: NoteWrite, cfg: EvolveConfig,
         relator: Relator | None) -> None:
    if d.quotes is not None:
        write.quoted.append(d.quotes)
    when = d.valid_from or d.event_time
    subject = (d.subject or "").lower()
    similar = st.similar(vec, d.norm, 8)
    relations: list[Relation] = []
    # 1. duplicates
    dup = st.by_norm.get(d.norm)
    if dup is None and d.slot and subject:
        dup = next((r for r in st.by_slot.get((subject, d.slot), []) if st.values[r] == d.value), None)
    if dup is None and vec is not None:
        for row, cos in similar:
            if (cos >= cfg.dup_cos and (st.subjects[row] or "").lower() == subject
                    and st.negated[row] == d.negated and _numbers(st.norms[row]) == _numbers(d.norm)):
                dup = row
                break
    if dup is not None:
        _merge(d, dup, st, write, "same statement" if st.norms[dup] == d.norm else "same fact")
        return
    # 2./3. updates and contradictions
    if relator is not None and similar:
        rows = [row for row, _ in similar[:5]]
        texts = st.texts([st.ids[r] for r in rows]) if st.texts is not None else {}
        relations = relator.relate(d, [(r, st.ids[r], texts.get(st.ids[r], "")) for r in rows])
        dup_rel = next((r for r in relations if r.kind == "duplicate"), None)
        if dup_rel is not None:
            _merge(d, dup_rel.target, st, write, dup_rel.reason or "judged the same fact")
            return
    else:
        if d.slot and subject:
            for row in list(st.by_slot.get((subject, d.slot), [])):
                if st.values[row] != d.value:
                    relations.append(Relation(row, "updates", f"{d.slot}: {st.values[row]} -> {d.value}"))
        if subject:
            for row, cos in similar:
                same_subject = (st.subjects[row] or "").lower() == subject
                if not same_subject or any(r.target == row for r in relations):
                    continue
                if st.negated[row] != d.negated and (cos >= cfg.update_cos or _same_claim(st.norms[row], d.norm)):
                    relations.append(Relation(row, "contradicts", "the same claim with the opposite polarity"))
                elif (cos >= cfg.update_cos and _numbers(d.norm) and _numbers(st.norms[row])
                      and _numbers(d.norm) != _numbers(st.norms[row])):
                    relations.append(Relation(row, "updates", f"numbers changed (cos {cos:.2f})"))
    # 4. the new note, its replacements and links
    note_id = new_note_id()
    superseded_by: str | None = None
    closes: list[tuple[int, Relation]] = []
    for rel in relations:
        if rel.kind in ("updates", "contradicts") and st.active[rel.target]:
            if st.valid_from[rel.target] > to_micros(when):
                superseded_by = st.ids[rel.target]     # the draft is the older statement
            else:
                closes.append((rel.target, rel))
    status = "active" if superseded_by is None else "superseded"
    row = st._append(note_id, status == "active", d.subject, d.slot, d.value, d.norm, d.negated, d.entities,
                     to_micros(when), vec)
    valid_to = None
    if superseded_by is not None:
        other = st.ids.index(superseded_by)
        valid_to = from_micros(st.valid_from[other])
    write.new.append(NewNote(
        id=note_id, content=d.content, source_keys=d.sources, context=d.context, keywords=d.keywords, tags=d.tags,
        entities=d.entities, subject=d.subject, slot=d.slot, value=d.value, norm=d.norm, negated=d.negated,
        importance=d.importance, valid_from=when, valid_to=valid_to, status=status, extractor=d.extractor,
        vector=vec,
    ))
    write.history.append((note_id, "created", {"content": d.content, "extractor": d.extractor,
                                               "sources": len(d.sources)}))
    if superseded_by is not None:
        write.updates.append((note_id, {"superseded_by": superseded_by}))
        write.links.append((superseded_by, note_id, "updates", "a later statement replaces this one"))
        write.history.append((note_id, "superseded", {"by": superseded_by, "reason": "older than a stored update"}))
    for target, rel in closes:
        st.deactivate(target)
        write.updates.append((st.ids[target], {"status": "superseded", "valid_to": when, "superseded_by": note_id}))
        write.links.append((note_id, st.ids[target], rel.kind, rel.reason))
        write.history.append((st.ids[target], "superseded" if rel.kind == "updates" else "contradicted",
                              {"by": note_id, "reason": rel.reason, "valid_to": when.isoformat()}))
    linked = {t for t, _ in closes}
    related = [r for r in relations if r.kind in ("related", "elaborates") and r.target not in linked]
    if relator is None:
        ents = {e.lower() for e in d.entities if e.lower() != subject}
        for other, cos in similar:
            if len(related) >= cfg.max_related:
                break
            if other in linked or other == row:
                continue
            shared = ents & {e.lower() for e in st.entities[other]}
            if cos >= cfg.related_cos or shared:
                why = f"similar (cos {cos:.2f})" if cos >= cfg.related_cos else f"both mention {sorted(shared)[0]}"
                related.append(Relation(other, "related", why))
    for rel in related[: cfg.max_related]:
        write.links.append((note_id, st.ids[rel.target], rel.kind, rel.reason))


def _merge(d: NoteDraft, row: int, st: NoteState, write: NoteWrite, reason: str) -> None:
    note_id = st.ids[row]
    for key in d.sources:
        write.add_sources.append((note_id, key))
    # No text: the merged statement's words are its source episode's, and deleting that
    # episode must not leave them in the kept note's history.
    write.history.append((note_id, "merged", {"reason": reason, "sources": len(d.sources),
                                              "at_event_time": d.event_time.isoformat()}))
