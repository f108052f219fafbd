"""Search latency on one large memory: ``memstrata bench latency LONGMEMEVAL_FILE``.

LongMemEval haystacks hold ~50 sessions; this builds one memory from the distinct
sessions of several haystacks (default 500 sessions), then times every question of the
file against it, end to end (query embedding included), cold cache excluded.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import EmbedConfig, MemoryConfig, NotesConfig
from ..errors import InvalidFileError
from ..memory import Memory
from ..timeutil import parse_time
from .common import Progress, environment, load_json, parse_variants
from .longmemeval import _embedder
from .metrics import percentile


def run(
    path: str | Path,
    *,
    sessions: int = 500,
    queries: int | None = None,
    variants: str | None = None,
    embed: EmbedConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    data = load_json(path)
    if not isinstance(data, list) or (data and "haystack_sessions" not in data[0]):
        raise InvalidFileError(f"{path} is not a LongMemEval file")
    embed = embed or EmbedConfig()
    embedder = _embedder(embed)
    name, cfg = parse_variants(variants)[0]
    picked: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for q in data:
        for sid, date, turns in zip(q["haystack_session_ids"], q["haystack_dates"], q["haystack_sessions"]):
            if len(picked) < sessions and sid not in picked:
                picked[sid] = (date, [t for t in turns if str(t.get("content", "")).strip()])
    questions = [q for q in data if not q["question_id"].endswith("_abs")][: queries or None]
    with tempfile.TemporaryDirectory(prefix="memstrata-latency-") as tmp:
        with Memory(Path(tmp) / "big.db", config=MemoryConfig(retrieval=cfg, embed=embed,
                                                                      notes=NotesConfig(background=False)),
                    embedder=embedder or False) as mem:
            t0 = time.perf_counter()
            n_turns = 0
            for i, (sid, (date, turns)) in enumerate(picked.items()):
                if turns:
                    n_turns += len(mem.add([{"role": t["role"], "content": t["content"]} for t in turns],
                                           user_id="u", session_id=sid, timestamp=parse_time(date)))
                if progress:
                    progress(i + 1, len(picked) + len(questions))
            notes = mem.process().notes_created
            ingest_s = time.perf_counter() - t0
            mem.search("warm up the tenant cache", user_id="u")
            timings: dict[str, list[float]] = {"turn": [], "session": []}
            for j, q in enumerate(questions):
                for unit in ("turn", "session"):
                    t1 = time.perf_counter()
                    mem.search(q["question"], user_id="u", k=10, unit=unit,  # type: ignore[arg-type]
                               as_of=parse_time(q["question_date"]))
                    timings[unit].append((time.perf_counter() - t1) * 1000)
                if progress:
                    progress(len(picked) + j + 1, len(picked) + len(questions))
            stats = mem.stats(user_id="u")
    all_ms = timings["turn"] + timings["session"]
    return {
        "benchmark": "latency", "variant": name, "sessions": stats.sessions, "episodes": stats.episodes, "notes": notes,
        "queries": len(all_ms), "ingest_turns_per_s": round(n_turns / ingest_s, 1),
        "search_ms_p50": round(percentile(all_ms, 50), 2), "search_ms_p95": round(percentile(all_ms, 95), 2),
        "search_ms_p99": round(percentile(all_ms, 99), 2),
        "by_unit": {u: {"p50": round(percentile(v, 50), 2), "p95": round(percentile(v, 95), 2)} for u, v in timings.items()},
        "store_bytes": stats.store_bytes, "environment": environment(),
    }
