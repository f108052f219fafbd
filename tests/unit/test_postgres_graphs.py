"""Per-tenant HNSW graphs of the PostgreSQL store (store/postgres_graphs.py), against a
real server: who gets one, what writes touch, half-built and erased graphs, two stores
on one database, and close while a build waits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from memstrata.store import EpisodeDraft, Tenant
from memstrata.store.postgres import PostgresStore
from memstrata.store.postgres_graphs import GRAPH_LOCK, graph_name

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
DIMS = 16
BIG = Tenant("ns 'quoted'", "o'big \"x\"")   # names go into the index predicate as literals
SMALL = Tenant("ns 'quoted'", "small")


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url)
    s.exact_below = 200
    yield s
    s.close()


def _add(store: PostgresStore, tenant: Tenant, n: int, rng: np.random.Generator, tag: str) -> np.ndarray:
    v = rng.standard_normal((n, DIMS)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    drafts = [EpisodeDraft(id=f"{tenant.user_id}-{tag}-{i}", session_id=tag, role="user", content=f"turn {i}",
                           event_time=T0 + timedelta(minutes=i), ingest_time=T0) for i in range(n)]
    store.add_episodes(tenant, drafts, v, "m", enqueue=False)
    return v


def _graph(url: str, tenant: Tenant) -> tuple[bool, int] | None:
    """(valid, size in bytes) of the tenant's graph, or None when it has none."""
    with psycopg.connect(url) as c:
        row = c.execute("SELECT i.indisvalid, pg_relation_size(c.oid) FROM pg_class c "
                        "JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = %s",
                        (graph_name(tenant, DIMS),)).fetchone()
    return None if row is None else (bool(row[0]), int(row[1]))


def test_only_a_tenant_past_exact_below_gets_a_graph_and_others_writes_stay_out_of_it(
        store: PostgresStore, pg_url: str) -> None:
    rng = np.random.default_rng(1)
    for batch in range(3):  # 150 vectors: under exact_below, no graph
        _add(store, BIG, 50, rng, f"a{batch}")
    _add(store, SMALL, 100, rng, "s0")
    assert store.wait_indexes(60)
    assert _graph(pg_url, BIG) is None and _graph(pg_url, SMALL) is None
    _add(store, BIG, 60, rng, "a3")  # 210: past it; the write queues a build
    assert store.wait_indexes(60)
    valid, size = _graph(pg_url, BIG)  # type: ignore[misc]
    assert valid and _graph(pg_url, SMALL) is None and store.graph_counts["built"] == 1
    for batch in range(10):  # 1,000 more vectors of the small tenant (now 1,100: it would get one)
        _add(store, SMALL, 100, rng, f"s{batch + 1}")
    assert _graph(pg_url, BIG) == (True, size)  # none of them went into the big tenant's graph
    _add(store, BIG, 1000, rng, "a4")
    assert _graph(pg_url, BIG)[1] > size  # type: ignore[index]  # its own writes do
    q = rng.standard_normal(DIMS).astype(np.float32)
    q /= np.linalg.norm(q)
    found = store.dense_turns(BIG, q, "m", limit=10)
    assert store.dense_counts["hnsw"] == 1 and found is not None and len(found) == 10
    keys = [int(k) for k in store.snapshot(BIG, "m").keys]
    assert {k for k, _ in found} <= set(keys)  # the graph holds this tenant's rows only


def test_a_graph_left_invalid_by_a_stopped_build_is_dropped_and_built_again(store: PostgresStore,
                                                                            pg_url: str) -> None:
    rng = np.random.default_rng(2)
    _add(store, BIG, 250, rng, "a")
    assert store.wait_indexes(60) and _graph(pg_url, BIG) == (True, _graph(pg_url, BIG)[1])  # type: ignore[index]
    with psycopg.connect(pg_url, autocommit=True) as c:  # what a crash half-way through CONCURRENTLY leaves
        c.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
                  (graph_name(BIG, DIMS),))
    other = PostgresStore(pg_url)  # a process that has not seen it valid
    try:
        other.exact_below = 200
        q = np.ones(DIMS, np.float32) / np.sqrt(DIMS)
        assert len(other.dense_turns(BIG, q, "m", limit=5) or []) == 5  # exact meanwhile
        assert other.dense_counts == {"exact": 1}
        assert other.wait_indexes(60)
        assert other.graph_counts["invalid_dropped"] == 1 and other.graph_counts["built"] == 1
        assert _graph(pg_url, BIG)[0]  # type: ignore[index]
        other.dense_turns(BIG, q, "m", limit=5)
        assert other.dense_counts["hnsw"] == 1
    finally:
        other.close()


def test_erase_drops_the_tenants_graph_and_no_other(store: PostgresStore, pg_url: str) -> None:
    rng = np.random.default_rng(3)
    other = Tenant("ns 'quoted'", "other")
    _add(store, BIG, 250, rng, "a")
    _add(store, other, 250, rng, "b")
    assert store.wait_indexes(60)
    assert _graph(pg_url, BIG) is not None and _graph(pg_url, other) is not None
    store.erase_tenant(BIG)
    assert store.wait_indexes(60)
    assert _graph(pg_url, BIG) is None and _graph(pg_url, other) is not None
    assert store.graph_counts["dropped"] == 1
    _add(store, BIG, 250, rng, "c")  # the same user again, from nothing: a new graph
    assert store.wait_indexes(60) and _graph(pg_url, BIG) is not None


def test_two_stores_on_one_database_build_one_graph(store: PostgresStore, pg_url: str) -> None:
    rng = np.random.default_rng(4)
    other = PostgresStore(pg_url)
    try:
        other.exact_below = 200
        _add(store, BIG, 250, rng, "a")
        q = np.ones(DIMS, np.float32) / np.sqrt(DIMS)
        other.dense_turns(BIG, q, "m", limit=5)  # the other process finds it missing too
        assert store.wait_indexes(60) and other.wait_indexes(60)
        assert store.graph_counts["built"] + other.graph_counts["built"] == 1
        with psycopg.connect(pg_url) as c:
            assert c.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'embeddings' "
                             "AND indexname LIKE 'embeddings\\_g\\_%'").fetchone()[0] == 1
        other.dense_turns(BIG, q, "m", limit=5)
        assert other.dense_counts["hnsw"] == 1
    finally:
        other.close()


def test_close_lets_a_queued_build_finish(pg_url: str) -> None:
    """A short-lived process (one CLI command) that queued a graph waits for it on close
    (up to graph_close_wait_s) rather than leaving a half-built index to the next."""
    store = PostgresStore(pg_url)
    store.exact_below = 200
    _add(store, BIG, 250, np.random.default_rng(6), "a")
    store.close()
    assert _graph(pg_url, BIG) is not None and _graph(pg_url, BIG)[0]  # type: ignore[index]


def test_close_stops_a_build_that_waits_and_leaves_no_graph(store: PostgresStore, pg_url: str) -> None:
    rng = np.random.default_rng(5)
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (GRAPH_LOCK,))  # another process is building
        _add(store, BIG, 250, rng, "a")
        assert store.wait_indexes(0.5) is False  # queued behind the lock
        store.graph_close_wait_s = 0.5
        store.close()
        thread = store._graph_thread
        assert thread is None or not thread.is_alive()
        assert _graph(pg_url, BIG) is None
    again = PostgresStore(pg_url)  # the next process that needs it builds it
    try:
        again.exact_below = 200
        again.dense_turns(BIG, np.ones(DIMS, np.float32) / np.sqrt(DIMS), "m", limit=5)
        assert again.wait_indexes(60) and _graph(pg_url, BIG) is not None
    finally:
        again.close()


def test_search_keeps_walking_the_graph_after_many_queries_on_one_connection(pg_url: str) -> None:
    """The graph is used by the plan, query after query: a prepared statement's generic
    plan (psycopg prepares after 5 runs, the server goes generic 5 runs later) cannot
    prove the tenant filter implies the graph's predicate and scans exactly instead.
    Counted by the server: the graph index's own scan count."""
    store = PostgresStore(pg_url, max_size=1)  # one connection: one backend, one plan cache
    try:
        store.exact_below, store.ef_search = 200, 40
        rng = np.random.default_rng(7)
        for batch in range(6):
            _add(store, BIG, 500, rng, f"a{batch}")
        assert store.wait_indexes(60)
        name = graph_name(BIG, DIMS)
        for q in rng.standard_normal((15, DIMS)).astype(np.float32):
            assert len(store.dense_turns(BIG, q / np.linalg.norm(q), "m", limit=10) or []) == 10
        assert store.dense_counts["hnsw"] == 15
        with store._read() as cur:  # the same backend: flush its statistics when this ends
            cur.execute("SELECT pg_stat_force_next_flush()")
        with psycopg.connect(pg_url) as c:
            scans = c.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s",
                              (name,)).fetchone()[0]
        assert scans == 15
    finally:
        store.close()


def test_build_indexes_command_builds_the_graphs_an_upgrade_dropped(pg_url: str) -> None:
    """After migration 3 drops the shared graph of schema version 2, large users have no
    graph until something builds one; `memstrata build-indexes` does it at once."""
    import os
    import subprocess
    import sys

    store = PostgresStore(pg_url)
    rng = np.random.default_rng(8)
    for batch in range(21):  # 21,000 vectors: past the default exact_below (20,000)
        _add(store, BIG, 1000, rng, f"a{batch}")
    store.close()  # (waits for the graph it queued)
    with psycopg.connect(pg_url, autocommit=True) as c:  # what an upgraded store starts with
        c.execute(f'DROP INDEX "{graph_name(BIG, DIMS)}"')
    assert _graph(pg_url, BIG) is None
    env = {**os.environ, "MEMSTRATA_STORE_URL": pg_url}
    proc = subprocess.run([sys.executable, "-m", "memstrata", "build-indexes", "--json"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["seconds"] >= 0
    assert _graph(pg_url, BIG) is not None and _graph(pg_url, BIG)[0]  # type: ignore[index]


def test_migration_3_drops_the_shared_graph_of_version_2_and_nothing_else(pg_url: str) -> None:
    """A store at schema version 2 had one HNSW index per dimension over every tenant
    (embeddings_hnsw_<dims>); opening it with this code drops that one (every insert paid
    for it) and keeps every other index, and its data."""
    store = PostgresStore(pg_url)
    _add(store, BIG, 50, np.random.default_rng(9), "a")
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as c:  # back to what version 2 left
        c.execute(f"CREATE INDEX embeddings_hnsw_{DIMS} ON embeddings USING hnsw "
                  f"((vec::halfvec({DIMS})) halfvec_cosine_ops) WHERE dims = {DIMS}")
        c.execute("CREATE INDEX embeddingsxhnswx1 ON embeddings (dims)")  # LIKE's _ must not match this
        c.execute("UPDATE schema_version SET version = 2")
        before = {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")}
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url) as c:
        after = {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")}
        assert c.execute("SELECT max(version) FROM schema_version").fetchone()[0] >= 3
        assert c.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 50
        c.execute("DROP INDEX embeddingsxhnswx1")
    assert before - after == {f"embeddings_hnsw_{DIMS}"} and "embeddingsxhnswx1" in after
