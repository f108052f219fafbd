"""LoCoMo retrieval benchmark (Maharana et al., ACL 2024).

Each conversation is its own memory; both speakers' turns are stored with role "user"
and the speaker's name, the session's date as event time, and an image's caption
appended to its turn as "[shares an image: ...]" (the turn's content as the other
speaker saw it). Questions of categories 1-4 with evidence are scored; category 5
(adversarial) has no answer in the conversation. Questions are asked as of the last
session's time.
"""

from __future__ import annotations

import re
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
from .longmemeval import _embedder
from .metrics import answer_in, recall_fraction

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
_DIA = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")


def normalize_evidence(raw: list[Any]) -> tuple[list[str], int]:
    """Canonical dia_ids ("D8:6") from LoCoMo's evidence strings, which include faults
    such as "D8:6; D9:17", "D:11:26" and "D30:05". Returns (ids, how many were repaired)."""
    out: list[str] = []
    repaired = 0
    for item in raw:
        found = [f"D{int(a)}:{int(b)}" for a, b in _DIA.findall(str(item))]
        if len(found) != 1 or found[0] != str(item).strip():
            repaired += 1
        out.extend(found)
    return list(dict.fromkeys(out)), repaired


def run(
    path: str | Path,
    *,
    limit: int | None = None,
    variants: str | None = None,
    embed: EmbedConfig | None = None,
    notes: bool = True,
    context_tokens: int = 2000,
    llm: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evidence recall per question; with ``llm`` (an ``LLM``) also QA accuracy from
    ``context()``, scored by an LLM judge."""
    data = load_json(path)
    if not isinstance(data, list) or (data and "conversation" not in data[0]):
        raise InvalidFileError(f"{path} is not a LoCoMo file (a list of conversations with qa)")
    named = parse_variants(variants)
    embed = embed or EmbedConfig()
    embedder = _embedder(embed)
    speed = Speed()
    per_variant: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in named}
    counts = {"evidence_repaired": 0, "evidence_missing": 0, "questions_without_evidence": 0}
    total_q = sum(len(c["qa"]) for c in data)
    budget = limit or total_q
    done = 0
    qa_rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memstrata-locomo-") as tmp:
        for ci, conv in enumerate(data):
            if done >= budget:
                break
            config = MemoryConfig(retrieval=named[0][1], embed=embed,
                                  notes=NotesConfig(enabled=notes, background=False))
            with Memory(Path(tmp) / f"c{ci}.db", config=config, embedder=embedder or False) as mem:
                dia_ids, last_time = _ingest(mem, conv["conversation"], speed)
                for qa in conv["qa"]:
                    if done >= budget:
                        break
                    done += 1
                    if progress:
                        progress(done, budget)
                    if qa.get("category") not in (1, 2, 3, 4):
                        continue
                    evidence, repaired = normalize_evidence(qa.get("evidence", []))
                    counts["evidence_repaired"] += repaired
                    known = {dia_ids[e] for e in evidence if e in dia_ids}
                    counts["evidence_missing"] += sum(e not in dia_ids for e in evidence)
                    if not known:
                        counts["questions_without_evidence"] += 1
                        continue
                    for vi, (name, cfg) in enumerate(named):
                        def search() -> list[Any]:
                            return mem.search(qa["question"], user_id="u", k=10, unit="turn", as_of=last_time, variant=cfg)  # noqa: B023

                        hits = speed.timed_search(search) if vi == 0 else search()
                        ranked = [h.episode_id for h in hits]
                        row = {"category": qa["category"], "recall@5": recall_fraction(ranked, known, 5),
                               "recall@10": recall_fraction(ranked, known, 10)}
                        if vi == 0 and "answer" in qa:
                            ctx = mem.context(qa["question"], user_id="u", max_tokens=context_tokens,
                                              as_of=last_time, variant=cfg)
                            row["answer_in_context"] = float(answer_in(qa["answer"], ctx.text))
                            if llm is not None:
                                from .qa import answer_and_judge

                                qa_rows.append({"type": CATEGORIES[qa["category"]], **answer_and_judge(
                                    llm, benchmark="locomo", question=qa["question"], gold=str(qa["answer"]),
                                    question_type=CATEGORIES[qa["category"]], question_date=str(last_time),
                                    context_text=ctx.text)})
                        per_variant[name].append(row)
    primary = named[0][0]
    result: dict[str, Any] = {"benchmark": "locomo", "variant": primary, **_summary(per_variant[primary])}
    result.update(speed.report())
    result.update(counts)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
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


def _ingest(mem: Memory, conv: dict[str, Any], speed: Speed) -> tuple[dict[str, str], Any]:
    sessions = sorted(
        (int(k.split("_")[1]), k) for k in conv if re.fullmatch(r"session_\d+", k) and conv[k]
    )
    dia_ids: dict[str, str] = {}
    last_time = None
    n_turns = sum(len(conv[k]) for _, k in sessions)
    with speed.ingest(n_turns):
        for n, key in sessions:
            when = parse_time(conv[f"{key}_date_time"], what=f"{key}_date_time")
            turns = [t for t in conv[key] if str(t.get("text", "")).strip() or t.get("blip_caption")]
            messages = [
                {"role": "user", "name": t["speaker"], "content": _content(t),
                 "metadata": {"dia_id": t.get("dia_id")}}
                for t in turns
            ]
            stored = mem.add(messages, user_id="u", session_id=f"session_{n}", timestamp=when)
            for t, ep in zip(turns, stored):
                if t.get("dia_id"):
                    did, _ = normalize_evidence([t["dia_id"]])
                    if did:
                        dia_ids[did[0]] = ep.id
            last_time = when if last_time is None or when > last_time else last_time
        speed.process(mem)
    return dia_ids, last_time


def _content(turn: dict[str, Any]) -> str:
    text = str(turn.get("text", "")).strip()
    if turn.get("blip_caption"):
        text = f"{text} [shares an image: {turn['blip_caption']}]".strip()
    return text


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows), "recall@5": mean([r["recall@5"] for r in rows]),
                           "recall@10": mean([r["recall@10"] for r in rows])}
    aic = [r["answer_in_context"] for r in rows if "answer_in_context" in r]
    if aic:
        out["answer_in_context"] = mean(aic)
    by_cat: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    out["by_category"] = {
        f"{c}-{CATEGORIES[c]}": {
            "n": len(rs), "recall@5": mean([r["recall@5"] for r in rs]), "recall@10": mean([r["recall@10"] for r in rs]),
            **({"answer_in_context": mean([r["answer_in_context"] for r in rs if "answer_in_context" in r])}
               if any("answer_in_context" in r for r in rs) else {}),
        }
        for c, rs in sorted(by_cat.items())
    }
    return out
