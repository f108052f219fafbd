"""``memstrata bench crash``, small and bounded: a real child process working on a real
SQLite file is SIGKILLed mid-operation again and again; every acknowledged op must
survive, nothing half-written may show, and note processing must resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from memstrata import Memory
from memstrata.bench.crash import NAMESPACE, OPS, _config


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MEMSTRATA_")}, "COLUMNS": "200"}


def _bench(tmp_path: Path, kills: int, *extra: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "memstrata", "bench", "crash", "--kills", str(kills), "--db-dir", str(tmp_path),
         "--max-delay", "0.4", "--json", *extra],
        capture_output=True, text=True, env=_env(), timeout=240)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_kills_mid_operation_lose_nothing(tmp_path: Path) -> None:
    rc, result, stderr = _bench(tmp_path, 18, "--seed", "7", "--background-every", "3")
    assert rc == 0, stderr
    assert result["ok"] is True and result["losses"] == 0 and result["violations"] == 0, result["violation_samples"]
    assert result["runs"] == 18 and sum(result["kills_landed"].values()) == 18
    assert result["runs_with_background_worker"] == 6
    # the kills really interrupted work: ops were in flight, of more than one kind
    interrupted = {k.split(" ")[0] for k, n in result["kills_landed"].items() if n and k.split(" ")[0] in OPS}
    assert result["kills_in_flight"] >= 5 and len(interrupted) >= 2, result["kills_landed"]
    assert result["acked_ops"].get("add", 0) > 0 and result["acked_ops_verified"] >= 30
    assert result["share_of_child_time_in_calls"] > 0 and result["median_call_ms"] > 0
    # after the last kill the store reopens clean and note processing has caught up
    with Memory(tmp_path / "crash.db", config=_config(background=False)) as mem:
        assert mem.store.integrity_check() == "ok"
        assert mem.pending() == 0


def test_a_record_no_acknowledged_op_wrote_is_reported(tmp_path: Path) -> None:
    # The checker must be able to fail: a turn already in the file was written by no op of
    # this run, so it counts as a loss (a resurrected or phantom record) and the run fails.
    with Memory(tmp_path / "crash.db", config=_config(background=False)) as mem:
        mem.add("a turn the crash run never wrote", user_id="intruder", namespace=NAMESPACE)
    rc, result, _ = _bench(tmp_path, 1)
    assert rc == 1
    assert result["ok"] is False and result["losses"] >= 1
    assert any("never acknowledged" in v for v in result["violation_samples"])


def test_fts_indexes_stay_readable_after_many_deletes(tmp_path: Path) -> None:
    # SQLite 3.40's FTS5 'optimize' (run by every delete's scrub) made the index one level
    # taller each time; past 2000 levels FTS5 refuses to open it ("vtable constructor
    # failed"). Without the rebuild, this mix of ops reaches ~40 levels in 80 ops.
    import random
    import sqlite3

    from memstrata.bench.crash import _FACTS, USERS
    from memstrata.store.sqlite import FTS_MAX_LEVELS, fts_levels

    rng = random.Random(3)
    db = tmp_path / "fts.db"
    with Memory(db, config=_config(background=False)) as mem:
        for seq in range(120):
            user = rng.choice(USERS)
            mem.add([{"role": "user", "content": f"q{seq}t{i} {rng.choice(_FACTS)}"} for i in range(rng.randint(1, 12))],
                    user_id=user, session_id=f"s{rng.randrange(4)}")
            if seq % 5 == 4:
                mem.process()
            eps = mem.list(user_id=user, limit=10_000)
            if seq % 7 == 6:
                mem.delete_session(eps[0].session_id, user_id=user)
            else:
                mem.delete(rng.choice(eps).id, user_id=user)
        survivor = mem.list(user_id=USERS[0], limit=1)[0]
        hits = mem.search(survivor.content.split()[0], user_id=USERS[0], k=3)
        assert hits and hits[0].episode_id == survivor.id
    con = sqlite3.connect(db, isolation_level=None)
    for fts in ("episodes_fts", "sessions_fts", "notes_fts"):
        levels = fts_levels(con.execute(f"SELECT block FROM {fts}_data WHERE id=10").fetchone()[0])
        assert levels <= FTS_MAX_LEVELS + 1, (fts, levels)
        con.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")
    con.close()
