"""Fusion math, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from memstrata.config import RetrievalConfig
from memstrata.errors import ConfigError
from memstrata.retrieve.fuse import group_best, relative, rrf, top_indexes


def test_rrf_matches_the_formula() -> None:
    scores = rrf(4, [(np.array([2, 0]), 1.0), (np.array([0, 3]), 0.5)], k=60)
    assert scores[0] == pytest.approx(1 / 62 + 0.5 / 61)
    assert scores[2] == pytest.approx(1 / 61)
    assert scores[3] == pytest.approx(0.5 / 62)
    assert scores[1] == 0


def test_relative_keeps_margins_that_rrf_loses() -> None:
    # one list is decisive for item 0; two others mildly prefer item 1
    lists = [(np.array([0, 1]), np.array([10.0, 1.0]), 1.0),
             (np.array([1, 0]), np.array([0.50, 0.49]), 1.0),
             (np.array([1, 0]), np.array([0.50, 0.49]), 1.0)]
    rel = relative(2, lists)
    assert rel[0] > rel[1]
    assert rel[0] == pytest.approx(1.0 + 0.98 + 0.98, abs=1e-6)
    ranks = rrf(2, [(ids, w) for ids, _, w in lists], k=60)
    assert ranks[1] > ranks[0]


def test_relative_clips_negative_similarities() -> None:
    out = relative(3, [(np.array([0, 1, 2]), np.array([0.5, 0.25, -0.2]), 2.0)])
    assert out[0] == pytest.approx(2.0, abs=1e-6) and out[1] == pytest.approx(1.0, abs=1e-6)
    assert out[2] == pytest.approx(0.0, abs=1e-6)


def test_group_best_and_top_indexes() -> None:
    groups, best = group_best(np.array([2, 0, 2, 1]), np.array([0.1, 0.9, 0.8, 0.3]), 3)
    assert list(groups) == [0, 2, 1] and list(best) == [0.9, 0.8, 0.3]
    assert list(top_indexes(np.array([0.2, 0.0, 0.9, 0.5]), 2)) == [2, 3]
    assert list(top_indexes(np.array([0.2, 0.0, 0.9, 0.5]), 5, np.array([1, 1, 0, 1], bool))) == [3, 0]


def test_variant_strings() -> None:
    cfg = RetrievalConfig.preset("hybrid:fusion=rrf,neighbor_weight=0,time_mode=filter,weights=1/0/1/0")
    assert (cfg.fusion, cfg.neighbor_weight, cfg.time_mode, cfg.weights) == ("rrf", 0.0, "filter", (1.0, 0.0, 1.0, 0.0))
    for bad, msg in (("hybrid:colour=red", "unknown retrieval setting"), ("hybrid:rrf_k=x", "not a valid int"),
                     ("hybrid:fusion=max", "fusion must be"), ("hybrid:nokey", "key=value"),
                     ("bm25:lexical=false", "no retriever")):
        with pytest.raises(ConfigError, match=msg):
            RetrievalConfig.preset(bad)
