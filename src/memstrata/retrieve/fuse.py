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


def top_indexes(scores: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indexes of the ``n`` highest scores (ties broken by index), best first, over
    entries where ``mask`` is true and the score is positive."""
    valid = scores > 0 if mask is None else (scores > 0) & mask
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return idx
    order = np.lexsort((idx, -scores[idx]))
    return idx[order[:n]]
