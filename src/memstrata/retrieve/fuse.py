"""Rank fusion. Pure numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rrf(size: int, ranked: Sequence[tuple[np.ndarray, float]], k: int) -> np.ndarray:
    """Reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009):
    score(d) = sum over lists of weight / (k + rank(d)), ranks starting at 1.

    ``ranked`` holds (indexes best-first, weight) pairs over a space of ``size`` items;
    items absent from a list get nothing from it."""
    scores = np.zeros(size, dtype=np.float64)
    for order, weight in ranked:
        if weight == 0 or len(order) == 0:
            continue
        scores[order] += weight / (k + np.arange(1, len(order) + 1, dtype=np.float64))
    return scores


def relative(size: int, lists: Sequence[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """Relative score fusion: each list's scores divided by its best one (negatives clipped
    to 0), weighted and summed. Unlike RRF it keeps *how much* better a candidate is, so
    one decisive match is not outvoted by several lukewarm ones. Dividing by the best
    rather than min-max scaling (Weaviate's relativeScoreFusion) keeps the last of a
    short list from scoring zero; measured slightly better on both dev sets.
    ``lists`` holds (indexes, scores, weight)."""
    fused = np.zeros(size, dtype=np.float64)
    for idx, scores, weight in lists:
        if weight == 0 or len(idx) == 0:
            continue
        s = np.asarray(scores, dtype=np.float64)
        top = s.max()
        norm = np.clip(s, 0, None) / top if top > 0 else np.ones_like(s)
        np.add.at(fused, idx, weight * (norm + 1e-9))
    return fused


def group_best(groups: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, best score in each) for a scored list of members, best first."""
    best = np.full(n, -np.inf)
    np.maximum.at(best, groups, scores)
    ids = np.flatnonzero(np.isfinite(best))
    order = np.argsort(-best[ids], kind="stable")
    return ids[order], best[ids][order]


def top_indexes(scores: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indexes of the ``n`` highest scores (ties broken by index), best first, over
    entries where ``mask`` is true and the score is positive."""
    valid = scores > 0 if mask is None else (scores > 0) & mask
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return idx
    if len(idx) > 4 * n > 0:
        # Keep every entry scoring at least the n-th best (ties included, so the result
        # is exactly the full sort's), then sort only those: O(len) instead of a sort.
        kth = np.partition(scores[idx], len(idx) - n)[len(idx) - n]
        idx = idx[scores[idx] >= kth]
    order = np.lexsort((idx, -scores[idx]))
    return idx[order[:n]]
