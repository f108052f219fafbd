"""Retrieval metrics, written to match the reference evaluation code of the benchmarks.

LongMemEval (Wu et al., ICLR 2025, ``src/retrieval/eval_utils.py``): recall_any@k,
recall_all@k and NDCG with binary relevance, where DCG adds rel[0] undiscounted and
rel[i] / log2(i + 1) for the 0-based positions i >= 1.
LoCoMo (Maharana et al., ACL 2024): evidence recall@k = share of a question's evidence
turns found among the top k.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence


def recall_any(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return float(any(r in relevant for r in ranked[:k]))


def recall_all(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return float(relevant.issubset(set(ranked[:k])))


def recall_fraction(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def _dcg(relevances: Sequence[float], k: int) -> float:
    rel = list(relevances)[:k]
    if not rel:
        return 0.0
    return rel[0] + sum(r / math.log2(i + 1) for i, r in enumerate(rel[1:], start=1) if r)


def ndcg(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """NDCG@k with binary relevance, as LongMemEval computes it (ideal = all relevant first)."""
    actual = _dcg([1.0 if r in relevant else 0.0 for r in ranked], k)
    ideal = _dcg([1.0] * len(relevant), k)
    return actual / ideal if ideal > 0 else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: object) -> str:
    """SQuAD-style normalisation: lowercase, punctuation and articles removed, spaces squeezed."""
    s = str(text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def answer_in(answer: object, context: str) -> bool:
    """Whether the normalised gold answer occurs in the normalised context (word-aligned)."""
    gold = normalize_answer(answer)
    if not gold:
        return False
    return f" {gold} " in f" {normalize_answer(context)} "
