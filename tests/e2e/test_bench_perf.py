"""memstrata bench perf: a small real run per store through the CLI (real SQLite file,
real PostgreSQL server, real bundled embedder for the vocabulary and the embedded-ingest
sample), plus the pieces whose mistakes a run would not show (recall, exact top-k,
the composed embedder, the corpus layout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memstrata.bench import perf, perf_corpus as pc, perf_svg
from memstrata.errors import InvalidInputError

KEYS = {"store": str, "size": int, "ingest_eps": float, "search_ms_p50": float, "search_ms_p95": float,
        "search_ms_p99": float, "ann_recall@10": float, "bytes_per_episode": float, "largest_tenant": int,
        "ingest_eps_embedded": float, "embed_ms_per_episode": float, "index_build_s": float,
        "query_embed_ms_p50": float, "small_tenant_search_ms_p50": float, "rss_mb": float, "disk_mb": float,
        "cpu_count": int, "ann_recall@10_search_depth": float, "search_depth": int}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("perf")  # shared: the vocabulary is embedded once


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memstrata", "bench", "perf", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def _check_run(workdir: Path, store: str, extra: list[str]) -> list[dict[str, Any]]:
    svg = workdir / f"{store}.svg"
    proc = _cli("--store", store, *extra, "--sizes", "2000", "--queries", "12", "--workdir", str(workdir),
                "--json", "--plot", str(svg))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)  # stdout holds the JSON only
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    for key, typ in KEYS.items():
        assert isinstance(row[key], typ) or (typ is float and isinstance(row[key], int)), (key, row[key])
    assert row["store"] == store and row["size"] == 2000 and row["episodes"] == 2000
    assert row["largest_tenant"] == 1000 and row["tenants"] >= 2
    assert row["ingest_eps"] > 0 and row["ingest_eps_embedded"] > 0 and row["embed_ms_per_episode"] > 0
    assert 0 <= row["ann_recall@10"] <= 1 and row["recall_queries"] == 12
    assert 0 <= row["ann_recall@10_search_depth"] <= 1 and row["search_depth"] == 200
    assert 0 < row["search_ms_p50"] <= row["search_ms_p95"] <= row["search_ms_p99"]
    assert row["search_queries"] == 12 and row["bytes_per_episode"] > 0
    # 1,000 turns is under ann_min_vectors: SQLite scans exactly, PostgreSQL asks its own index.
    assert row["ann_index"] is False and row["ann_build_s"] is None
    # The store's own vector index alone: PostgreSQL's (exact under 20k vectors), none in SQLite.
    assert (row["store_index_recall@10"] is None) == (store == "sqlite")
    if store == "postgres":
        assert row["store_index_recall@10"] == 1.0
    root = ET.fromstring(svg.read_text())
    assert root.tag.endswith("svg") and any(e.tag.endswith("polyline") for e in root.iter())
    return rows


def test_perf_sqlite(workdir: Path) -> None:
    rows = _check_run(workdir, "sqlite", [])
    assert rows[0]["ann_recall@10"] == 1.0  # SQLite's dense path is an exact scan
    assert rows[0]["server_rss_mb"] is None
    assert not list(workdir.glob("perf-*.db*"))  # the run's stores are removed


def test_perf_postgres(workdir: Path, pg_url: str) -> None:
    rows = _check_run(workdir, "postgres", ["--store-url", pg_url])
    assert rows[0]["server_rss_mb"] is None or rows[0]["server_rss_mb"] > 0
    assert rows[0]["server_shared_buffers"].endswith(("MB", "GB", "kB"))  # what the numbers ran under
    assert rows[0]["settle_s"] >= 0
    assert rows[0]["indexes_done"] is True and rows[0]["index_wait_s"] >= 0
    # Replot from the saved JSON without running.
    saved = workdir / "pg.json"
    saved.write_text(json.dumps(rows))
    svg = workdir / "replot.svg"
    proc = _cli("--from-json", str(saved), "--plot", str(svg), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == rows
    ET.fromstring(svg.read_text())


def test_the_embedded_server_is_sized_like_a_deployment(workdir: Path) -> None:
    """Without --store-url the bench starts its own server with a quarter of RAM (at
    most 4 GB) of shared buffers, not initdb's 128 MB, and removes it afterwards."""
    import psutil

    target = perf.PostgresTarget(workdir, None)
    pgdir = target._pgdir
    try:
        url = target.open("sized")
        got = target.settings(url)["server_shared_buffers"]
        want = min(psutil.virtual_memory().total // 4, 4 << 30) >> 20
        assert got == (f"{want >> 10}GB" if want % 1024 == 0 else f"{want}MB"), got
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:  # settle = VACUUM ANALYZE of every table
            c.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i")
            target.settle(url)
            row = c.execute("SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = 't'").fetchone()
        assert row is not None and None not in row
    finally:
        target.close()
    assert pgdir is not None and not pgdir.exists()


def test_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(InvalidInputError, match="--store"):
        perf.parse_stores("mysql")
    with pytest.raises(InvalidInputError, match="sizes"):
        perf.parse_sizes("10k")
    proc = _cli("--store", "sqlite", "--sizes", "2000", "--tenant-share", "1.5")
    assert proc.returncode == 2 and "tenant-share" in proc.stderr


def test_recall_control() -> None:
    exact = [f"e{i}" for i in range(10)]
    assert perf.recall_at_k(exact, exact) == 1.0
    assert perf.recall_at_k(list(reversed(exact)), exact) == 1.0  # order within the top 10 does not matter
    wrong = exact[:7] + ["x1", "x2", "x3"]
    assert perf.recall_at_k(wrong, exact) == pytest.approx(0.7)
    assert perf.recall_at_k([], exact) == 0.0
    assert perf.recall_at_k(exact[:9] + exact[:1], exact) == pytest.approx(0.9)  # a repeat is not a second hit
    # Ties: an id with the same exact similarity as the k-th counts; a lower one does not.
    sims = {f"e{i}": 1 - i / 100 for i in range(10)} | {"tie": 1 - 9 / 100, "low": 0.5}
    assert perf.recall_at_k(exact[:9] + ["tie"], exact, score=sims.__getitem__) == 1.0
    assert perf.recall_at_k(exact[:9] + ["low"], exact, score=sims.__getitem__) == pytest.approx(0.9)


def test_exact_top_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((5000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    q = vecs[:7] + 0.1 * rng.standard_normal((7, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    v16 = vecs.astype(np.float16)
    got = perf.exact_top(v16, q, 10, chunk=777)  # chunk boundaries inside the data
    want = np.argsort(-(v16.astype(np.float32) @ q.T).T, axis=1, kind="stable")[:, :10]
    assert np.array_equal(np.sort(got, axis=1), np.sort(want, axis=1))


def test_composed_embedder_refuses_unknown_text() -> None:
    e = perf.ComposedEmbedder(4)
    e.register(["a"], np.eye(4, dtype=np.float32)[:1])
    assert np.array_equal(e.embed(["a"])[0], np.eye(4)[0])
    e.clear()
    with pytest.raises(KeyError):
        e.embed(["a"])


def test_corpus_layout_is_exact_and_deterministic() -> None:
    pool = pc.Pool(np.random.default_rng(0).standard_normal((len(pc.pool_texts()), 16)).astype(np.float32))
    plan = pc.plan_users(50_000, 0.4, 5)
    assert plan[0] == ("large", 20_000) and sum(n for _, n in plan) == 50_000
    assert all(200 <= n <= 3000 for _, n in plan[1:])
    a = list(pc.corpus(pool, 3000, 0.5, 5))
    b = list(pc.corpus(pool, 3000, 0.5, 5))
    assert [s.messages for s in a] == [s.messages for s in b]
    assert sum(len(s.messages) for s in a) == 3000
    last = {s.user_id: s.session_id for s in a}  # a user's last session may be cut short
    assert all(8 <= len(s.messages) <= 30 for s in a if last[s.user_id] != s.session_id)
    assert [s.start for s in a] == sorted(s.start for s in a)  # sessions arrive in time order
    vecs = np.concatenate([s.vectors for s in a])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    keys = [(s.session_id, m["content"]) for s in a for m in s.messages]
    assert len({v.tobytes() for v in vecs}) == len(set(keys))  # noise: only a text repeated in its session repeats
    texts = [m["content"] for s in a for m in s.messages]
    assert len(set(texts)) > len(texts) // 2


def test_svg_is_wellformed_with_two_stores() -> None:
    rows = [{"store": s, "size": n, "search_ms_p50": p, "search_ms_p95": 2 * p}
            for s, base in (("sqlite", 1.0), ("postgres", 3.0)) for n, p in ((10_000, base), (100_000, 4 * base))]
    root = ET.fromstring(perf_svg.render(rows))
    assert len([e for e in root.iter() if e.tag.endswith("polyline")]) == 4
    with pytest.raises(ValueError):
        perf_svg.render([])
