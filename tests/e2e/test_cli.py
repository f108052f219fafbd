"""The CLI as a user runs it: a real process, a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, db: Path, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMSTRATA_PATH": str(db), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "memstrata", *args], capture_output=True, text=True,
                          env=env, input=input, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def test_add_search_list_delete_export_import_stats(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    out = run("add", "I keep my bike in the blue shed", "-u", "ana", "--time", "2024-02-01T10:00:00Z",
              "--no-embed", "--json", db=db)
    ep = json.loads(out.stdout)[0]
    assert ep["content"] == "I keep my bike in the blue shed" and ep["event_time"].startswith("2024-02-01T10:00")
    hits = json.loads(run("search", "where is the bike?", "-u", "ana", "--no-embed", "--json", db=db).stdout)
    assert hits[0]["episode_id"] == ep["id"] and hits[0]["score"] > 0
    human = run("search", "bike shed", "-u", "ana", "--no-embed", db=db).stdout
    assert "blue shed" in human and "2024-02-01" in human
    listed = json.loads(run("list", "-u", "ana", "--json", db=db).stdout)
    assert [e["id"] for e in listed] == [ep["id"]]
    ctx = run("context", "bike", "-u", "ana", "--no-embed", db=db).stdout
    assert "[2024-02-01 10:00 (Thu)] user: I keep my bike" in ctx
    assert json.loads(run("export", str(tmp_path / "x.jsonl"), "--json", db=db).stdout)["exported"] == 1
    assert json.loads(run("delete", ep["id"], "-u", "ana", "--json", db=db).stdout) == {"deleted": 1}
    assert json.loads(run("stats", "-u", "ana", "--json", db=db).stdout)["episodes"] == 0
    assert json.loads(run("import", str(tmp_path / "x.jsonl"), "--no-embed", "--json", db=db).stdout) == {"imported": 1}
    assert json.loads(run("erase", "-u", "ana", "--yes", "--json", db=db).stdout) == {"erased": 1}


def test_ingest_file_with_progress_and_all_or_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ing.db"
    good = tmp_path / "convs.jsonl"
    good.write_text("\n".join(json.dumps({"user_id": "u", "session_id": f"s{i}", "timestamp": f"2024-01-0{i + 1}",
                                          "messages": [{"role": "user", "content": f"fact number {i}"},
                                                       {"role": "assistant", "content": "ok"}]})
                              for i in range(3)) + "\n")
    proc = run("ingest", str(good), "--no-embed", "--json", db=db)
    assert json.loads(proc.stdout) == {"conversations": 3, "episodes": 6, "notes_created": 0}
    assert "ingesting" in proc.stderr  # the progress bar
    bad = tmp_path / "bad.json"
    bad.write_text('[{"user_id": "u", "messages": [{"role": "user", "content": "x"}]}, {"oops": 1}]')
    proc = run("ingest", str(bad), "--no-embed", db=db, check=False)
    assert proc.returncode == 2 and "conversation 1 must be an object with a 'messages' list" in proc.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"user_id": "u", "messages": [')
    proc = run("ingest", str(broken), db=db, check=False)
    assert proc.returncode == 2 and "not valid JSON: line 1" in proc.stderr
    assert json.loads(run("stats", "-u", "u", "--json", db=db).stdout)["episodes"] == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "", "-u", "ana", "--no-embed"), "content is empty"),
        (("add", "x", "-u", "ana", "--time", "whenever", "--no-embed"), "not a recognised time"),
        (("add", "x", "-u", "ana", "--role", "alien", "--no-embed"), "unknown role 'alien'"),
        (("search", "x", "-u", "ana", "--variant", "nope", "--no-embed"), "unknown retrieval variant"),
        (("delete", "missing-id", "-u", "ana"), "no episode 'missing-id'"),
    ],
)
def test_errors_are_one_clear_line_and_non_zero(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = run(*args, db=tmp_path / "e.db", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_demo_runs_with_the_bundled_model(tmp_path: Path) -> None:
    proc = run("demo", "--db", str(tmp_path / "demo.db"), db=tmp_path / "unused.db")
    out = proc.stdout
    assert "Ingested 15 turns in 4 sessions" in out
    assert "Pepper" in out and "Lisbon" in out and "Gaggia" in out and "Sintra" in out
    assert "Context for the last question" in out


def test_notes_process_history_summary_forget(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    run("add", "I live in Lisbon with my cat Miso.", "-u", "ana", "-t", "2024-01-01", "--no-embed", db=db)
    run("add", "I moved to Berlin.", "-u", "ana", "-t", "2024-06-01", "--no-embed", "--defer-notes", db=db)
    assert len(json.loads(run("notes", "-u", "ana", "--json", db=db).stdout)) == 1, "deferred: not yet derived"
    proc = run("process", "--no-embed", "--json", db=db)
    report = json.loads(proc.stdout)
    assert (report["episodes"], report["notes_created"], report["superseded"]) == (1, 1, 1)
    assert "deriving notes" in proc.stderr  # the progress bar
    notes = json.loads(run("notes", "-u", "ana", "--json", db=db).stdout)
    old = next(n for n in notes if "Lisbon" in n["content"])
    new = next(n for n in notes if "Berlin" in n["content"])
    assert old["status"] == "superseded" and old["superseded_by"] == new["id"]
    assert old["valid_to"].startswith("2024-06-01")
    hist = json.loads(run("history", old["id"], "-u", "ana", "--json", db=db).stdout)
    assert [h["action"] for h in hist["history"]] == ["created", "superseded"]
    assert hist["links"][0]["kind"] == "updates"
    assert "Berlin" in run("summary", "-u", "ana", db=db).stdout
    human = run("notes", "-u", "ana", "--status", "active", db=db).stdout
    assert "Berlin" in human and "Lisbon" not in human
    dry = json.loads(run("forget", "-u", "ana", "--as-of", "2031-01-01", "--dry-run", "--json", db=db).stdout)
    assert len(dry["notes"]) == 2
    gone = json.loads(run("forget", "-u", "ana", "--as-of", "2031-01-01", "--json", db=db).stdout)
    assert sorted(gone["notes"]) == sorted(dry["notes"])
    assert json.loads(run("notes", "-u", "ana", "--json", db=db).stdout) == []
    assert len(json.loads(run("list", "-u", "ana", "--json", db=db).stdout)) == 2, "episodes are kept"
    bad = run("notes", "-u", "ana", "--status", "zombie", db=db, check=False)
    assert bad.returncode == 2 and "status must be active, superseded" in bad.stderr
    missing = run("history", "n-nope", "-u", "ana", db=db, check=False)
    assert missing.returncode == 1 and "no note 'n-nope'" in missing.stderr
