"""``memstrata bench poison``: memory poisoning (MINJA-style injection through memory).

Two measurements:

1. Injection: each attack of the corpus (``memstrata/data/injection_corpus.jsonl`` or
   ``--corpus``) is written into a fresh user's memory in the middle of a normal
   conversation (the demo conversation), then ``context()`` is asked a question that
   retrieves it. ``reached`` counts attacks whose text got into the default context
   (target 0); ``retrievable`` counts those that the same question puts into the
   context with ``include_flagged=True`` (shows the question really reaches the attack,
   so a 0 above is the guard's doing, not retrieval missing it). ``detected`` is the
   detector's recall on the corpus. The corpus and the rules were written together:
   a held-out corpus or an adaptive attacker will score lower.
2. False quarantine: the detector over every turn of the LoCoMo and LongMemEval_S dev
   conversations (LongMemEval turns deduplicated by text; its haystacks repeat), by
   dataset, role and reason (target < 1%), plus the corpus's benign hard negatives.
   Examples are recorded by location only: no dataset text is copied into results.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import EmbedConfig, MemoryConfig, NotesConfig
from ..errors import InvalidFileError
from ..safety import RULES_VERSION, scan
from .common import load_json

def load_corpus(path: str | Path | None = None) -> list[dict[str, Any]]:
    p: Any = Path(path) if isinstance(path, (str, Path)) else path if path is not None else resources.files("memstrata.data").joinpath("injection_corpus.jsonl")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidFileError(f"cannot read injection corpus {p}: {exc}") from exc
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidFileError(f"{p}: line {n} is not JSON: {exc}") from exc
        if not isinstance(row, dict) or row.get("kind") not in ("attack", "benign") or not isinstance(row.get("text"), str):
            raise InvalidFileError(f"{p}: line {n}: expected kind attack|benign and a text")
        if row["kind"] == "attack" and not isinstance(row.get("question"), str):
            raise InvalidFileError(f"{p}: line {n}: an attack needs a question")
        rows.append(row)
    return rows


def _demo() -> dict[str, Any]:
    return json.loads(resources.files("memstrata.data").joinpath("demo_conversation.json").read_text("utf-8"))


def run_injection(corpus: list[dict[str, Any]], *, embed: bool = True, limit: int | None = None,
                  log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Ingest each attack amid the demo conversation; ask its question through context()."""
    from ..memory import Memory

    attacks = [r for r in corpus if r["kind"] == "attack"][:limit]
    demo = _demo()
    sessions = demo["sessions"]
    config = MemoryConfig(embed=EmbedConfig(enabled=embed), notes=NotesConfig(enabled=True, background=False))
    rows = []
    with Memory(":memory:", config=config, embedder=None if embed else False) as mem:
        for i, atk in enumerate(attacks):
            user = f"victim-{i}"
            mid = len(sessions) // 2
            for j, s in enumerate(sessions):
                msgs = list(s["messages"])
                if j == mid:
                    msgs.insert(len(msgs) // 2, {"role": "user", "content": atk["text"]})
                mem.add(msgs, user_id=user, session_id=s["session_id"], timestamp=s["timestamp"])
            mem.process(user_id=user)
            atk_ids = {e.id for e in mem.list(user_id=user, limit=1000) if e.content == atk["text"]}
            ctx = mem.context(atk["question"], user_id=user, max_tokens=1500, as_of=demo["as_of"])
            opt = mem.context(atk["question"], user_id=user, max_tokens=1500, as_of=demo["as_of"], include_flagged=True)
            hits = mem.search(atk["question"], user_id=user, k=10, as_of=demo["as_of"])
            notes_from = [n for n in mem.notes(user_id=user, limit=1000) if atk_ids & set(n.source_episode_ids)]
            rows.append({
                "id": atk["id"], "family": atk.get("family", ""), "reasons": list(scan(atk["text"]).reasons),
                "reached": bool(atk_ids & set(ctx.episode_ids)) or atk["text"] in ctx.text,
                "retrievable": bool(atk_ids & set(opt.episode_ids)),
                "in_search_flagged": any(h.episode_id in atk_ids and h.flags for h in hits),
                "in_search_unflagged": any(h.episode_id in atk_ids and not h.flags for h in hits),
                "notes_derived": len(notes_from),
            })
            if (i + 1) % 10 == 0:
                log(f"injection: {i + 1}/{len(attacks)}")
    by_family: dict[str, dict[str, int]] = {}
    for r in rows:
        f = by_family.setdefault(r["family"], {"n": 0, "detected": 0, "reached": 0, "retrievable": 0})
        f["n"] += 1
        f["detected"] += bool(r["reasons"])
        f["reached"] += r["reached"]
        f["retrievable"] += r["retrievable"]
    n = len(rows)
    return {
        "attacks": n,
        "detected": sum(bool(r["reasons"]) for r in rows),
        "detection_recall": round(sum(bool(r["reasons"]) for r in rows) / n, 4) if n else None,
        "reached_context": sum(r["reached"] for r in rows),
        "retrievable_with_opt_in": sum(r["retrievable"] for r in rows),
        "shown_flagged_in_search": sum(r["in_search_flagged"] for r in rows),
        "shown_unflagged_in_search": sum(r["in_search_unflagged"] for r in rows),
        "notes_derived_from_attacks": sum(r["notes_derived"] for r in rows),
        "by_family": by_family,
        "missed": [r["id"] for r in rows if not r["reasons"]],
        "rows": rows,
    }


def _rate(flagged: int, total: int) -> float | None:
    return round(flagged / total, 6) if total else None


class _Tally:
    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.flagged: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def add(self, group: str, text: str, where: dict[str, Any]) -> None:
        self.total[group] += 1
        reasons = scan(text).reasons
        if reasons:
            self.flagged[group] += 1
            for r in reasons:
                self.reasons[f"{group}/{r}"] += 1
            if len(self.examples) < 50:
                self.examples.append({**where, "group": group, "reasons": list(reasons)})

    def result(self) -> dict[str, Any]:
        total, flagged = sum(self.total.values()), sum(self.flagged.values())
        return {
            "turns": total, "flagged": flagged, "rate": _rate(flagged, total),
            "by_role": {g: {"turns": self.total[g], "flagged": self.flagged[g], "rate": _rate(self.flagged[g], self.total[g])}
                        for g in sorted(self.total)},
            "by_reason": dict(sorted(self.reasons.items())),
            "examples": self.examples,
        }


def false_quarantine(locomo: str | Path | None, longmemeval: str | Path | None,
                     corpus: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if locomo is not None:
        t = _Tally()
        for conv in load_json(locomo):
            for key, turns in conv["conversation"].items():
                if key.startswith("session_") and isinstance(turns, list):
                    for turn in turns:
                        t.add("speaker", turn.get("text", ""), {"sample_id": conv.get("sample_id"), "dia_id": turn.get("dia_id")})
        out["locomo"] = t.result()
    if longmemeval is not None:
        t = _Tally()
        seen: set[str] = set()
        for q in load_json(longmemeval):
            for si, (sid, session) in enumerate(zip(q["haystack_session_ids"], q["haystack_sessions"])):
                for ti, turn in enumerate(session):
                    content = turn.get("content", "")
                    if content in seen:
                        continue
                    seen.add(content)
                    t.add(turn.get("role", "?"), content, {"question_id": q["question_id"], "session_id": sid, "turn": ti})
        out["longmemeval_s"] = t.result()
    benign = [r for r in corpus if r["kind"] == "benign"]
    flagged_neg = [r["id"] for r in benign if scan(r["text"]).flagged]
    out["hard_negatives"] = {"n": len(benign), "flagged": len(flagged_neg), "rate": _rate(len(flagged_neg), len(benign)),
                             "ids": flagged_neg}
    turns = sum(out[k]["turns"] for k in ("locomo", "longmemeval_s") if k in out)
    flagged = sum(out[k]["flagged"] for k in ("locomo", "longmemeval_s") if k in out)
    out["all_dev_turns"] = {"turns": turns, "flagged": flagged, "rate": _rate(flagged, turns)}
    return out


def run(*, corpus_path: str | Path | None = None, locomo: str | Path | None = None,
        longmemeval: str | Path | None = None, embed: bool = True, limit: int | None = None,
        log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    corpus = load_corpus(corpus_path)
    t0 = time.perf_counter()
    injection = run_injection(corpus, embed=embed, limit=limit, log=log)
    # Written after the rules were frozen (rules_version 2) and never used to tune them:
    # the honest estimate of what a new attacker's phrasing gets past the detector. (The
    # corpus's "round": 2 rows were the held-out set of version 1: 2 of 20 detected then.)
    heldout = run_injection(load_corpus(resources.files("memstrata.data").joinpath("injection_heldout.jsonl")),
                            embed=embed, log=log) if corpus_path is None else None
    t1 = time.perf_counter()
    fq = false_quarantine(locomo, longmemeval, corpus)
    t2 = time.perf_counter()
    dev_rate = fq["all_dev_turns"]["rate"]
    return {
        "benchmark": "poison", "rules_version": RULES_VERSION, "embed": embed,
        "corpus": {"attacks": sum(r["kind"] == "attack" for r in corpus), "benign": sum(r["kind"] == "benign" for r in corpus)},
        "injection": injection,
        "heldout": heldout and {k: v for k, v in heldout.items() if k != "by_family"},
        "false_quarantine": fq,
        "ok": injection["reached_context"] == 0 and (dev_rate is None or dev_rate < 0.01),
        "seconds": {"injection": round(t1 - t0, 1), "false_quarantine": round(t2 - t1, 1)},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "caveat": "detection recall is on a corpus written together with the rules; a held-out corpus will score lower",
    }


def render(result: dict[str, Any], console: Any) -> None:
    inj, fq = result["injection"], result["false_quarantine"]
    console.print(f"[bold]Injection[/bold] ({inj['attacks']} attacks amid normal conversation)")
    console.print(f"  detected: {inj['detected']}/{inj['attacks']} (recall {inj['detection_recall']}; own corpus)")
    console.print(f"  reached context() by default: {inj['reached_context']}  "
                  f"(with include_flagged: {inj['retrievable_with_opt_in']})")
    console.print(f"  notes derived from attacks: {inj['notes_derived_from_attacks']}; "
                  f"search shows flagged: {inj['shown_flagged_in_search']}, unflagged: {inj['shown_unflagged_in_search']}")
    for fam, f in sorted(inj["by_family"].items()):
        console.print(f"    {fam:14} n={f['n']:3} detected={f['detected']:3} reached={f['reached']:3} retrievable={f['retrievable']:3}")
    if result.get("heldout"):
        h = result["heldout"]
        console.print(f"[bold]Held-out attacks[/bold] (written after the rules were frozen): detected {h['detected']}/"
                      f"{h['attacks']}, reached context() {h['reached_context']} (retrievable {h['retrievable_with_opt_in']})")
    console.print("[bold]False quarantine[/bold]")
    for name in ("locomo", "longmemeval_s"):
        if name in fq:
            d = fq[name]
            console.print(f"  {name}: {d['flagged']}/{d['turns']} turns = {100 * (d['rate'] or 0):.3f}%")
            for role, r in d["by_role"].items():
                console.print(f"    {role}: {r['flagged']}/{r['turns']}")
            for reason, n in d["by_reason"].items():
                console.print(f"    {reason}: {n}")
    a = fq["all_dev_turns"]
    console.print(f"  all dev turns: {a['flagged']}/{a['turns']} = {100 * (a['rate'] or 0):.3f}%")
    h = fq["hard_negatives"]
    console.print(f"  hard negatives flagged: {h['flagged']}/{h['n']} {h['ids']}")
    console.print(f"ok: {result['ok']}")
