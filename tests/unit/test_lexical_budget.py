"""The lexical cost budget of the SQLite store (store/sqlite_lexical.py): a query whose
terms' postings exceed the budget drops its most common terms, never its rarest, and a
store under the budget answers exactly as without one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from memstrata.store import EpisodeDraft, SQLiteStore, Tenant
from memstrata.store.sqlite_lexical import tokens

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
A = Tenant("ns", "a")


def _fill(store: SQLiteStore) -> None:
    drafts = [EpisodeDraft(id=f"e{i}", session_id=f"s{i // 10}", role="user",
                           content=f"weather talk number {i}" + (" zeppelin" if i % 50 == 0 else ""),
                           event_time=T0 + timedelta(minutes=i), ingest_time=T0) for i in range(200)]
    store.add_episodes(A, drafts)


def test_over_budget_the_common_term_is_dropped_and_the_rare_one_kept(tmp_path: Path) -> None:
    tight = SQLiteStore(tmp_path / "tight.db", lexical_budget=50)
    loose = SQLiteStore(tmp_path / "loose.db")
    for s in (tight, loose):
        _fill(s)
    both = ["weather", "zeppelin"]
    assert len(loose.lexical_turns(A, both, limit=500)) == 200          # any-term: every turn matches
    found = tight.lexical_turns(A, both, limit=500)
    assert len(found) == 4                                              # only the 4 zeppelin turns
    # Alone, even a term over the budget is searched (at least one term always stays).
    assert len(tight.lexical_turns(A, ["weather"], limit=500)) == 200
    # The ranking of what remains is BM25's: the rare-term turns come first in both stores.
    assert {k for k, _ in found} == {k for k, _ in loose.lexical_turns(A, both, limit=4)}
    # 20 sessions x 2 terms is under the budget: sessions search is unchanged.
    assert len(tight.lexical_sessions(A, both, limit=500)) == 20
    for s in (tight, loose):
        s.close()


def test_tokens_follow_the_index_tokenizer() -> None:
    assert tokens("running") == ("run",)
    assert tokens("Café") == ("cafe",)
    assert tokens('foo:* "bar"') == ("foo", "bar")
    assert tokens("!!!") == ()
