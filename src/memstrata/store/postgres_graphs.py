"""Per-tenant HNSW graphs for PostgreSQL: only tenants big enough to need one pay for one.

pgvector keeps an HNSW graph up to date row by row: every inserted vector is searched
into the graph and linked to its neighbours. With one graph over the whole table (the
design of schema versions 1-2) every episode of every tenant paid that, ~0.85 ms at 20k
vectors and ~3.5 ms at 1M, three quarters of an episode's write, though a tenant under
``exact_below`` (20,000) vectors never searches the graph: its rows are scanned exactly,
which is as fast at that size. Most tenants of a memory service are that small.

So each tenant (and vector dimension) gets its own graph once it reaches ``exact_below``
vectors: a partial index ``... USING hnsw ((vec::halfvec(d)) halfvec_cosine_ops) WHERE
namespace = '<ns>' AND user_id = '<user>' AND dims = d``. Measured on 2 cores (random
unit vectors, 384 dims, one writer, 20 turns an add): with no graph, 3,216 episodes/s;
into a 20k-vector tenant graph, 503/s; another tenant's write next to that graph,
3,515/s (a partial index's predicate costs its non-members nothing measurable).
A graph holds one tenant's vectors only, so a tenant-filtered search walks no other
tenant's neighbours (the old shared graph needed ``ef_search`` 800 and still found 0.81
of the true top 10 for a 500k-vector tenant at 1M).

- **Made in the background.** A write that may have taken the tenant past
  ``exact_below`` counts its vectors (at most twice per tenant and process: after a
  count of ``c`` the next comes ``exact_below - c`` written vectors later), and so does a
  search that finds a tenant that size without a graph; either queues a build. One thread
  per store builds with ``CREATE INDEX CONCURRENTLY`` (writes and searches go on; the
  bulk build is ~10x cheaper per vector than inserting into a graph: 3.6 s for 20k). Until
  it is valid the tenant is scanned exactly, which is correct, only slower.
- **The predicate decides, not the name.** The planner uses a graph only for a query
  whose tenant filter implies its predicate; the name
  (``embeddings_g_<20 hex of sha256(namespace, user_id)>_<dims>``) only finds it again.
- **One build at a time across processes** (a session advisory lock): two concurrent
  ``CREATE INDEX CONCURRENTLY`` on one table wait for each other's snapshots.
- **A build that stopped half-way** (crash, ``close``) leaves an INVALID index; the next
  build drops it and starts again. A failed build is retried after ``_RETRY_S``.
  ``close`` first gives queued builds ``graph_close_wait_s`` (10 s: a 20k-vector graph
  takes ~4 s) to finish, so that a short-lived process (a CLI command) that queued one
  does not leave it to the next; then it cancels what still runs.
- **Erase** drops the tenant's graphs (``DROP INDEX CONCURRENTLY``, queued behind a
  running build rather than blocking the caller; its VACUUM skips a table a build holds:
  ``SKIP_LOCKED``). A build that finishes after its tenant was erased drops its own graph.
- **A build waits for older transactions**: ``CONCURRENTLY`` waits until every
  transaction that began before it has ended, so a session left idle in a transaction
  holds the build (and, through the lock, every later build) until it ends.
- **Planned per query**: the graph query is not prepared (``prepare=False``): a prepared
  statement's generic plan cannot prove that the tenant filter implies the graph's
  predicate, and the server switched to it after 5 + 5 runs, scanning exactly from then on.
- **Limits.** Each graph is an index of ``embeddings``: every insert evaluates every
  graph's predicate, and the planner considers each graph for every vector query. Cheap
  for hundreds of large tenants; for thousands, partition the table by tenant
  (docs/scaling.md).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from .base import Tenant
from .postgres_schema import MIGRATION_LOCK

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

log = logging.getLogger("memstrata.store")

GRAPH_LOCK = MIGRATION_LOCK + 2  # one graph build at a time, across processes
# pgvector indexes halfvec up to 4,000 dimensions; longer vectors are only scanned exactly.
HNSW_MAX_DIMS = 4000
_RETRY_S = 60.0    # a failed build is not retried sooner
_RECHECK_S = 30.0  # a graph known valid is looked up again after this (another process may drop it)
_MAX_TRACKED = 100_000


def graph_prefix(tenant: Tenant) -> str:
    digest = hashlib.sha256(f"{tenant.namespace}\0{tenant.user_id}".encode()).hexdigest()[:20]
    return f"embeddings_g_{digest}_"


def graph_name(tenant: Tenant, dims: int) -> str:
    return f"{graph_prefix(tenant)}{int(dims)}"


_VALID = ("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
          "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace")


class PgGraphsMixin:
    """The per-tenant HNSW graphs of ``PostgresStore`` (module docstring)."""

    if TYPE_CHECKING:
        url: str
        exact_below: int
        _timeout_s: float

        def _read(self, *, consistent: bool = False) -> AbstractContextManager[psycopg.Cursor[Any]]: ...

    def _init_graphs(self) -> None:
        self._graph_ready: dict[tuple[Tenant, int], float] = {}  # -> when last seen valid
        self._graph_due: dict[tuple[Tenant, int], int] = {}      # vectors to write before the next count
        self._graph_failed: dict[tuple[Tenant, int], float] = {}
        self._graph_jobs: deque[tuple[str, Tenant, int]] = deque()  # ("build" | "drop", tenant, dims)
        self._graph_queued: set[tuple[str, Tenant, int]] = set()
        self._graph_cv = threading.Condition()
        self._graph_thread: threading.Thread | None = None
        self._graph_conns: set[psycopg.Connection[Any]] = set()  # builders running (close cancels them)
        # Guards the three dicts above and graph_counts: the builder thread and callers'
        # threads (a server runs store calls on several) change them at once.
        self._graph_state = threading.Lock()
        self._graph_closed = False
        # maintenance_work_mem of a build: the graph is built in memory when it fits
        # (~1.2 kB a 384-dim vector), else pgvector builds it on disk, much more slowly.
        self.graph_work_mem = "512MB"
        self.graph_close_wait_s = 10.0
        # "built", "failed", "invalid_dropped", "dropped": what the builder did.
        self.graph_counts: Counter[str] = Counter()

    # -- which tenants have one ------------------------------------------------------
    def _has_graph(self, cur: psycopg.Cursor[Any], tenant: Tenant, dims: int) -> bool:
        key = (tenant, dims)
        seen = self._graph_ready.get(key)
        now = time.monotonic()
        if seen is not None and now - seen < _RECHECK_S:
            return True
        row = cur.execute(_VALID, (graph_name(tenant, dims),)).fetchone()
        if row is not None and row[0]:
            self._remember(self._graph_ready, key, now)
            return True
        self._forget(self._graph_ready, key)
        return False

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        with self._graph_state:
            if len(table) >= _MAX_TRACKED and key not in table:
                table.clear()
            table[key] = value

    def _forget(self, table: dict[Any, Any], key: Any) -> None:
        with self._graph_state:
            table.pop(key, None)

    def _count(self, what: str) -> None:
        with self._graph_state:
            self.graph_counts[what] += 1

    def _vectors_written(self, tenant: Tenant, dims: int, n: int) -> None:
        """After a write of ``n`` vectors: queue a graph build if the tenant may have just
        reached ``exact_below`` (counted only when it can have: see the module docstring)."""
        key = (tenant, dims)
        if dims < 1 or dims > HNSW_MAX_DIMS or key in self._graph_ready:
            return
        due = self._graph_due.get(key, 0) - n
        if due > 0:
            self._remember(self._graph_due, key, due)
            return
        with self._read() as cur:
            count = int(cur.execute(
                "SELECT count(*) FROM (SELECT 1 FROM embeddings WHERE namespace=%s AND user_id=%s AND dims=%s "
                "LIMIT %s) t", (tenant.namespace, tenant.user_id, dims, self.exact_below)).fetchone()[0])
            big = count >= self.exact_below
            if big and self._has_graph(cur, tenant, dims):
                return
        if big:
            self._request_graph("build", tenant, dims)
        self._remember(self._graph_due, key, max(1, self.exact_below - count) if not big else self.exact_below)

    # -- the builder thread ------------------------------------------------------------
    def _request_graph(self, kind: str, tenant: Tenant, dims: int) -> None:
        job = (kind, tenant, dims)
        with self._graph_cv:
            if self._graph_closed or job in self._graph_queued:
                return
            failed = self._graph_failed.get((tenant, dims))
            if kind == "build" and failed is not None and time.monotonic() - failed < _RETRY_S:
                return
            self._graph_queued.add(job)
            self._graph_jobs.append(job)
            if self._graph_thread is None or not self._graph_thread.is_alive():
                self._graph_thread = threading.Thread(target=self._graph_worker, name="memstrata-pg-graphs",
                                                      daemon=True)
                self._graph_thread.start()
            self._graph_cv.notify_all()

    def _graph_worker(self) -> None:
        while True:
            with self._graph_cv:
                if self._graph_closed or not self._graph_jobs:
                    self._graph_thread = None
                    self._graph_cv.notify_all()
                    return
                job = self._graph_jobs[0]
            kind, tenant, dims = job
            try:
                if kind == "build":
                    self._build_graph(tenant, dims)
                else:
                    self._drop_graphs(tenant)
            except Exception:  # noqa: BLE001 - the tenant stays on the exact scan; retried later
                with self._graph_cv:
                    closing = self._graph_closed
                if not closing:
                    log.warning("building the vector graph of a tenant failed; its searches stay exact "
                                "(retried in %.0f s)", _RETRY_S, exc_info=True)
                    self._count("failed")
                    self._remember(self._graph_failed, (tenant, dims), time.monotonic())
            finally:
                with self._graph_cv:
                    if self._graph_jobs and self._graph_jobs[0] == job:
                        self._graph_jobs.popleft()
                    self._graph_queued.discard(job)
                    self._graph_cv.notify_all()

    def _builder(self) -> psycopg.Connection[Any] | None:
        """An autocommit connection of its own (CONCURRENTLY cannot run in a transaction),
        registered so that ``close`` can cancel what it runs."""
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self._timeout_s)))
        with self._graph_cv:
            if self._graph_closed:
                conn.close()
                return None
            self._graph_conns.add(conn)
        return conn

    def _go_on(self, conn: psycopg.Connection[Any]) -> bool:
        """False once the store is closing (checked before each long statement: a cancel
        that arrives between statements is lost)."""
        with self._graph_cv:
            return not self._graph_closed

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        with self._graph_cv:
            self._graph_conns.discard(conn)
        conn.close()  # (ends the session: its advisory lock goes with it)

    def _build_graph(self, tenant: Tenant, dims: int, *, work_mem: str | None = None) -> bool:
        """Build the tenant's graph of ``dims`` if it is missing (or left invalid); True
        when it is valid afterwards."""
        name = graph_name(tenant, dims)
        conn = self._builder()
        if conn is None:
            return False
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (GRAPH_LOCK,))  # waits for another process's build
            row = conn.execute(_VALID, (name,)).fetchone()
            if row is not None and row[0]:
                self._remember(self._graph_ready, (tenant, dims), time.monotonic())
                return True
            if row is not None:  # left INVALID by a build that stopped half-way
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
                self._count("invalid_dropped")
            if not _tenant_exists(conn, tenant) or not self._go_on(conn):
                return False
            conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (work_mem or self.graph_work_mem,))
            conn.execute(sql.SQL(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON embeddings USING hnsw "
                "((vec::halfvec({dims})) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64) "
                "WHERE namespace = {ns} AND user_id = {user} AND dims = {dims}").format(
                    name=sql.Identifier(name), dims=sql.Literal(int(dims)),
                    ns=sql.Literal(tenant.namespace), user=sql.Literal(tenant.user_id)))
            if not _tenant_exists(conn, tenant):  # erased while it was built
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
                return False
            self._count("built")
            self._remember(self._graph_ready, (tenant, dims), time.monotonic())
            self._forget(self._graph_failed, (tenant, dims))
            return True
        finally:
            self._release(conn)

    def _drop_graphs(self, tenant: Tenant) -> None:
        conn = self._builder()
        if conn is None:
            return
        try:
            names = [r[0] for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'i' AND relnamespace = current_schema()::regnamespace "
                "AND starts_with(relname, %s)", (graph_prefix(tenant),)).fetchall()]
            if _tenant_exists(conn, tenant):
                return  # written again since the erase: its graphs serve the new rows
            for name in names:
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
                self._count("dropped")
            self._forget_tenant(tenant)  # (a build that ended after the erase may have marked one valid)
        finally:
            self._release(conn)

    def _forget_tenant(self, tenant: Tenant) -> None:
        with self._graph_state:
            for table in (self._graph_ready, self._graph_due, self._graph_failed):
                for key in [k for k in table if k[0] == tenant]:
                    del table[key]

    def _forget_graphs(self, tenant: Tenant) -> None:
        """After an erase: forget what this process knew and drop the tenant's graphs."""
        self._forget_tenant(tenant)
        self._request_graph("drop", tenant, 0)

    def build_graphs(self, *, work_mem: str | None = None) -> int:
        """Build now, in this thread, the graph of every tenant that has reached
        ``exact_below`` vectors of a dimension (after a load); returns how many are valid."""
        with self._read() as cur:
            rows = cur.execute(
                "SELECT namespace, user_id, dims FROM embeddings WHERE dims BETWEEN 1 AND %s "
                "GROUP BY namespace, user_id, dims HAVING count(*) >= %s ORDER BY 1, 2, 3",
                (HNSW_MAX_DIMS, self.exact_below)).fetchall()
        return sum(self._build_graph(Tenant(ns, user), int(dims), work_mem=work_mem) for ns, user, dims in rows)

    def wait_indexes(self, timeout: float | None = None) -> bool:
        """Wait until the graph builds (and drops) queued so far are done; False if
        ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._graph_cv:
            while self._graph_jobs and not self._graph_closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._graph_cv.wait(left)
            return not self._graph_jobs

    def _close_graphs(self, timeout: float = 10.0) -> None:
        """Stop the builder: after up to ``graph_close_wait_s`` for the queued jobs, what
        is left is dropped and a running build is cancelled (its half-built index is
        dropped and built again by the next process that needs it)."""
        if self.graph_close_wait_s > 0:
            self.wait_indexes(self.graph_close_wait_s)
        with self._graph_cv:
            self._graph_closed = True
            self._graph_jobs.clear()
            self._graph_queued.clear()
            thread = self._graph_thread
            self._graph_cv.notify_all()
        deadline = time.monotonic() + timeout
        while True:  # cancel until the builders are gone: a cancel between statements is lost
            with self._graph_cv:
                conns = list(self._graph_conns)
            if not conns or time.monotonic() > deadline:
                break
            for conn in conns:
                try:
                    conn.cancel_safe(timeout=1.0)
                except (psycopg.Error, OSError):
                    pass
            time.sleep(0.05)
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))


def _tenant_exists(conn: psycopg.Connection[Any], tenant: Tenant) -> bool:
    return conn.execute("SELECT 1 FROM tenants WHERE namespace=%s AND user_id=%s",
                        (tenant.namespace, tenant.user_id)).fetchone() is not None
