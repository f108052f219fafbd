"""The lexical cost budget of the SQLite store (store/sqlite_lexical.py): a query whose
terms' postings exceed the budget drops its most common terms, never its rarest; a
store under the budget answers exactly as without one; a big tenant is filtered by a
join instead of the scope token, with the same rows and scores."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from memstrata.store import EpisodeDraft, SQLiteStore, Tenant
from memstrata.store.sqlite import scope_token
from memstrata.store.sqlite_lexical import DfCache, plan, tokens

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
A = Tenant("ns", "a")
B = Tenant("ns", "b")


def _fill(store: SQLiteStore, tenant: Tenant = A, n: int = 200) -> None:
    drafts = [EpisodeDraft(id=f"{tenant.user_id}{i}", session_id=f"s{i // 10}", role="user",
                           content=f"weather talk number {i}" + (" zeppelin" if i % 50 == 0 else ""),
                           event_time=T0 + timedelta(minutes=i), ingest_time=T0) for i in range(n)]
    store.add_episodes(tenant, drafts)


def test_over_budget_the_common_term_is_dropped_and_the_rare_one_kept(tmp_path: Path) -> None:
    tight = SQLiteStore(tmp_path / "tight.db", lexical_budget=50)
    loose = SQLiteStore(tmp_path / "loose.db")
    for s in (tight, loose):
        _fill(s)
    both = ["weather", "zeppelin"]
    assert len(loose.lexical_turns(A, both, limit=500)) == 200          # any-term: every turn matches
    found = tight.lexical_turns(A, both, limit=500)
    assert len(found) == 4                                              # only the 4 zeppelin turns
    # Alone, a term over the budget is still searched (at least one term always stays),
    # over its newest postings only: about 50 (the budget), the newest turns.
    newest = tight.lexical_turns(A, ["weather"], limit=500)
    assert 45 <= len(newest) <= 55
    assert sorted(k for k, _ in newest) == sorted(k for k, _ in loose.lexical_turns(A, ["weather"], limit=500))[-len(newest):]
    # The ranking of what remains is BM25's: the rare-term turns come first in both stores.
    assert {k for k, _ in found} == {k for k, _ in loose.lexical_turns(A, both, limit=4)}
    # 20 sessions x 2 terms is under the budget: sessions search is unchanged.
    assert len(tight.lexical_sessions(A, both, limit=500)) == 20
    for s in (tight, loose):
        s.close()


def test_a_big_tenant_is_filtered_by_join_with_the_same_rows_and_scores(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db", lexical_budget=60)
    _fill(store, A, 400)
    _fill(store, B, 5)
    with store._read() as c:
        p = plan(c, "episodes_fts", ["zeppelin", "number"], 60, scope_token(A), DfCache(), ("ns", "a"))
        assert p.terms == ["zeppelin"] and p.scoped is False and p.min_key is None  # 400 rows of A > 9 postings
        p = plan(c, "episodes_fts", ["zeppelin", "number"], 60, scope_token(B), DfCache(), ("ns", "b"))
        assert p.terms == ["zeppelin"] and p.scoped is True and p.min_key is None   # 5 rows of B < 9 postings
    by_join = store.lexical_turns(A, ["zeppelin", "number"], limit=50)
    assert len(by_join) == 8 and all(k <= 400 for k, _ in by_join)    # A's rows only (B's keys come after)
    scoped_store = SQLiteStore(tmp_path / "m.db", lexical_budget=0)   # budget off: always scoped, all terms
    exact = dict(scoped_store.lexical_turns(A, ["zeppelin"], limit=50))
    assert {k: round(v, 9) for k, v in by_join} == {k: round(v, 9) for k, v in exact.items()}
    assert {k for k, _ in store.lexical_turns(B, ["zeppelin", "number"], limit=50)} == \
        {k for k, _ in scoped_store.lexical_turns(B, ["zeppelin"], limit=50)}
    store.close()
    scoped_store.close()


def test_the_window_is_the_tenants_own_newest_rows_even_when_others_wrote_later(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w.db", lexical_budget=30)
    loose = SQLiteStore(tmp_path / "w.db", lexical_budget=0)
    _fill(store, A, 300)      # 30 sessions of A
    _fill(store, B, 100)      # B's rows come after A's: the store's newest postings are all B's
    every_a = sorted(k for k, _ in loose.lexical_turns(A, ["weather"], limit=1000))
    found = sorted(k for k, _ in store.lexical_turns(A, ["weather"], limit=1000))
    assert 20 <= len(found) <= 40 and found == every_a[-len(found):]   # A's newest ~30, none of B's
    found_b = sorted(k for k, _ in store.lexical_turns(B, ["weather"], limit=1000))
    assert found_b and all(k > every_a[-1] for k in found_b)
    # Sessions: 40 in all, 30 of them A's (keys 1-30); a budget of 20 postings keeps A's newest 20.
    with store._read() as c:
        p = plan(c, "sessions_fts", ["weather"], 20, scope_token(A), DfCache(), ("ns", "a"))
    assert p.terms == ["weather"] and (p.min_key, p.max_key) == (10, 30)
    store.lexical_budget = 20
    assert sorted(k for k, _ in store.lexical_sessions(A, ["weather"], limit=100)) == list(range(10, 31))
    store.close()
    loose.close()


def test_tokens_follow_the_index_tokenizer() -> None:
    assert tokens("running") == ("run",)
    assert tokens("Café") == ("cafe",)
    assert tokens('foo:* "bar"') == ("foo", "bar")
    assert tokens("!!!") == ()


def test_a_term_no_row_has_is_never_the_only_one_kept(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "z.db", lexical_budget=50)
    _fill(store)
    found = store.lexical_turns(A, ["weather", "xylophone"], limit=500)  # xylophone: in no row
    assert len(found) == 51    # weather stays, over its newest ~50 postings (keys 150-200)
    store.close()
