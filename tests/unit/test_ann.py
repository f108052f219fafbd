"""The IVF index of large tenants (retrieve/ann.py): recall against exact search, kept in
step with writes and deletes by key (no rebuild per write), built off the search path,
dropped on erasure; and the Memory-level search through it on both stores (a real
SQLite file; a real PostgreSQL, where the index is built from vectors the store sends
and takes over from the server's HNSW once ready)."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from memstrata import Memory
from memstrata.bench.perf import ComposedEmbedder
from memstrata.config import MemoryConfig, NotesConfig, RetrievalConfig
from memstrata.errors import ConfigError
from memstrata.retrieve import ann
from memstrata.retrieve.search import Retriever
from memstrata.store.base import Snapshot, Tenant

DIM = 32
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _clustered(n: int, seed: int = 0, centres: int = 40) -> np.ndarray:
    """Unit vectors around 40 fixed random centres (the shape of real embeddings: topics);
    ``seed`` draws other points around the same centres (queries about the same topics)."""
    c = np.random.default_rng(99).normal(size=(centres, DIM))
    rng = np.random.default_rng(seed)
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _snap(keys: np.ndarray, vectors: np.ndarray, revision: int) -> SimpleNamespace:
    """What TurnIndex reads of a store Snapshot."""
    return SimpleNamespace(keys=keys, vector_rows=np.arange(len(keys)), vectors=vectors, revision=revision)


def _exact(vectors: np.ndarray, keys: np.ndarray, q: np.ndarray, k: int) -> set[int]:
    return set(keys[np.argsort(-(vectors @ q), kind="stable")[:k]].tolist())


def test_ivf_finds_the_exact_top_ten_and_scans_a_small_share() -> None:
    x = _clustered(20_000)
    keys = np.arange(20_000, dtype=np.int64) * 3 + 5
    index = ann.TurnIndex(keys, x, revision=1)
    assert len(index.centroids) == ann.n_lists(20_000) == 283
    queries = _clustered(50, seed=1)
    recall = np.mean([len(set(index.search(q, 10, 0.03)[0].tolist()) & _exact(x, keys, q, 10)) / 10
                      for q in queries])
    assert recall >= 0.95
    found, sims = index.search(queries[0], 10, 0.03)
    assert np.all(np.diff(sims) <= 0)                                  # best first
    np.testing.assert_allclose(sims, x[(found - 5) // 3] @ queries[0], rtol=1e-5)  # true cosines
    # Probing every list is the exact search.
    assert set(index.search(queries[0], 10, 1.0)[0].tolist()) == _exact(x, keys, queries[0], 10)


def test_sync_adds_new_turns_to_the_tail_counts_the_dead_and_ignores_older_snapshots() -> None:
    x = _clustered(3_000)
    keys = np.arange(3_000, dtype=np.int64)
    index = ann.TurnIndex(keys, x, revision=1)
    extra = _clustered(10, seed=7)
    grown = _snap(np.concatenate([keys[5:], np.arange(5_000, 5_010)]), np.concatenate([x[5:], extra]), 2)
    index.sync_snapshot(grown)
    assert (len(index), index.dead, len(index.tail_keys), index.revision) == (3_005, 5, 10, 2)
    for i, q in enumerate(extra):  # a new turn is its own nearest neighbour at once
        assert index.search(q, 1, 0.03)[0][0] == 5_000 + i
    index.sync_snapshot(_snap(keys, x, 1))  # an older snapshot (a search that raced a write): no change
    assert (len(index), index.revision) == (3_005, 2)
    assert index.stale_share == pytest.approx(15 / 3_000)


def _memory(path: Path | str, n: int, *, ann_min: int) -> tuple[Memory, ComposedEmbedder, list[str], np.ndarray]:
    emb = ComposedEmbedder(DIM)
    vectors = _clustered(n, seed=3)
    texts = [f"turn number {i}" for i in range(n)]
    emb.register(texts, vectors)
    cfg = MemoryConfig(notes=NotesConfig(enabled=False), retrieval=RetrievalConfig(ann_min_vectors=ann_min))
    mem = Memory(path, config=cfg, embedder=emb)
    ids: list[str] = []
    for s in range(0, n, 20):
        stored = mem.add([{"role": "user", "content": t} for t in texts[s:s + 20]], user_id="big",
                         session_id=f"s{s // 20}", timestamp=T0 + timedelta(days=s // 20))
        ids += [e.id for e in stored]
    return mem, emb, ids, vectors


def test_a_large_tenant_is_searched_through_its_index_kept_in_step_with_writes(store_url: str) -> None:
    mem, emb, ids, vectors = _memory(store_url, 2_000, ann_min=1_000)
    tenant = Tenant(mem.config.namespace, "big")
    r = mem._retriever
    exact_cfg = RetrievalConfig(ann_min_vectors=0)
    queries = _clustered(20, seed=11)
    # The first search starts the build in the background and is answered without it
    # (SQLite: exact scan; PostgreSQL: the server's own index).
    first = r.dense_candidates(tenant, queries[0], 10)
    assert first == r.dense_candidates(tenant, queries[0], 10, exact_cfg)
    assert r.prepare(tenant, timeout=60) is True
    index = r._graphs[tenant]
    hits = [len({i for i, _ in r.dense_candidates(tenant, q, 10)}
                & {i for i, _ in r.dense_candidates(tenant, q, 10, exact_cfg)}) / 10 for q in queries]
    assert np.mean(hits) >= 0.95
    # A write: the new turn is found through the same index object (tail), no rebuild.
    emb.register(["a brand new turn"], queries[:1])
    new = mem.add("a brand new turn", user_id="big", session_id="late", timestamp=T0 + timedelta(days=400))[0]
    assert r.dense_candidates(tenant, queries[0], 1)[0][0] == new.id
    assert r._graphs[tenant] is index and len(index.tail_keys) == 1
    # A delete: the turn is never returned again, though its key is still in the index.
    gone = r.dense_candidates(tenant, vectors[7], 1)[0][0]
    assert gone == ids[7]
    mem.delete(gone, user_id="big")
    found = [i for i, _ in r.dense_candidates(tenant, vectors[7], 10)]
    assert gone not in found and len(found) == 10 and index.dead == 1
    # Hybrid search with a time window uses the index and keeps to the window.
    hits = mem.search("turn number 42", user_id="big", k=10, start=T0 + timedelta(days=10),
                      end=T0 + timedelta(days=20))
    assert hits and all(T0 + timedelta(days=10) <= h.event_time < T0 + timedelta(days=20) for h in hits)
    # Erasure drops the index with the tenant's other caches.
    mem.erase(user_id="big")
    assert tenant not in r._graphs
    mem.close()


def test_many_deletes_rebuild_the_index_in_the_background_and_small_tenants_never_get_one(store_url: str) -> None:
    mem, emb, ids, vectors = _memory(store_url, 1_600, ann_min=1_000)
    tenant = Tenant(mem.config.namespace, "big")
    r = mem._retriever
    assert r.prepare(tenant, timeout=60)
    first = r._graphs[tenant]
    mem.delete(ids[:200], user_id="big")             # 1/8 of the index dead: over REBUILD_SHARE
    r.dense_candidates(tenant, vectors[300], 10)     # syncs, starts the rebuild, answers meanwhile
    assert r.prepare(tenant, timeout=60)
    rebuilt = r._graphs[tenant]
    assert rebuilt is not first and rebuilt.dead == 0 and len(rebuilt) == 1_400
    assert r.dense_candidates(tenant, vectors[300], 1)[0][0] == ids[300]
    emb.register(["tiny"], vectors[:1])
    mem.add("tiny", user_id="small")
    assert r.prepare(Tenant(mem.config.namespace, "small")) is False and Tenant(mem.config.namespace, "small") \
        not in r._graphs
    mem.close()


def _big_tenant_snapshot(path: Path) -> tuple[Memory, Tenant, Retriever, Snapshot]:
    """A store whose tenant "big" is past the index's threshold, and its snapshot (for
    calling the background build by hand)."""
    mem, _, _, _ = _memory(path, 1_200, ann_min=1_000)
    tenant = Tenant(mem.config.namespace, "big")
    return mem, tenant, mem._retriever, mem._retriever.index(tenant).snap


def test_a_build_finishing_after_an_erase_is_discarded(tmp_path: Path) -> None:
    mem, tenant, r, snap = _big_tenant_snapshot(tmp_path / "m.db")
    generation = r._forgotten
    r.forget(tenant)                                 # the erase happens while the build runs
    r._build_ann(tenant, snap, generation)
    assert tenant not in r._graphs
    mem.close()


def test_a_failed_build_leaves_searches_on_the_exact_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mem, tenant, r, snap = _big_tenant_snapshot(tmp_path / "m.db")
    no_vectors = dataclasses.replace(snap, vectors=np.zeros((0, 0), np.float32), vector_rows=np.zeros(0, np.int64))
    mem.store.close()            # the index would be read from a store that is gone
    r._build_ann(tenant, no_vectors, r._forgotten)   # logs, does not raise
    assert tenant not in r._graphs and tenant not in r._graph_jobs
    assert caplog.text.count("ANN index build for a tenant failed") == 1
    # The next searches do not start another build (and log again) until a minute passed.
    def failures(expected: int) -> int:
        for _ in range(50):  # a build runs in a thread of its own
            if caplog.text.count("ANN index build for a tenant failed") >= expected:
                break
            time.sleep(0.02)
        return caplog.text.count("ANN index build for a tenant failed")

    idx = SimpleNamespace(snap=no_vectors)  # _ann reads only the index's snapshot
    assert r._ann(tenant, idx, r.config) is None and failures(2) == 1
    r._ann_failed[tenant] -= 61.0
    assert r._ann(tenant, idx, r.config) is None and failures(2) == 2  # retried, failed again
    mem.close()


def test_ann_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="ann_probe"):
        RetrievalConfig(ann_probe=0)
    with pytest.raises(ConfigError, match="ann_min_vectors"):
        RetrievalConfig(ann_min_vectors=-1)
