"""``memstrata bench serve``: the load run as a user runs it (CLI, the REST server in a
child process on loopback, SQLite), kept short; plus its workload loaders and guards."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from memstrata.bench.serve import load_workload, render, synthetic_workload

OPS = ("add", "search", "context")
OP_KEYS = {"requests", "ok", "errors", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"}


def _env() -> dict[str, str]:
    # The server child reads MEMSTRATA_*; the run must not depend on the caller's settings.
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MEMSTRATA_")}, "COLUMNS": "200"}


def test_short_load_run_reads_back_every_acknowledged_write(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    proc = subprocess.run(
        [sys.executable, "-m", "memstrata", "bench", "serve", "--duration", "3", "--writers", "1", "--readers", "2",
         "--users", "2", "--json", "--out", str(out)],
        capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    result = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == result
    assert result["benchmark"] == "serve" and result["ok"] is True and result["failures"] == []
    assert result["config"]["data"] == "synthetic" and result["config"]["host"] == "127.0.0.1"
    assert 3 <= result["duration_s"] < 10
    for op in OPS:
        o = result["operations"][op]
        assert OP_KEYS <= o.keys(), op
        assert o["requests"] > 0 and o["ok"] == o["requests"] and o["errors"] == {}, (op, o)
        assert o["requests_per_s"] > 0 and 0 < o["p50_ms"] <= o["p95_ms"] <= o["p99_ms"] <= o["max_ms"]
    overall = result["overall"]
    assert overall["requests"] == sum(result["operations"][op]["requests"] for op in OPS) > 0
    assert overall["requests_per_s"] > 0 and overall["status_5xx"] == 0 and overall["transport_errors"] == 0
    v = result["verification"]
    assert v["acknowledged"] == overall["turns_acknowledged"] + result["config"]["seed_turns"]
    assert overall["turns_acknowledged"] > 0 and result["config"]["seed_turns"] > 0
    assert v["missing"] == 0 and v["content_mismatch"] == 0 and v["verified"] == v["acknowledged"]
    assert v["stored"] == v["acknowledged"] and v["stored_not_acknowledged"] == 0 and v["duplicate_ids"] == 0
    assert result["notes"]["drained"] is True and result["notes"]["pending_after_drain"] == 0
    assert result["server"]["exit_code"] == 0 and result["server"]["log_errors"] == 0
    # A bare round trip is ~1 ms; ~40 ms means responses wait for delayed ACKs (no TCP_NODELAY).
    assert result["server"]["health_p50_ms"] < 20
    assert result["client"]["cpu_s"] >= 0 and "cores_shared_by_client_and_server" in result["environment"]

    # The human report, from the same result.
    buf = io.StringIO()
    render(result, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "p99 ms" in text and "missing 0" in text and "OK" in text and "share this machine" in text
    failed = {**result, "ok": False, "failures": ["3 acknowledged writes are missing"]}
    buf = io.StringIO()
    render(failed, Console(file=buf, width=200))
    assert "FAILED" in buf.getvalue() and "3 acknowledged writes are missing" in buf.getvalue()


def test_refuses_any_host_but_loopback(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        proc = subprocess.run([sys.executable, "-m", "memstrata", "bench", "serve", "--duration", "1", "--host", host],
                              capture_output=True, text=True, env=_env(), timeout=60)
        assert proc.returncode == 2 and "loopback" in proc.stderr, (host, proc.stderr)
    proc = subprocess.run([sys.executable, "-m", "memstrata", "bench", "serve", "--duration", "0"],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 2 and "--duration" in proc.stderr


def test_workloads_from_benchmark_files_and_synthetic(tmp_path: Path) -> None:
    conv: dict[str, object] = {"speaker_a": "Ana", "speaker_b": "Ben"}
    for s in (1, 2):
        conv[f"session_{s}_date_time"] = f"1:56 pm on {s} May, 2023"
        conv[f"session_{s}"] = [{"speaker": "Ana", "dia_id": f"D{s}:1", "text": f"I ran {s} miles."},
                                {"speaker": "Ben", "dia_id": f"D{s}:2", "text": "", "blip_caption": "a dog"}]
    locomo = tmp_path / "locomo.json"
    locomo.write_text(json.dumps([{"sample_id": "c1", "conversation": conv,
                                   "qa": [{"question": "How far did Ana run?", "answer": "2 miles"}]}]))
    w = load_workload(locomo, 3)
    assert w.source == "locomo:locomo.json" and [u.user_id for u in w.users] == ["user0", "user1", "user2"]
    first = w.users[0].sessions[0]
    assert first.session_id == "c1-session_1" and first.timestamp.day == 1
    assert first.messages == [{"role": "user", "name": "Ana", "content": "I ran 1 miles."},
                              {"role": "user", "name": "Ben", "content": "[shares an image: a dog]"}]
    assert w.users[2].queries == ["How far did Ana run?"]

    lme = tmp_path / "lme.json.gz"
    with gzip.open(lme, "wt") as fh:
        json.dump([{"question_id": f"q{i}", "question": f"question {i}?", "question_date": "2023/06/01 (Thu) 10:00",
                    "haystack_session_ids": [f"s{i}", "shared"],
                    "haystack_dates": ["2023/05/01 (Mon) 10:00", "2023/05/02 (Tue) 10:00"],
                    "haystack_sessions": [[{"role": "user", "content": f"hello {i}"},
                                           {"role": "assistant", "content": " "}],
                                          [{"role": "user", "content": "shared"}]]} for i in range(3)], fh)
    w = load_workload(lme, 2)
    ids = sorted(s.session_id for u in w.users for s in u.sessions)
    assert w.source.startswith("longmemeval:") and ids == ["s0", "s1", "s2", "shared"]  # each session once
    assert all(m["content"].strip() for u in w.users for s in u.sessions for m in s.messages)
    assert [len(u.queries) for u in w.users] == [2, 1]

    a, b = synthetic_workload(2, seed=7), synthetic_workload(2, seed=7)
    assert a == b and a.source == "synthetic"
    u0 = a.users[0]
    assert len(u0.sessions) == 60 and u0.queries and all(6 <= len(s.messages) <= 16 for s in u0.sessions)
    times = [s.timestamp for s in u0.sessions]
    assert times == sorted(times) and len({m["name"] for s in u0.sessions for m in s.messages}) == 2
