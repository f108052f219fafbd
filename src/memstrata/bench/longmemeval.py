"""LongMemEval_S retrieval benchmark (Wu et al., ICLR 2025).

Each question is its own memory: its haystack sessions are ingested with their dates as
event times, then the question is asked ``as_of`` its question_date. Session-level
metrics score the session ranking against ``answer_session_ids``; turn-level metrics
score the turn ranking against turns marked ``has_answer``. Abstention questions
(``_abs``) have no evidence and are left out of the metrics, as in the paper.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..config import EmbedConfig, MemoryConfig, NotesConfig
from ..errors import InvalidFileError
from ..memory import Memory
from ..timeutil import parse_time
from .common import Progress, Speed, environment, load_json, mean, parse_variants
from .metrics import ndcg, recall_all, recall_any

K_VALUES = (5, 10)


def run(
    path: str | Path,
    *,
    limit: int | None = None,
    variants: str | None = None,
    embed: EmbedConfig | None = None,
    notes: bool = True,
    llm: Any = None,
    context_tokens: int = 2000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Retrieval metrics per question; with ``llm`` (an ``LLM``) also QA accuracy:
    the model answers from ``context()`` and an LLM judge scores the answer."""
    data = load_json(path)
    if not isinstance(data, list) or (data and not isinstance(data[0], dict)) or (data and "haystack_sessions" not in data[0]):
        raise InvalidFileError(f"{path} is not a LongMemEval file (a list of questions with haystack_sessions)")
    questions = data[:limit] if limit else data
    named = parse_variants(variants)
    embed = embed or EmbedConfig()
    embedder = _embedder(embed)
    speed = Speed()
    per_variant: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in named}
    skipped_empty = 0
    qa_rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memstrata-lme-") as tmp:
        for qi, q in enumerate(questions):
            config = MemoryConfig(retrieval=named[0][1], embed=embed,
                                  notes=NotesConfig(enabled=notes, background=False))
            with Memory(Path(tmp) / f"q{qi}.db", config=config, embedder=embedder or False) as mem:
                turn_ids, skipped = _ingest(mem, q, speed)
                skipped_empty += skipped
                as_of = parse_time(q["question_date"], what="question_date")
                if llm is not None:
                    qa_rows.append(_qa(llm, mem, q, as_of, named[0][1], context_tokens))
                if q["question_id"].endswith("_abs"):
                    continue
                evidence_sessions = set(q["answer_session_ids"])
                evidence_turns = {turn_ids[key] for key in _answer_turns(q) if key in turn_ids}
                for vi, (name, cfg) in enumerate(named):
                    def search(unit: str) -> list[Any]:
                        return mem.search(q["question"], user_id="u", k=10, unit=unit, as_of=as_of, variant=cfg)  # type: ignore[arg-type]  # noqa: B023

                    sessions = speed.timed_search(lambda: search("session")) if vi == 0 else search("session")
                    turns = search("turn")
                    ranked_sessions = list(dict.fromkeys(h.session_id for h in sessions))
                    ranked_turns = [h.episode_id for h in turns]
                    row = _score(q, ranked_sessions, evidence_sessions, ranked_turns, evidence_turns)
                    if q["question_type"] == "knowledge-update" and len(evidence_sessions) >= 2:
                        deep = [h.session_id for h in mem.search(q["question"], user_id="u", k=50, unit="session",
                                                                 as_of=as_of, variant=cfg)]
                        row["ku_newest_first"] = newest_first(deep, q)
                    per_variant[name].append(row)
            (Path(tmp) / f"q{qi}.db").unlink(missing_ok=True)
            if progress:
                progress(qi + 1, len(questions))
    elapsed = time.perf_counter() - started
    primary = named[0][0]
    result: dict[str, Any] = {"benchmark": "longmemeval_s", "variant": primary, **_summary(per_variant[primary])}
    result["n_abstention_skipped"] = sum(q["question_id"].endswith("_abs") for q in questions)
    result.update(speed.report())
    result["skipped_empty_turns"] = skipped_empty
    result["elapsed_s"] = round(elapsed, 1)
    if embedder is not None:
        result["embedder"] = {"model_id": embedder.model_id, **embedder.stats}
    if len(named) > 1:
        result["variants"] = {name: _summary(rows) for name, rows in per_variant.items()}
    if llm is not None:
        from .qa import summarise

        result["qa"] = {"model": llm.model_id, **summarise(qa_rows), "usage": llm.usage.as_dict()}
    result["config"] = {name: cfg.as_dict() for name, cfg in named}
    result["environment"] = environment()
    return result


def _qa(llm: Any, mem: Memory, q: dict[str, Any], as_of: Any, cfg: Any, tokens: int) -> dict[str, Any]:
    from .qa import answer_and_judge

    ctx = mem.context(q["question"], user_id="u", max_tokens=tokens, as_of=as_of, variant=cfg)
    qtype = "abstention" if q["question_id"].endswith("_abs") else q["question_type"]
    row = answer_and_judge(llm, benchmark="longmemeval", question=q["question"], gold=str(q["answer"]),
                           question_type=qtype, question_date=q["question_date"], context_text=ctx.text)
    return {"type": qtype, **row}


def _embedder(embed: EmbedConfig) -> Any:
    if not embed.enabled:
        return None
    from ..providers.embed import default_embedder

    return default_embedder(precision=embed.precision, max_tokens=embed.max_tokens, threads=embed.threads)


def _ingest(mem: Memory, q: dict[str, Any], speed: Speed) -> tuple[dict[tuple[str, int], str], int]:
    """Add every haystack session; return (session id, turn index) -> episode id."""
    turn_ids: dict[tuple[str, int], str] = {}
    skipped = 0
    sessions = list(zip(q["haystack_session_ids"], q["haystack_dates"], q["haystack_sessions"]))
    n_turns = sum(len(s) for _, _, s in sessions)
    with speed.ingest(n_turns):
        for sid, date, turns in sessions:
            kept = [(i, t) for i, t in enumerate(turns) if str(t.get("content", "")).strip()]
            skipped += len(turns) - len(kept)
            if not kept:
                continue
            stored = mem.add([{"role": t["role"], "content": t["content"]} for _, t in kept],
                             user_id="u", session_id=sid, timestamp=parse_time(date, what="haystack date"))
            for (i, _), ep in zip(kept, stored):
                turn_ids.setdefault((sid, i), ep.id)
        speed.process(mem)
    return turn_ids, skipped


def newest_first(ranked_sessions: list[str], q: dict[str, Any]) -> float:
    """1.0 when the newest evidence session (by date) ranks above every older one.
    For knowledge-update questions: the current fact before the one it replaced."""
    dates = {sid: parse_time(d, what="haystack date") for sid, d in zip(q["haystack_session_ids"], q["haystack_dates"])}
    evidence = sorted(q["answer_session_ids"], key=lambda s: dates[s])
    rank = {sid: i for i, sid in enumerate(ranked_sessions)}
    newest = rank.get(evidence[-1])
    if newest is None:
        return 0.0
    return float(all(rank.get(s, 10**9) > newest for s in evidence[:-1]))


def _answer_turns(q: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (sid, i)
        for sid, turns in zip(q["haystack_session_ids"], q["haystack_sessions"])
        for i, t in enumerate(turns)
        if t.get("has_answer")
    ]


def _score(q: dict[str, Any], sessions: list[str], ev_sessions: set[str], turns: list[str], ev_turns: set[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"type": q["question_type"]}
    for k in K_VALUES:
        row[f"recall_all@{k}"] = recall_all(sessions, ev_sessions, k)
        row[f"recall_any@{k}"] = recall_any(sessions, ev_sessions, k)
        row[f"ndcg_any@{k}"] = ndcg(sessions, ev_sessions, k)
    if ev_turns:
        row["turn_recall_all@10"] = recall_all(turns, ev_turns, 10)
        row["turn_recall_any@10"] = recall_any(turns, ev_turns, 10)
    return row


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = [f"{m}@{k}" for m in ("recall_all", "recall_any", "ndcg_any") for k in K_VALUES]
    out: dict[str, Any] = {"n": len(rows)}
    for m in metrics:
        out[m] = mean([r[m] for r in rows])
    with_turns = [r for r in rows if "turn_recall_all@10" in r]
    out["turn_n"] = len(with_turns)
    out["turn_recall_all@10"] = mean([r["turn_recall_all@10"] for r in with_turns])
    out["turn_recall_any@10"] = mean([r["turn_recall_any@10"] for r in with_turns])
    ku = [r["ku_newest_first"] for r in rows if "ku_newest_first" in r]
    out["ku_n"] = len(ku)
    out["ku_newest_first"] = mean(ku)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_type[r["type"]].append(r)
    out["by_type"] = {
        t: {"n": len(rs), "recall_all@5": mean([r["recall_all@5"] for r in rs]),
            "recall_all@10": mean([r["recall_all@10"] for r in rs]), "ndcg_any@10": mean([r["ndcg_any@10"] for r in rs])}
        for t, rs in sorted(by_type.items())
    }
    return out


