"""The Store contract: every backend must pass these (one fixture, parametrized).

SQLite runs on a file per test; PostgreSQL on a fresh database per test of a real server
the suite starts itself (tests/pg.py). A new backend is added to STORES and must pass
unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from memstrata.errors import StoreError
from memstrata.store import EpisodeDraft, SQLiteStore, Store, Tenant, open_store

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
A = Tenant("ns", "alice")
B = Tenant("ns", "bob")
A_OTHER_NS = Tenant("other", "alice")

STORES = ["sqlite", "postgres"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s: Store = SQLiteStore(tmp_path / "contract.db")
    else:
        s = open_store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def draft(content: str, *, session: str = "s1", minutes: int = 0, role: str = "user",
          id: str | None = None, position: int | None = None) -> EpisodeDraft:
    import uuid

    return EpisodeDraft(id=id or uuid.uuid4().hex, session_id=session, role=role, content=content,
                        event_time=T0 + timedelta(minutes=minutes), ingest_time=T0, position=position)


def turn_vectors(store: Store, tenant: Tenant, model_id: str, dims: int) -> np.ndarray:
    """The tenant's turn vectors of ``model_id`` in (session, position) order: from the
    snapshot for a store without a vector index, else from export_rows (a store that
    searches in place leaves them out of the snapshot)."""
    if store.dense_turns(tenant, np.ones(dims, np.float32) / np.sqrt(dims), model_id, limit=1) is None:
        return store.snapshot(tenant, model_id).vectors.reshape(-1, dims)
    return np.array([v for _, v, m in store.export_rows(tenant) if m == model_id], np.float32).reshape(-1, dims)


def test_add_then_get_round_trips_every_field(store: Store) -> None:
    d = EpisodeDraft(id="e1", session_id="s1", role="assistant", content="héllo wörld ✓", event_time=T0,
                     ingest_time=T0 + timedelta(seconds=1), speaker="Bot", agent_id="agent-7",
                     metadata={"k": [1, 2, {"x": None}]})
    store.add_episodes(A, [d])
    ep = store.get_episode(A, "e1")
    assert ep is not None
    assert (ep.content, ep.role, ep.speaker, ep.agent_id, ep.session_id) == ("héllo wörld ✓", "assistant", "Bot", "agent-7", "s1")
    assert ep.event_time == T0 and ep.ingest_time == T0 + timedelta(seconds=1)
    assert ep.metadata == {"k": [1, 2, {"x": None}]}
    assert ep.position == 0


def test_positions_append_within_a_session_across_calls(store: Store) -> None:
    store.add_episodes(A, [draft("one"), draft("two")])
    store.add_episodes(A, [draft("three")])
    store.add_episodes(A, [draft("other", session="s2")])
    eps = store.list_episodes(A, session_id="s1")
    assert [(e.content, e.position) for e in eps] == [("one", 0), ("two", 1), ("three", 2)]
    sessions = {s.session_id: s.n_episodes for s in store.list_sessions(A)}
    assert sessions == {"s1": 3, "s2": 1}


def test_failed_add_stores_nothing(store: Store) -> None:
    store.add_episodes(A, [draft("kept", id="dup")])
    before = store.revision(A)
    with pytest.raises(StoreError):
        store.add_episodes(A, [draft("new one"), draft("clash", id="dup")])
    assert [e.content for e in store.list_episodes(A)] == ["kept"]
    assert store.lexical_turns(A, ["new"], limit=10) == []
    assert store.revision(A) == before


def test_tenants_never_see_each_other(store: Store) -> None:
    a = store.add_episodes(A, [draft("alpha secret pineapple")])[0]
    store.add_episodes(B, [draft("bravo secret pineapple")])
    store.add_episodes(A_OTHER_NS, [draft("charlie secret pineapple")])
    assert store.get_episode(B, a.id) is None
    assert store.get_episode(A_OTHER_NS, a.id) is None
    for tenant, word in ((A, "alpha"), (B, "bravo"), (A_OTHER_NS, "charlie")):
        hits = store.lexical_turns(tenant, ["pineapple"], limit=10)
        assert len(hits) == 1
        found = store.episodes_by_keys(tenant, [k for k, _ in hits])
        assert [e.content.split()[0] for e in found.values()] == [word]
        assert [e.content.split()[0] for e in store.list_episodes(tenant)] == [word]
        assert len(store.lexical_sessions(tenant, ["pineapple"], limit=10)) == 1
        assert store.snapshot(tenant, None).size == 1
        assert [e.content.split()[0] for e, _, _ in store.export_rows(tenant)] == [word]
        assert store.stats(tenant).episodes == 1
    # keys of another tenant resolve to nothing
    b_keys = [k for k, _ in store.lexical_turns(B, ["pineapple"], limit=10)]
    assert store.episodes_by_keys(A, b_keys) == {}
    # deleting another tenant's id is a no-op
    assert store.delete_episodes(B, [a.id]) == 0
    assert store.get_episode(A, a.id) is not None
    assert store.neighbours(B, a.id) == []


def test_delete_removes_from_every_index(store: Store) -> None:
    vecs = np.eye(2, 8, dtype=np.float32)
    eps = store.add_episodes(A, [draft("apple pie recipe"), draft("banana bread recipe")], vecs, "m1")
    rev = store.revision(A)
    assert store.delete_episodes(A, [eps[0].id]) == 1
    assert store.revision(A) != rev
    assert store.get_episode(A, eps[0].id) is None
    assert store.lexical_turns(A, ["apple"], limit=10) == []
    assert [k for k, _ in store.lexical_sessions(A, ["apple"], limit=10)] == []
    snap = store.snapshot(A, "m1")
    assert snap.size == 1 and turn_vectors(store, A, "m1", 8).shape == (1, 8)
    assert store.stats(A).embedded_episodes == 1


def test_erase_removes_the_tenant_only(store: Store) -> None:
    store.add_episodes(A, [draft("apple"), draft("pear", session="s2")], np.ones((2, 4), np.float32), "m")
    store.add_episodes(B, [draft("apple")])
    assert store.erase_tenant(A) == 2
    assert store.list_episodes(A) == [] and store.list_sessions(A) == []
    assert store.stats(A).episodes == 0 and store.tenants("ns") == [B]
    assert len(store.lexical_turns(B, ["apple"], limit=5)) == 1


def test_vectors_round_trip_as_float16(store: Store) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(3, 16)).astype(np.float32)
    vecs[1] = np.nan  # no vector for this one
    eps = store.add_episodes(A, [draft("a"), draft("b"), draft("c")], vecs, "model-x")
    got = turn_vectors(store, A, "model-x", 16)
    assert got.shape == (2, 16)
    np.testing.assert_allclose(got, vecs[[0, 2]], rtol=1e-3, atol=1e-3)
    assert turn_vectors(store, A, "another-model", 16).shape[0] == 0
    exported = {e.id: (v, m) for e, v, m in store.export_rows(A)}
    assert exported[eps[1].id] == (None, None)
    assert exported[eps[0].id][1] == "model-x"
    assert np.array_equal(exported[eps[0].id][0], vecs[0].astype(np.float16))  # float16, bit for bit
    snap = store.snapshot(A, "model-x")
    if store.dense_turns(A, vecs[0], "model-x", limit=1) is None:  # the retriever scans the snapshot
        assert list(snap.vector_rows) == [0, 2]
        np.testing.assert_allclose(snap.vectors, vecs[[0, 2]], rtol=1e-3, atol=1e-3)


def test_lexical_time_bounds_and_ranking(store: Store) -> None:
    store.add_episodes(A, [draft("red apple", minutes=0), draft("red apple red apple orchard", minutes=60),
                           draft("green pear", minutes=120)])
    all_hits = store.lexical_turns(A, ["apple", "orchard"], limit=10)
    assert len(all_hits) == 2 and all_hits[0][1] >= all_hits[1][1]
    late = store.lexical_turns(A, ["apple"], limit=10, start=T0 + timedelta(minutes=30))
    assert len(late) == 1
    early = store.lexical_turns(A, ["apple"], limit=10, end=T0 + timedelta(minutes=30))
    assert len(early) == 1 and early[0][0] != late[0][0]


def test_query_terms_are_never_parsed_as_syntax(store: Store) -> None:
    store.add_episodes(A, [draft('he said "NEAR" AND OR NOT * ( ) : ^')])
    for terms in (['"'], ["AND"], ["*"], ["NEAR(", ")"], ["a:b"], ['"x" OR "y'], ["^"]):
        store.lexical_turns(A, terms, limit=5)  # must not raise
    assert len(store.lexical_turns(A, ["NEAR"], limit=5)) == 1


def test_neighbours_follow_positions(store: Store) -> None:
    eps = store.add_episodes(A, [draft(f"turn {i}") for i in range(5)])
    assert [e.content for e in store.neighbours(A, eps[2].id, radius=1)] == ["turn 1", "turn 2", "turn 3"]
    assert [e.content for e in store.neighbours(A, eps[0].id, radius=1)] == ["turn 0", "turn 1"]


def test_revision_changes_on_every_write(store: Store) -> None:
    r0 = store.revision(A)
    eps = store.add_episodes(A, [draft("x")])
    r1 = store.revision(A)
    store.delete_episodes(A, [eps[0].id])
    r2 = store.revision(A)
    assert len({r0, r1, r2}) == 3


def test_explicit_positions_are_kept(store: Store) -> None:
    store.add_episodes(A, [draft("b", position=5), draft("a", position=2)])
    assert [(e.content, e.position) for e in store.list_episodes(A)] == [("a", 2), ("b", 5)]
    store.add_episodes(A, [draft("c")])
    assert store.list_episodes(A, session_id="s1")[-1].position == 6


def test_reopening_keeps_data_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "re.db"
    s = SQLiteStore(path)
    s.add_episodes(A, [draft("persisted")])
    version = s.schema_version
    s.close()
    s2 = SQLiteStore(path)
    assert s2.schema_version == version >= 1
    assert [e.content for e in s2.list_episodes(A)] == ["persisted"]
    assert s2.integrity_check() == "ok"
    s2.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "new.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA user_version=999")
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="corrupt|not a memstrata"):
        SQLiteStore(path)


# -- semantic memory ----------------------------------------------------------------------
from memstrata.errors import ConflictError  # noqa: E402
from memstrata.store.base import NewNote, NoteWrite  # noqa: E402


def _queue(store: Store, tenant: Tenant, *texts: str) -> list[int]:
    store.add_episodes(tenant, [draft(t) for t in texts])
    return [k for k, _ in store.pending_episodes(tenant, limit=100)]


def test_pending_queue_is_per_tenant_and_consumed_with_the_notes(store: Store) -> None:
    ka = _queue(store, A, "I live in Lisbon", "I like tea")
    kb = _queue(store, B, "I live in Oslo")
    assert store.pending_count(A) == 2 and store.pending_count(B) == 1 and store.pending_count() == 3
    assert set(store.pending_tenants()) == {A, B}
    write = NoteWrite(new=[NewNote(id="n1", content="Alice: I live in Lisbon", source_keys=(ka[0],), norm="x",
                                   keywords=("lisbon",), subject="Alice", slot="residence", value="lisbon",
                                   vector=np.ones(4, np.float32) / 2)],
                      history=[("n1", "created", {"content": "Alice: I live in Lisbon"})], done=ka, model_id="m")
    assert store.apply_notes(A, write).keys() == {"n1"}
    assert store.pending_count(A) == 0 and store.pending_count(B) == 1
    snap = store.note_snapshot(A, "m")
    assert snap.ids == ("n1",) and snap.vectors.shape == (1, 4) and list(snap.source_keys) == [ka[0]]
    assert store.note_snapshot(B, "m").size == 0
    assert [k for k, _ in store.lexical_notes(A, ["lisbon"], limit=5)] == [int(snap.keys[0])]
    assert store.lexical_notes(B, ["lisbon"], limit=5) == []
    assert store.get_notes(B, ["n1"]) == [] and store.note_history(B, "n1") == []
    assert kb


def test_a_batch_consumed_by_another_worker_is_refused_whole(store: Store) -> None:
    keys = _queue(store, A, "I live in Lisbon")
    first = NoteWrite(new=[NewNote(id="n1", content="c", source_keys=(keys[0],), norm="c")], done=keys)
    second = NoteWrite(new=[NewNote(id="n2", content="c", source_keys=(keys[0],), norm="c")], done=keys)
    store.apply_notes(A, first)
    with pytest.raises(ConflictError):
        store.apply_notes(A, second)
    assert [n.id for n in store.get_notes(A)] == ["n1"]


def test_note_updates_links_and_cascading_deletes(store: Store) -> None:
    keys = _queue(store, A, "I live in Lisbon", "I moved to Berlin")
    store.apply_notes(A, NoteWrite(new=[NewNote(id="old", content="Lisbon", source_keys=(keys[0],), norm="l"),
                                        NewNote(id="new", content="Berlin", source_keys=(keys[1],), norm="b")],
                                   done=keys))
    store.apply_notes(A, NoteWrite(updates=[("old", {"status": "superseded", "valid_to": T0, "superseded_by": "new"})],
                                   links=[("new", "old", "updates", "moved")],
                                   history=[("old", "superseded", {"by": "new"})]))
    old = store.get_notes(A, ["old"])[0]
    assert (old.status, old.valid_to, old.superseded_by) == ("superseded", T0, "new")
    assert [(l.source_id, l.target_id, l.kind) for l in store.note_links(A, "old")] == [("new", "old", "updates")]
    ep_id = store.list_episodes(A)[0].id
    store.delete_episodes(A, [ep_id])
    assert [n.id for n in store.get_notes(A)] == ["new"] and store.note_links(A, "new") == []
    assert [c.action for c in store.note_history(A, "old")] == ["superseded", "deleted"]
    assert all(c.detail in ({}, {"reason": "source episodes deleted"}) for c in store.note_history(A, "old"))
    store.erase_tenant(A)
    assert store.get_notes(A) == [] and store.note_history(A, "old") == [] and store.pending_count(A) == 0


def test_api_keys_round_trip_and_revoke(store: Store) -> None:
    from memstrata.model import ApiKey

    data = ApiKey(key_id="k1", namespace="ns", user_id="alice", admin=False, label="bot", created_at=T0)
    admin = ApiKey(key_id="k2", namespace=None, user_id=None, admin=True, label="", created_at=T0 + timedelta(1))
    store.put_api_key(data, "h1")
    store.put_api_key(admin, "h2")
    assert store.get_api_key("k1") == (data, "h1")
    assert store.get_api_key("nope") is None
    assert [k.key_id for k in store.list_api_keys()] == ["k1", "k2"]
    with pytest.raises(StoreError):
        store.put_api_key(data, "other")  # key ids are unique
    assert store.revoke_api_key("k1", T0 + timedelta(2)) is True
    assert store.revoke_api_key("k1", T0 + timedelta(3)) is False  # already revoked: the first time stays
    key, _ = store.get_api_key("k1")  # type: ignore[misc]
    assert key.revoked_at == T0 + timedelta(2) and not key.active
    assert store.revoke_api_key("nope", T0) is False


def test_pending_span_counts_one_adds_unprocessed_turns(store: Store) -> None:
    store.add_episodes(A, [draft("a"), draft("b"), draft("c")], enqueue=True)
    store.add_episodes(B, [draft("x")], enqueue=True)
    assert store.pending_span(A, "s1", 0, 2) == (3, 0)
    assert store.pending_span(A, "s1", 1, 1) == (1, 0)
    assert store.pending_span(A_OTHER_NS, "s1", 0, 2) == (0, 0)  # same user id, other namespace
    keys = [k for k, _ in store.pending_episodes(A, limit=10)]
    store.mark_pending_failed(A, keys[:1], "boom")
    assert store.pending_span(A, "s1", 0, 2) == (3, 1)


# -- what a store with its own vector index adds (dense_turns, session centroids) --------
def _unit(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    v = rng.normal(size=(n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _dense(store: Store, tenant: Tenant, q: np.ndarray, model: str, k: int,
           start: datetime | None = None, end: datetime | None = None) -> list[int]:
    """The store's nearest turns, or (a store without an index) the exact scan of its
    snapshot that the retriever runs: either way the tenant's k best episode keys."""
    hits = store.dense_turns(tenant, q, model, limit=k, start=start, end=end)
    if hits is not None:
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        return [key for key, _ in hits]
    snap = store.snapshot(tenant, model)
    rows = snap.vector_rows
    if start is not None:
        rows = rows[snap.times[rows] >= int((start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6)]
    if end is not None:
        rows = rows[snap.times[rows] < int((end - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6)]
    vecs = np.zeros((0, q.shape[0]), np.float32) if not snap.vectors.size else \
        snap.vectors[np.searchsorted(snap.vector_rows, rows)]
    order = np.argsort(-(vecs @ q), kind="stable")[:k]
    return [int(snap.keys[rows[i]]) for i in order]


def graph_exists(store: PostgresStore, tenant: Tenant, dims: int = 24) -> bool:
    """Whether the tenant has a valid HNSW graph of ``dims`` (store/postgres_graphs.py)."""
    from memstrata.store.postgres_graphs import graph_name

    with store._read() as cur:
        row = cur.execute("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                          "WHERE c.relname = %s", (graph_name(tenant, dims),)).fetchone()
    return bool(row and row[0])


def _exact(keys: list[int], vecs: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    scores = vecs.astype(np.float16).astype(np.float32) @ q
    return [keys[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_dense_turns_return_k_for_a_small_tenant_among_many_and_for_a_big_one(store: Store) -> None:
    """A 1% tenant among 6k vectors gets its exact k neighbours; a big tenant's answers
    (in PostgreSQL through its own HNSW graph, built in the background once it passed
    ``exact_below``) agree with the exact scan; a time window still yields k (a filtered
    HNSW scan without ``hnsw.iterative_scan`` returned none: shared/notes/ecosystem.md).
    The small tenant has no graph until it is past ``exact_below`` too."""
    if isinstance(store, PostgresStore):
        store.exact_below = 1_000  # the big tenant goes through HNSW, the small one is scanned
    rng = np.random.default_rng(7)
    dims, k = 24, 10
    small, big = Tenant("ns", "small"), Tenant("ns", "big")
    vecs: dict[Tenant, list[np.ndarray]] = {small: [], big: []}
    for batch in range(6):  # 60 small-tenant turns spread through 5,940 big-tenant turns
        for tenant, n in ((big, 990), (small, 10)):
            v = _unit(rng, n, dims)
            store.add_episodes(tenant, [draft(f"t{batch}-{i}", minutes=batch * 1000 + i, session=f"s{batch}")
                                        for i in range(n)], v, "m")
            vecs[tenant].append(v)
    # episode keys in insertion order (= sessions s0..s5, then position)
    keys = {t: [int(key) for key in store.snapshot(t, "m").keys] for t in (small, big)}
    assert store.wait_indexes(120)
    if isinstance(store, PostgresStore):
        assert [graph_exists(store, t) for t in (small, big)] == [False, True]
    recall = []
    for q in _unit(rng, 8, dims):
        got_small = _dense(store, small, q, "m", k)
        assert got_small == _exact(keys[small], np.vstack(vecs[small]), q, k)
        got_big = _dense(store, big, q, "m", k)
        assert len(got_big) == k and set(got_big) <= set(keys[big])
        recall.append(len(set(got_big) & set(_exact(keys[big], np.vstack(vecs[big]), q, k))) / k)
    assert np.mean(recall) >= 0.9, recall
    start, end = T0 + timedelta(minutes=2000), T0 + timedelta(minutes=2200)
    got = _dense(store, big, _unit(rng, 1, dims)[0], "m", k, start=start, end=end)
    assert len(got) == k
    assert all(start <= e.event_time < end for e in store.episodes_by_keys(big, got).values())
    assert _dense(store, Tenant("ns", "nobody"), _unit(rng, 1, dims)[0], "m", k) == []
    if isinstance(store, PostgresStore):
        assert store.dense_counts["hnsw"] == 8 and store.dense_counts["short"] == 0
        store.exact_below = 20  # now the small tenant is big enough: its first search queues a graph
        q = _unit(rng, 1, dims)[0]
        assert store.dense_turns(small, q, "m", limit=k) == store.dense_turns(small, q, "m", limit=k)
        assert store.dense_counts["hnsw"] == 8  # answered exactly while it is built
        assert store.wait_indexes(60) and graph_exists(store, small)
        for q in _unit(rng, 5, dims):
            assert len(store.dense_turns(small, q, "m", limit=k) or []) == k
        assert store.dense_counts["hnsw"] == 13 and store.dense_counts["short"] == 0


def test_session_centroids_agree_between_stores(store: Store) -> None:
    rng = np.random.default_rng(11)
    dims = 12
    vecs = _unit(rng, 7, dims)
    vecs[3] = np.nan  # a turn without a vector does not count
    store.add_episodes(A, [draft(f"a{i}", session="s1" if i < 4 else "s2") for i in range(7)], vecs, "m")
    store.add_episodes(A, [draft("no vectors at all", session="s3")])
    snap = store.snapshot(A, "m")
    if snap.session_vectors is not None:
        skeys, cents = snap.session_vectors
    else:
        from memstrata.retrieve.search import TenantIndex

        idx = TenantIndex.build(snap)
        nonzero = np.linalg.norm(idx.centroids, axis=1) > 0
        skeys, cents = idx.session_keys[nonzero], idx.centroids[nonzero]
    half = vecs.astype(np.float16).astype(np.float32)
    want = [half[:3].sum(0), half[4:].sum(0)]
    want = np.array([w / np.linalg.norm(w) for w in want])
    by_id = {sid: key for key, sid in snap.session_ids.items()}
    assert list(skeys) == [by_id["s1"], by_id["s2"]]
    np.testing.assert_allclose(cents, want, atol=2e-3)


def test_dump_and_load_round_trip_every_table(store: Store, tmp_path: Path) -> None:
    from memstrata.model import ApiKey
    from memstrata.store.base import TABLES

    rng = np.random.default_rng(5)
    store.put_api_key(ApiKey(key_id="k1", namespace="ns", user_id="alice", admin=False, label="x", created_at=T0),
                      "h")
    keys = _queue(store, A, "I live in Lisbon", "I moved to Berlin")
    store.add_episodes(B, [draft("vectors here", session="v")], _unit(rng, 1, 8), "m")
    store.apply_notes(A, NoteWrite(new=[NewNote(id="old", content="Lisbon", source_keys=(keys[0],), norm="l",
                                                vector=_unit(rng, 1, 8)[0]),
                                        NewNote(id="new", content="Berlin", source_keys=(keys[1],), norm="b")],
                                   done=keys[:1], model_id="m"))
    store.apply_notes(A, NoteWrite(updates=[("old", {"status": "superseded", "superseded_by": "new"})],
                                   links=[("new", "old", "updates", "moved")], history=[("old", "superseded", {})]))
    store.put_summaries(A, [(None, "Alice moved", 2)])
    if isinstance(store, PostgresStore):
        from tests.pg import server

        copy: Store = PostgresStore(server().fresh_database())
    else:
        copy = SQLiteStore(tmp_path / "copy.db")
    try:
        dumped = {t: [r for b in store.dump_table(t, batch=2) for r in b] for t in TABLES}
        assert all(dumped[t] for t in TABLES), [t for t in TABLES if not dumped[t]]
        for table in TABLES:
            for i in range(0, len(dumped[table]), 2):  # in batches, as migrate does
                copy.load_table(table, dumped[table][i:i + 2])
        again = {t: [r for b in copy.dump_table(t) for r in b] for t in TABLES}
        assert again == dumped
        vec_row = dumped["embeddings"][0]
        assert isinstance(vec_row[2], bytes) and len(vec_row[2]) == 16  # 8 float16, little-endian
        assert [k for k, _ in copy.lexical_turns(A, ["berlin"], limit=5)] == \
            [k for k, _ in store.lexical_turns(A, ["berlin"], limit=5)]
        assert copy.get_notes(A, ["old"])[0].superseded_by == "new"
        q = np.frombuffer(vec_row[2], "<f2").astype(np.float32)
        assert _dense(copy, B, q, "m", 1) == _dense(store, B, q, "m", 1)
        new = copy.add_episodes(A, [draft("after the copy")])  # keys continue past the loaded ones
        assert copy.get_episode(A, new[0].id) is not None
        with pytest.raises(StoreError):
            copy.load_table("api_keys", dumped["api_keys"])  # a load never merges
    finally:
        copy.close()


def test_hostile_lexical_terms_never_raise(store: Store) -> None:
    store.add_episodes(A, [draft("foo bar baz and the quick fox")])
    store.apply_notes(A, NoteWrite(new=[NewNote(id="n", content="foo note", source_keys=(
        int(store.snapshot(A, None).keys[0]),), norm="f")]))
    hostile = ["foo:*", "a & b", "'", "''", '"', "\\", "\\\\", "!", "!foo", "<->", "<2>", "a <-> b", "(", ")",
               "foo | bar", "&&", "||", ":", "*", "the", "and", "", " ", "\x01", "é'ü", "foo'bar", "-", "a:b",
               "%s", "%(x)s", "$1", "'; DROP TABLE episodes; --"]
    for t in hostile:
        store.lexical_turns(A, [t], limit=5)
        store.lexical_sessions(A, [t], limit=5)
        store.lexical_notes(A, [t], limit=5)
    store.lexical_turns(A, hostile, limit=5)
    assert len(store.lexical_turns(A, ["foo:*", "!"], limit=5)) == 1  # the word in it still matches
    assert len(store.lexical_notes(A, ["foo"], limit=5)) == 1


def test_concurrent_appends_get_unique_positions_and_revisions(store: Store) -> None:
    import threading

    errors: list[BaseException] = []
    revisions: list[int] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                store.add_episodes(A, [draft(f"w{n} turn {i}"), draft(f"w{n} turn {i}b")])
                revisions.append(store.revision(A))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    eps = store.list_episodes(A, session_id="s1", limit=1000)
    assert sorted(e.position for e in eps) == list(range(120))
    for n in range(6):  # each call's two turns are adjacent: one add is one transaction
        mine = {e.content: e.position for e in eps if e.content.startswith(f"w{n} ")}
        assert all(mine[f"w{n} turn {i}b"] == mine[f"w{n} turn {i}"] + 1 for i in range(10))
    assert store.list_sessions(A)[0].n_episodes == 120


# -- PostgreSQL: the server's equivalents of the SQLite-file tests above ------------------
from memstrata.store.postgres import PostgresStore  # noqa: E402


def test_postgres_reopening_keeps_data_and_schema(pg_url: str) -> None:
    s = open_store(pg_url)
    assert isinstance(s, PostgresStore)
    s.add_episodes(A, [draft("persisted")])
    version = s.schema_version
    s.close()
    s2 = open_store(pg_url.replace("postgresql://", "postgres://", 1))
    assert s2.schema_version == version >= 1
    assert [e.content for e in s2.list_episodes(A)] == ["persisted"]
    assert s2.integrity_check() == "ok"
    s2.close()


def test_postgres_newer_schema_is_refused(pg_url: str) -> None:
    import psycopg

    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(StoreError, match="newer"):
        PostgresStore(pg_url)


def test_postgres_unreachable_or_unknown_database_is_a_clear_error(pg_url: str) -> None:
    with pytest.raises(StoreError, match="cannot open store") as err:
        open_store("postgresql://someone:s3cret@127.0.0.1:1/memory")
    assert "s3cret" not in str(err.value) and "127.0.0.1" in str(err.value)
    missing = pg_url.replace("/t", "/nosuchdb_t", 1)
    with pytest.raises(StoreError, match="nosuchdb"):
        open_store(missing)


def test_turn_vectors_are_the_tenants_own_in_key_order(store: Store) -> None:
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(6, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    mine = store.add_episodes(A, [draft(f"turn {i}") for i in range(6)], vectors=vecs, model_id="m")
    store.add_episodes(B, [draft("other")], vectors=vecs[:1], model_id="m")
    keys, got = store.turn_vectors(A, "m")
    by_id = {e.id: e for e in store.episodes_by_keys(A, keys.tolist()).values()}
    assert keys.tolist() == sorted(keys.tolist()) and set(by_id) == {e.id for e in mine}
    np.testing.assert_allclose(got, vecs, atol=1e-3)             # float16 in both stores
    some, part = store.turn_vectors(A, "m", keys=[int(keys[4]), int(keys[1]), 10**12])
    assert some.tolist() == [int(keys[1]), int(keys[4])] and np.allclose(part, got[[1, 4]])
    assert store.turn_vectors(A, "other-model")[0].size == 0
    assert store.turn_vectors(Tenant("ns", "nobody"), "m")[0].size == 0


def test_lexical_budget_leaves_out_the_most_common_word(store: Store) -> None:
    """Ranking every row that has a word most rows have costs time and buys nothing: over
    the store's budget the most common words are left out, the rarest always kept."""
    store.add_episodes(A, [draft(f"ordinary filler line {i}") for i in range(300)])
    rare = store.add_episodes(A, [draft(f"ordinary zebracorn sighting {i}") for i in range(3)])
    if isinstance(store, PostgresStore):  # its word statistics come from ANALYZE (autovacuum runs it)
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as c:
            c.execute("ANALYZE episodes")
    both = ["ordinary", "zebracorn"]
    assert len(store.lexical_turns(A, both, limit=500)) == 303  # within the budget: every match
    store.lexical_budget = 50  # type: ignore[attr-defined]
    hits = store.lexical_turns(A, both, limit=500)
    assert sorted(k for k, _ in hits) == sorted(store.snapshot(A, None).keys[-3:].tolist())
    assert {e.id for e in store.episodes_by_keys(A, [k for k, _ in hits]).values()} == {e.id for e in rare}
    # A lone word always stays; over the budget it is ranked over the tenant's newest rows
    # only (about 50 postings' worth), here the last ones written.
    newest = sorted(k for k, _ in store.lexical_turns(A, ["ordinary"], limit=500))
    every = sorted(store.snapshot(A, None).keys.tolist())
    assert 40 <= len(newest) <= 60 and newest == every[-len(newest):]
    store.lexical_budget = 0  # type: ignore[attr-defined]
    assert len(store.lexical_turns(A, ["ordinary"], limit=500)) == 303


def test_the_newest_rows_window_follows_new_writes(store: Store) -> None:
    """The window a word over the budget is ranked in stays about the budget's size and
    ends at the newest rows as the memory grows (PostgreSQL finds its start from marks it
    keeps per tenant; they must not go stale)."""
    def window() -> list[int]:
        return sorted(k for k, _ in store.lexical_turns(A, ["ordinary"], limit=5_000))

    store.add_episodes(B, [draft(f"ordinary other tenant {i}") for i in range(500)])
    store.add_episodes(A, [draft(f"ordinary filler line {i}") for i in range(3_000)])
    store.lexical_budget = 1_500  # type: ignore[attr-defined]
    for grow in (0, 1_000):
        store.add_episodes(A, [draft(f"ordinary later line {i}") for i in range(grow)])
        if isinstance(store, PostgresStore):
            import psycopg

            with psycopg.connect(store.url, autocommit=True) as c:
                c.execute("ANALYZE episodes")
        got = window()
        every = sorted(store.snapshot(A, None).keys.tolist())
        assert 1_300 <= len(got) <= 1_700, len(got)
        assert got == every[-len(got):]
    # As many old rows deleted as new ones written: the count stays, the window moves.
    # (SQLite sizes it in keys from the table's postings per key, which the deleted keys
    # thin out: up to 5,500 keys / 4,500 rows wider here. Stale marks would give ~2,500.)
    old = store.list_episodes(A, limit=1_000)
    assert store.delete_episodes(A, [e.id for e in old]) == 1_000
    store.add_episodes(A, [draft(f"ordinary newest line {i}") for i in range(1_000)])
    got = window()
    every = sorted(store.snapshot(A, None).keys.tolist())
    assert len(every) == 4_000 and 1_300 <= len(got) <= 1_900, len(got)
    assert got == every[-len(got):]


def test_notes_over_the_budget_are_ranked_over_the_newest_notes(store: Store) -> None:
    """The notes' window is sized by the tenant's notes (not its sessions or turns)."""
    keys = _queue(store, A, "one turn")
    write = NoteWrite(new=[NewNote(id=f"n{i}", content=f"ordinary fact number {i}", source_keys=(keys[0],),
                                   norm=f"n{i}", keywords=(), vector=np.ones(4, np.float32) / 2)
                           for i in range(3_000)], history=[], done=keys, model_id="m")
    store.apply_notes(A, write)
    if isinstance(store, PostgresStore):
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as c:
            c.execute("ANALYZE notes")
    store.lexical_budget = 1_500  # type: ignore[attr-defined]
    got = sorted(k for k, _ in store.lexical_notes(A, ["ordinary"], limit=5_000))
    every = sorted(store.note_snapshot(A, "m").keys.tolist())
    assert len(every) == 3_000 and 1_300 <= len(got) <= 1_700, len(got)
    assert got == every[-len(got):]


def test_postgres_survives_the_server_dropping_its_connections(pg_url: str) -> None:
    """A restart or an idle timeout kills pooled connections; the next call gets a new one."""
    import psycopg

    s = PostgresStore(pg_url, min_size=2)
    try:
        s.add_episodes(A, [draft("before")])
        with psycopg.connect(pg_url, autocommit=True) as c:
            killed = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert killed >= 1
        s.add_episodes(A, [draft("after")])
        assert [e.content for e in s.list_episodes(A)] == ["before", "after"]
    finally:
        s.close()


def test_postgres_stores_opening_an_empty_database_at_once_migrate_it_once() -> None:
    """Each open runs the migrations under an advisory lock: opens racing on a new
    database all succeed, and the schema is made once."""
    import threading

    import psycopg

    from memstrata.store.postgres_schema import LATEST
    from tests.pg import server

    srv = server()
    name = f"empty_{threading.get_ident()}"
    with psycopg.connect(srv.admin_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")  # from template1: no tables, no extension
    url = srv.url(name)
    try:
        opened: list[PostgresStore] = []
        errors: list[BaseException] = []

        def open_one() -> None:
            try:
                opened.append(PostgresStore(url))
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(opened) == 5
        assert {s.schema_version for s in opened} == {LATEST}
        opened[0].add_episodes(A, [draft("works")])
        assert [e.content for e in opened[4].list_episodes(A)] == ["works"]
        for s in opened:
            s.close()
    finally:
        with psycopg.connect(srv.admin_url, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_neighbours_many_matches_neighbours_one_by_one(store: Store) -> None:
    eps = store.add_episodes(A, [draft(f"turn {i}") for i in range(8)])
    other = store.add_episodes(A, [draft(f"other {i}", session="s2") for i in range(3)])
    store.delete_episodes(A, [eps[3].id])            # a gap: the window skips it
    foreign = store.add_episodes(B, [draft("b's turn")])
    ids = [eps[2].id, eps[4].id, eps[0].id, other[1].id, eps[3].id, foreign[0].id, "nope", eps[2].id]
    for radius in (1, 2):
        many = store.neighbours_many(A, ids, radius=radius)
        one = {i: store.neighbours(A, i, radius=radius) for i in ids}
        assert many == {i: w for i, w in one.items() if w}
        assert eps[3].id not in many and foreign[0].id not in many and "nope" not in many
    assert [e.content for e in store.neighbours_many(A, [eps[4].id])[eps[4].id]] == ["turn 2", "turn 4", "turn 5"]
    assert store.neighbours_many(A, []) == {}
