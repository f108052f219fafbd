"""A cost budget for SQLite FTS5 any-term queries.

FTS5 scores every row that matches any term of an OR query before it can sort, so
the cost of a query is the sum of its terms' posting-list lengths: 113 ms at 100k
rows and 1.2 s at 1M were measured here for ordinary questions (../shared notes), all
of it spent on words that half the rows contain. Those words carry almost no BM25
weight (idf ~ log(N/df)), so when the postings of a query exceed ``budget`` the most
common terms are left out, rarest first kept, and at least one term always stays.
Below the budget (every store of a few thousand turns) nothing changes.

Document frequencies come from ``fts5vocab`` tables over the live indexes (exact,
no bookkeeping of ours); terms are mapped to the index's own tokens by FTS5's own
tokenizer in a private in-memory database, so stemming always agrees with the index.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from functools import lru_cache

from .migrations import _TOKENIZE

DEFAULT_BUDGET = 30_000  # postings one lexical query may walk (~5 ms on this machine)

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


def affordable(c: sqlite3.Connection, table: str, terms: Sequence[str], budget: int) -> list[str]:
    """``terms`` (in their order) minus the most common ones, so that the postings left
    sum to at most ``budget``; the rarest term always stays."""
    if len(terms) < 2 or budget <= 0:
        return list(terms)
    # No term can match more rows than the table has ever had (keys only grow): a small
    # store never pays for the vocabulary lookups.
    top = c.execute(f"SELECT max(key) FROM {_CONTENT[table]}").fetchone()[0] or 0
    if top * len(terms) <= budget:
        return list(terms)
    toks = {t: tokens(t) for t in terms}
    wanted = sorted({tok for ts in toks.values() for tok in ts})
    if not wanted:
        return list(terms)
    df = dict(c.execute(f"SELECT term, doc FROM temp.{VOCABS[table]} WHERE term IN "
                        f"({','.join('?' * len(wanted))})", wanted).fetchall())
    # A phrase (a term FTS5 splits into several tokens) walks each token's list.
    cost = {t: sum(df.get(tok, 0) for tok in ts) for t, ts in toks.items()}
    if sum(cost.values()) <= budget:
        return list(terms)
    keep: set[str] = set()
    spent = 0
    for t in sorted(terms, key=lambda t: (cost[t], t)):
        if keep and spent + cost[t] > budget:
            break
        keep.add(t)
        spent += cost[t]
    return [t for t in terms if t in keep]
