"""``memstrata bench fuzz`` as a user runs it (a real process, real atheris), briefly; the
committed run is benchmarks/results/fuzz_120s.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memstrata.bench.fuzz import TARGETS, _Crashes


def test_fuzz_command_runs_bounded_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [sys.executable, "-m", "memstrata", "bench", "fuzz", "--targets", "timestamp,ingest", "--seconds", "2",
         "--seed", "7", "--crash-dir", str(tmp_path / "crashes"), "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result == json.loads(out.read_text())
    assert [t["target"] for t in result["targets"]] == ["timestamp", "ingest"]
    for t in result["targets"]:
        assert t["executions"] > 100 and t["exec_per_s"] > 0 and t["crashes"] == 0 and 1.5 <= t["seconds"] <= 10
    assert result["seed"] == 7 and result["total_crashes"] == 0


def test_unknown_target_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "memstrata", "bench", "fuzz", "--targets", "parser9", "--seconds", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown fuzz target 'parser9'" in proc.stderr and "Traceback" not in proc.stderr
    assert set(TARGETS) == {"ingest", "normalize", "timestamp", "timeexpr", "import"}


def test_a_crash_is_kept_once_per_site_with_its_input(tmp_path: Path) -> None:
    state = _Crashes("demo", tmp_path, deadline=float("inf"), stats_path=tmp_path / "s.json")
    for data in (b"first", b"second"):
        try:
            {}["missing"]
        except KeyError as exc:
            state.record(data, exc)
    state.dump()
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["crashes"] == 2 and len(stats["distinct_crashes"]) == 1
    assert [p.read_bytes() for p in (tmp_path / "demo").iterdir()] == [b"first"]
