"""Rows -> records, shared by the stores: both read the same columns in the same order
(``note_snapshot``'s three queries), so turning them into arrays is written once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..model import Episode
from ..timeutil import from_micros
from .base import NoteSnapshot

_I64_MIN = np.iinfo(np.int64).min
_I64_MAX = np.iinfo(np.int64).max


def episode(row: Sequence[Any]) -> Episode:
    """(key, id, namespace, user_id, agent_id, session_id, position, role, speaker, content,
    event_time, ingest_time, metadata, written_by) -> Episode."""
    return Episode(
        id=row[1], namespace=row[2], user_id=row[3], agent_id=row[4], session_id=row[5],
        position=int(row[6]), role=row[7], speaker=row[8], content=row[9],
        event_time=from_micros(row[10]), ingest_time=from_micros(row[11]), metadata=json.loads(row[12]),
        written_by=row[13],
    )


def note_snapshot(revision: int, rows: Sequence[Sequence[Any]], src: Sequence[Sequence[Any]],
                  links: Sequence[Sequence[Any]]) -> NoteSnapshot:
    """``rows``: (key, id, status, valid_from, valid_to, importance, recall_count,
    reinforced, subject, slot, value, norm, negated, entities, keywords, vector bytes or
    None) in key order; ``src``: (note key, episode key) ordered; ``links``: (source key,
    target key, kind)."""
    n = len(rows)
    keys = np.fromiter((r[0] for r in rows), np.int64, n)
    row_of = {int(k): i for i, k in enumerate(keys)}
    counts = np.zeros(n + 1, np.int64)
    for note_key, _ in src:
        counts[row_of[note_key] + 1] += 1
    vec_rows = [i for i, r in enumerate(rows) if r[15] is not None]
    if vec_rows:
        vectors = np.frombuffer(b"".join(bytes(rows[i][15]) for i in vec_rows), np.float16).reshape(
            len(vec_rows), -1).astype(np.float32)
    else:
        vectors = np.zeros((0, 0), np.float32)
    link_pairs = [(row_of[s], row_of[t]) for s, t, _ in links if s in row_of and t in row_of]
    return NoteSnapshot(
        revision=revision,
        keys=keys,
        ids=tuple(r[1] for r in rows),
        active=np.fromiter((r[2] == "active" for r in rows), bool, n),
        valid_from=np.fromiter((_I64_MIN if r[3] is None else r[3] for r in rows), np.int64, n),
        valid_to=np.fromiter((_I64_MAX if r[4] is None else r[4] for r in rows), np.int64, n),
        importance=np.fromiter((r[5] for r in rows), np.float64, n),
        recall_count=np.fromiter((r[6] for r in rows), np.int64, n),
        reinforced=np.fromiter((0 if r[7] is None else r[7] for r in rows), np.int64, n),
        subjects=tuple(r[8] for r in rows),
        slots=tuple(r[9] for r in rows),
        values=tuple(r[10] for r in rows),
        norms=tuple(r[11] for r in rows),
        negated=np.fromiter((bool(r[12]) for r in rows), bool, n),
        entities=tuple(tuple(json.loads(r[13])) for r in rows),
        keywords=tuple(tuple(r[14].split()) for r in rows),
        source_ptr=np.cumsum(counts),
        source_keys=np.fromiter((e for _, e in src), np.int64, len(src)),
        vectors=vectors,
        vector_rows=np.asarray(vec_rows, np.int64),
        links=np.asarray(link_pairs, np.int64).reshape(-1, 2),
        link_kinds=tuple(k for s, t, k in links if s in row_of and t in row_of),
    )


QUOTE_MARK = " (asked: "  # semantic/extract.py ends an answer's rule notes with " (asked: <question>)"


def unquoted(content: str) -> str:
    """A rule note's content without the question it quotes (cut when that question's
    turn is deleted)."""
    i = content.rfind(QUOTE_MARK)
    return content[:i] if i >= 0 else content
