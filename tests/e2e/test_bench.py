"""The benchmark harness on small files in the benchmarks' own formats (built here), and
on a slice of the real dev data when ../shared/bench is present (CI has it)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memstrata.bench import locomo, longmemeval
from memstrata.bench.metrics import answer_in, ndcg, normalize_answer, recall_all, recall_any, recall_fraction

TOPICS = ["sourdough baking", "marathon training", "python debugging", "tomato gardening", "jazz guitar",
          "bird watching", "car insurance", "wedding planning"]
SHARED = Path(__file__).resolve().parents[3] / "shared" / "bench"

LME_KEYS = {"n", "recall_all@5", "recall_all@10", "recall_any@5", "ndcg_any@10", "turn_recall_all@10",
            "ingest_turns_per_s", "search_ms_p50", "search_ms_p95", "by_type"}
LOCOMO_KEYS = {"n", "recall@5", "recall@10", "by_category", "answer_in_context", "ingest_turns_per_s",
               "search_ms_p50", "search_ms_p95"}


def _lme_file(tmp: Path) -> Path:
    questions = []
    for qi, (answer_topic, qtype) in enumerate([("sourdough baking", "single-session-user"),
                                                ("tomato gardening", "knowledge-update"),
                                                ("jazz guitar", "temporal-reasoning")]):
        sessions, ids, dates = [], [], []
        for si, topic in enumerate(TOPICS):
            turns = [{"role": "user", "content": f"Let's talk about {topic}. I have questions about {topic}."},
                     {"role": "assistant", "content": f"Sure, {topic} is a great subject."}]
            if topic == answer_topic:
                turns[0]["has_answer"] = True
            sessions.append(turns)
            ids.append(("answer_" if topic == answer_topic else "") + f"s{qi}_{si}")
            dates.append(f"2023/05/{si + 1:02d} (Mon) 10:00")
        questions.append({
            "question_id": f"q{qi}", "question_type": qtype, "question": f"What did I ask about {answer_topic}?",
            "answer": "x", "question_date": "2023/06/01 (Thu) 10:00", "haystack_session_ids": ids,
            "haystack_dates": dates, "haystack_sessions": sessions,
            "answer_session_ids": [i for i in ids if i.startswith("answer_")],
        })
    questions.append({**questions[0], "question_id": "q0_abs", "answer_session_ids": []})
    path = tmp / "lme.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(questions, fh)
    return path


def _locomo_file(tmp: Path) -> Path:
    conv = {"speaker_a": "Ana", "speaker_b": "Ben"}
    for s, topic in enumerate(TOPICS[:4], start=1):
        conv[f"session_{s}_date_time"] = f"1:56 pm on {s} May, 2023"
        conv[f"session_{s}"] = [
            {"speaker": "Ana", "dia_id": f"D{s}:1", "text": f"I spent the weekend on {topic}."},
            {"speaker": "Ben", "dia_id": f"D{s}:2", "text": "Sounds fun, tell me more!"},
        ]
    conv["session_2"][1]["blip_caption"] = "a photo of a red kite over a hill"
    qa = [
        {"question": "What did Ana do with sourdough?", "answer": "sourdough baking", "evidence": ["D1:1"], "category": 4},
        {"question": "When did Ana train for a marathon?", "answer": "2 May 2023", "evidence": ["D2:1; D2:2"], "category": 2},
        {"question": "What did Ben's photo show?", "answer": "red kite", "evidence": ["D:2:2"], "category": 1},
        {"question": "What is Ana's favourite colour?", "adversarial_answer": "blue", "evidence": [], "category": 5},
        {"question": "Ghost evidence?", "answer": "x", "evidence": ["D99:1"], "category": 3},
    ]
    path = tmp / "locomo.json"
    path.write_text(json.dumps([{"sample_id": "c1", "conversation": conv, "qa": qa}]))
    return path


def test_metrics_match_their_definitions() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_any(ranked, {"c", "z"}, 3) == 1.0 and recall_all(ranked, {"c", "z"}, 4) == 0.0
    assert recall_all(ranked, {"a", "d"}, 4) == 1.0 and recall_fraction(ranked, {"a", "z"}, 2) == 0.5
    assert ndcg(ranked, {"a"}, 10) == 1.0
    assert ndcg(["x", "a"], {"a"}, 10) == pytest.approx(1.0)  # LongMemEval's DCG: positions 0 and 1 both undiscounted
    assert ndcg(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 1.5849625, rel=1e-6)
    assert normalize_answer("The  Red, Kite!") == "red kite"
    assert answer_in("red kite", "I saw a RED kite.") and not answer_in("red", "reddish")


def test_longmemeval_runner_on_a_tiny_haystack(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    result = longmemeval.run(_lme_file(tmp_path), variants="hybrid;bm25")
    assert LME_KEYS <= result.keys()
    assert result["n"] == 3 and result["n_abstention_skipped"] == 1
    assert result["recall_all@5"] == 1.0 and result["ndcg_any@10"] == 1.0
    assert result["turn_recall_all@10"] == 1.0
    assert set(result["variants"]) == {"hybrid", "bm25"}
    assert set(result["by_type"]) == {"single-session-user", "knowledge-update", "temporal-reasoning"}
    assert result["ingest_turns_per_s"] > 0 and result["search_ms_p95"] >= result["search_ms_p50"] > 0


def test_locomo_runner_normalises_evidence_and_scores(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    result = locomo.run(_locomo_file(tmp_path))
    assert LOCOMO_KEYS <= result.keys()
    assert result["n"] == 3  # category 5 and the question whose evidence does not exist are left out
    assert result["evidence_repaired"] == 2 and result["evidence_missing"] == 1
    assert result["questions_without_evidence"] == 1
    assert result["recall@10"] == 1.0
    assert result["by_category"]["4-single-hop"]["recall@5"] == 1.0
    assert result["answer_in_context"] > 0


def test_normalize_evidence_repairs_known_faults() -> None:
    assert locomo.normalize_evidence(["D8:6; D9:17", "D:11:26", "D30:05", "D1:3", "junk"]) == (
        ["D8:6", "D9:17", "D11:26", "D30:5", "D1:3"], 4)


def test_bench_cli_prints_json(tmp_path: Path) -> None:
    env = {**os.environ}
    proc = subprocess.run([sys.executable, "-m", "memstrata", "bench", "longmemeval", str(_lme_file(tmp_path)),
                           "--limit", "2", "--variant", "bm25", "--no-embed", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert LME_KEYS <= result.keys() and result["n"] == 2
    human = subprocess.run([sys.executable, "-m", "memstrata", "bench", "locomo", str(_locomo_file(tmp_path)),
                            "--variant", "hybrid;bm25", "--no-embed"], capture_output=True, text=True, env=env, timeout=300)
    assert human.returncode == 0, human.stderr
    assert "recall@10" in human.stdout and "bm25" in human.stdout and "search_ms_p95" in human.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    proc = subprocess.run([sys.executable, "-m", "memstrata", "bench", "locomo", str(bad), "--no-embed"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "not a LoCoMo file" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/bench beside the checkout (present in CI)")
def test_real_dev_data_slice(embedder) -> None:  # type: ignore[no-untyped-def]
    lme = longmemeval.run(SHARED / "longmemeval_s_dev.json.gz", limit=5)
    assert lme["n"] >= 4 and lme["recall_any@10"] >= 0.5
    lo = locomo.run(SHARED / "locomo_dev.json.gz", limit=60)
    assert lo["n"] > 20 and lo["recall@10"] > 0.3
