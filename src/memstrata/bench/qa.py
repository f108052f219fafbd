"""QA evaluation with an LLM: answer from ``context()``, score with an LLM judge.
Pure functions over an ``LLM``; the runners call them when ``--llm`` is given."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from ..prompts import answer as answer_prompt
from ..prompts import judge
from ..providers.llm import LLM, LLMError


def answer_and_judge(llm: LLM, *, benchmark: Literal["longmemeval", "locomo"], question: str, gold: str,
                     question_type: str, question_date: str, context_text: str) -> dict[str, Any]:
    """Answer ``question`` from ``context_text`` with ``complete``, then judge the answer
    against ``gold``: ``structured`` first, a plain yes/no reply read by
    ``judge.parse_verdict`` if that fails. Returns ``answer``, ``correct`` and
    ``judge_reason``, plus ``error: True`` when the LLM could not answer or judge (the
    row then counts as wrong). LongMemEval's ``_abs`` questions take
    ``question_type="abstention"``."""
    try:
        answer = llm.complete(answer_prompt.messages(question, question_date=question_date, context=context_text),
                              max_tokens=200).strip()
    except LLMError as exc:
        return {"answer": "", "correct": False, "judge_reason": f"no answer: {exc}", "error": True}
    msgs = judge.messages(benchmark=benchmark, question=question, gold=gold, answer=answer,
                          question_type=question_type)
    try:
        verdict = llm.structured(msgs, judge.Response, max_tokens=200)
        correct, reason = bool(verdict.correct), verdict.reason
    except LLMError:
        try:
            text = llm.complete(msgs, max_tokens=20)
        except LLMError as exc:
            return {"answer": answer, "correct": False, "judge_reason": f"no verdict: {exc}", "error": True}
        correct, reason = judge.parse_verdict(text), text.strip()[:200]
    return {"answer": answer, "correct": correct, "judge_reason": reason}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall and per question type (a row's ``type`` or ``question_type``),
    the number of rows the LLM failed on, and the prompt versions used."""
    by_type: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_type[str(r.get("type", r.get("question_type", "unknown")))].append(bool(r["correct"]))
    n = len(rows)
    return {
        "n": n,
        "accuracy": round(sum(bool(r["correct"]) for r in rows) / n, 4) if n else float("nan"),
        "errors": sum(1 for r in rows if r.get("error")),
        "by_type": {t: {"n": len(v), "accuracy": round(sum(v) / len(v), 4)} for t, v in sorted(by_type.items())},
        "judge_prompt": judge.VERSION, "answer_prompt": answer_prompt.VERSION,
    }
