"""Pieces shared by the benchmark runners: data loading, timing, variant handling."""

from __future__ import annotations

import gzip
import json
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RetrievalConfig
from ..errors import InvalidFileError
from .metrics import percentile

Progress = Callable[[int, int], None]


def load_json(path: str | Path) -> Any:
    """Read a benchmark file (plain or gzip JSON)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(p, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            return json.load(fh)
    except OSError as exc:
        raise InvalidFileError(f"cannot read benchmark file {p}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, EOFError) as exc:
        raise InvalidFileError(f"benchmark file {p} is not valid JSON: {exc}") from exc


def parse_variants(spec: str | None) -> list[tuple[str, RetrievalConfig]]:
    """``"hybrid;bm25;hybrid:time_mode=off"`` -> named configs (the first is primary)."""
    names = [s.strip() for s in (spec or "hybrid").split(";") if s.strip()]
    return [(name, RetrievalConfig.preset(name)) for name in names]


@dataclass
class Speed:
    ingest_turns: int = 0
    ingest_s: float = 0.0
    notes_s: float = 0.0
    notes: int = 0
    search_ms: list[float] = field(default_factory=list)

    def process(self, mem: Any) -> None:
        """Derive notes for everything just ingested; timed as part of ingest."""
        if mem.config.notes.enabled:
            t0 = time.perf_counter()
            report = mem.process()
            self.notes_s += time.perf_counter() - t0
            self.notes += report.notes_created

    @contextmanager
    def ingest(self, turns: int) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.ingest_s += time.perf_counter() - t0
        self.ingest_turns += turns

    def timed_search(self, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.search_ms.append((time.perf_counter() - t0) * 1000)
        return out

    def report(self) -> dict[str, float]:
        return {
            "ingest_turns_per_s": round(self.ingest_turns / self.ingest_s, 1) if self.ingest_s else 0.0,
            "notes_share_of_ingest": round(self.notes_s / self.ingest_s, 3) if self.ingest_s else 0.0,
            "notes_per_turn": round(self.notes / self.ingest_turns, 3) if self.ingest_turns else 0.0,
            "search_ms_p50": round(percentile(self.search_ms, 50), 2),
            "search_ms_p95": round(percentile(self.search_ms, 95), 2),
        }


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")


def environment() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
