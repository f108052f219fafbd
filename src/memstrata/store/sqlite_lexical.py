"""A cost budget for SQLite FTS5 any-term queries.

FTS5 scores every row that matches any term of an OR query before it can sort, so
the cost of a query is the sum of its terms' posting-list lengths: 113 ms at 100k
rows and 1.2 s at 1M were measured here for ordinary questions (../shared notes), all
of it spent on words that half the rows contain. Those words carry almost no BM25
weight (idf ~ log(N/df)), so when the postings of a query exceed ``budget`` the most
common terms are left out, rarest first kept, and at least one term always stays.
When even the rarest term has more postings than the budget (a very large memory
whose every query word is common), only the postings of the tenant's most recent
rows are scored: the query gets a key range (keys grow with writes) that ends at the
tenant's newest row and holds about ``budget`` postings, and FTS5 seeks to it. The
dense and session lists still see the whole memory. Below the budget (every store of a few thousand turns)
nothing changes.

Document frequencies come from ``fts5vocab`` tables over the live indexes (exact,
no bookkeeping of ours); terms are mapped to the index's own tokens by FTS5's own
tokenizer in a private in-memory database, so stemming always agrees with the index.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from .migrations import _TOKENIZE

DEFAULT_BUDGET = 3_000  # postings one lexical query may score (~1.4 us each here, join included: ~4 ms)

VOCABS = {"episodes_fts": "episodes_fts_v", "sessions_fts": "sessions_fts_v", "notes_fts": "notes_fts_v"}
_CONTENT = {"episodes_fts": "episodes", "sessions_fts": "sessions", "notes_fts": "notes"}

_lock = threading.Lock()
_conn: sqlite3.Connection | None = None


def create_vocabs(c: sqlite3.Connection) -> None:
    """Per-connection (temp) fts5vocab tables over the main database's FTS5 indexes."""
    for table, vocab in VOCABS.items():
        c.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{vocab} USING fts5vocab(main, {table}, row)")


@lru_cache(maxsize=65536)
def tokens(term: str) -> tuple[str, ...]:
    """The index tokens FTS5 makes of ``term`` (porter stems, diacritics removed)."""
    global _conn
    with _lock:
        if _conn is None:
            _conn = sqlite3.connect(":memory:", check_same_thread=False)
            _conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{_TOKENIZE}')")
            _conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
        _conn.execute("INSERT INTO t(rowid, x) VALUES (1, ?)", (term,))
        try:
            rows = _conn.execute("SELECT term FROM v ORDER BY offset").fetchall()
        finally:
            _conn.execute("DELETE FROM t")
    return tuple(r[0] for r in rows)


class DfCache:
    """Document frequencies per (table, token), read from fts5vocab (~0.7 ms a lookup)
    and kept until the table has grown by a tenth: a cost estimate need not be exact."""

    def __init__(self) -> None:
        self._df: dict[tuple[str, str], int] = {}
        self._size: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, c: sqlite3.Connection, table: str, toks: Sequence[str], size: int) -> dict[str, int]:
        with self._lock:
            if size > self._size.get(table, 0) * 1.1 or size < self._size.get(table, 0) * 0.9:
                self._df = {k: v for k, v in self._df.items() if k[0] != table}
                self._size[table] = size
            if len(self._df) > 200_000:
                self._df.clear()
            missing = [t for t in toks if (table, t) not in self._df]
        found = {t: 0 for t in missing}
        for tok in missing:
            row = c.execute(f"SELECT doc FROM temp.{VOCABS[table]} WHERE term = ?", (tok,)).fetchone()
            found[tok] = int(row[0]) if row else 0
        with self._lock:
            self._df.update({(table, t): n for t, n in found.items()})
            return {t: self._df.get((table, t), found.get(t, 0)) for t in toks}


class Plan(NamedTuple):
    terms: list[str]      # to search, in the query's order
    scoped: bool          # AND the tenant's scope token in the MATCH (else filter by a join)
    min_key: int | None   # score only rows with min_key <= key <= max_key (None: all rows)
    max_key: int | None


def plan(c: sqlite3.Connection, table: str, terms: Sequence[str], budget: int, scope: str,
         cache: DfCache, tenant: tuple[str, str]) -> Plan:
    """The terms to search (``terms`` in order, minus the most common ones so that the
    postings left sum to at most ``budget``; the rarest term always stays), whether
    to AND the tenant's scope token in the MATCH (True) or filter the tenant by a join,
    and, when the kept terms alone exceed the budget, the key range ending at the
    ``tenant``'s (namespace, user_id) newest row in which about ``budget`` of their
    postings lie (postings are assumed spread evenly over keys).

    The scope token narrows the rows FTS5 scores, but bm25() first counts the documents
    of every phrase, the scope's too: a walk over all of a big tenant's rows (20-35 ms
    at 500k turns). When the tenant has more rows than the kept terms have postings,
    scoring those postings and dropping other tenants' rows by the join is cheaper.
    Both give the same rows and scores (the scope column has weight 0 in bm25)."""
    terms = list(terms)
    if not terms or budget <= 0:
        return Plan(terms, True, None, None)
    # No term can match more rows than the table has ever had (keys only grow): a small
    # store never pays for the vocabulary lookups.
    size = c.execute(f"SELECT max(key) FROM {_CONTENT[table]}").fetchone()[0] or 0
    if size * len(terms) <= budget:
        return Plan(terms, True, None, None)
    toks = {t: tokens(t) for t in terms}
    scope = "".join(tokens(scope))  # as indexed (the stemmer may trim it)
    df = cache.get(c, table, sorted({tok for ts in toks.values() for tok in ts} | {scope}), size)
    # A phrase (a term FTS5 splits into several tokens) walks each token's list.
    cost = {t: sum(df.get(tok, 0) for tok in ts) for t, ts in toks.items()}
    keep: set[str] = set()
    spent = 0
    for t in sorted(terms, key=lambda t: (cost[t], t)):
        # Keep going until a term that matches something is in (a term of no row must
        # not be the one that stays: the query would find nothing).
        if spent > 0 and spent + cost[t] > budget:
            break
        keep.add(t)
        spent += cost[t]
    min_key = max_key = None
    if spent > budget:  # the rarest term alone: the postings of the tenant's newest rows
        newest = c.execute(f"SELECT max(key) FROM {_CONTENT[table]} WHERE namespace=? AND user_id=?",
                           tenant).fetchone()[0] or 0
        max_key = int(newest)
        min_key = max(0, int(max_key - size * budget / spent))
        spent = budget
    return Plan([t for t in terms if t in keep], df.get(scope, 0) <= spent, min_key, max_key)
