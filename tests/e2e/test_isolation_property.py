"""Tenant isolation as a property (issue #6 item 4): a seeded random walk of >= 10,000
operations over 20 tenants (4 namespaces x 5 users with the same user ids, the same
session ids everywhere) through the Python API, the REST server (real uvicorn; namespace
keys, user-bound keys, an admin key), the MCP server (the SDK's client, in process and
over streamable HTTP with user-bound keys) and CLI
processes, checked against a shadow model after every operation and against the SQLite
file at the end. The engine is ``memstrata.bench.isolation`` (``memstrata bench
isolation`` runs it longer)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from memstrata.bench.isolation import ALL, Engine, run


def _workdir(tmp_path: Path) -> Path:
    """RAM-backed when there is one: the store syncs every write (synchronous=FULL), and on a
    shared disk those fsyncs, not the engine, took most of the wall time. Isolation does not
    depend on durability; the file is the same SQLite file either way."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path


def test_ten_thousand_operations_never_cross_a_tenant(tmp_path: Path) -> None:
    result = run(10_000, seed=20261122, cli_ops=4, workdir=_workdir(tmp_path))
    summary = result.as_dict()
    assert result.violations == [], summary["violation_examples"]
    # the walk cannot silently shrink: every interface carried its share
    assert result.total == 10_000
    assert result.ops["python"] >= 6_000
    assert result.ops["rest"] >= 2_500
    assert result.ops["mcp"] >= 150 and result.ops["mcp_http"] >= 60  # in process / streamable HTTP
    assert result.ops["cli"] == 4
    # every kind of operation ran, the hostile ones included
    for kind in ("python:add", "python:search", "python:erase", "python:get_foreign", "python:note_foreign",
                 "python:delete_foreign", "python:delete_session", "python:delete_session_foreign",
                 "python:export", "python:summary", "python:process", "rest:add", "rest:search",
                 "rest:get_foreign", "rest:note_foreign", "rest:delete_foreign", "rest:wrong_user",
                 "rest:admin_data", "rest:export", "rest:ns_stats", "rest:erase", "rest:job_foreign",
                 "rest:import_own", "rest:import_foreign", "python:import_foreign", "python:import_own", "mcp:remember", "mcp:recall",
                 "mcp:forget_foreign", "mcp:get_context", "mcp_http:remember", "mcp_http:recall",
                 "mcp_http:forget_foreign"):
        assert result.kinds[kind] > 0, kind
    # derived data was there to leak: notes, summaries, and every tenant holds turns at the end
    assert result.notes_seen > 1_000 and result.summaries_seen > 50
    final = result.final
    assert final["integrity"] == "ok" and final["cross_tenant_rows"] == 0 and final["fts_cross_matches"] == 0
    assert final["episodes"] > 2_000 and final["notes"] > 500 and final["summaries"] > 12
    assert result.checks > 50_000


def test_the_checker_sees_a_moved_record(tmp_path: Path) -> None:
    """Negative control: one episode moved to another tenant in the file (what a store bug
    would do) is reported by the final check, and a foreign marker in a read is reported."""
    eng = Engine(tmp_path, seed=3, log=lambda _: None)
    try:
        for t in ALL[:2]:
            for _ in range(3):
                eng.py("add", t)
    finally:
        eng.close()
    assert eng.result.violations == []
    victim = next(iter(eng.shadow.eps[ALL[0]]))
    c = sqlite3.connect(eng.db)
    c.execute("UPDATE episodes SET user_id=? WHERE id=?", (ALL[1].user_id, victim))
    c.commit()
    c.close()
    eng.check_file()
    assert any(victim in v or "episodes" in v for v in eng.result.violations), eng.result.violations
    eng.result.violations.clear()
    eng.check_text("read", ALL[0], f"hello {ALL[1].mark}q1", "probe")
    assert eng.result.violations


def test_bench_isolation_command(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "memstrata", "bench", "isolation", "--ops", "300", "--seed", "5",
                          "--cli-ops", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True and data["violations"] == 0
    assert data["ops_total"] == 300 and sum(data["ops_per_interface"].values()) == 300
    assert {"python", "rest", "mcp", "cli"} <= set(data["ops_per_interface"])
