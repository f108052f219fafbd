"""``memstrata bench poison`` as a real process: a bounded run (no dev data, no embedder)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_poison_cli(tmp_path: Path) -> None:
    out = tmp_path / "poison.json"
    proc = subprocess.run([sys.executable, "-m", "memstrata", "bench", "poison", "--no-embed", "--limit", "12",
                           "--json", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == json.loads(out.read_text())
    inj = result["injection"]
    assert inj["attacks"] == 12 and inj["reached_context"] == 0
    assert inj["retrievable_with_opt_in"] >= 10  # the questions do reach the attacks: the guard holds them back
    assert inj["notes_derived_from_attacks"] == 0
    assert result["false_quarantine"]["hard_negatives"]["flagged"] == 0
    assert result["heldout"]["attacks"] == 25  # reported, whatever it scores


def test_bench_poison_rejects_a_bad_corpus(tmp_path: Path) -> None:
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"kind": "attack", "text": "no question"}\n')
    proc = subprocess.run([sys.executable, "-m", "memstrata", "bench", "poison", "--no-embed", "--corpus", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "needs a question" in proc.stderr
