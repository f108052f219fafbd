"""``memstrata bench fuzz``: coverage-guided fuzzing (atheris/libFuzzer) of the code that
reads untrusted input, bounded in time, reporting executions, exec/s and crashes.

Targets (each gets random bytes, shaped by ``atheris.FuzzedDataProvider`` or used raw):

- ``ingest``     the CLI's conversation-file reader and its validation pass (JSON and JSONL)
- ``normalize``  ``normalize_messages`` on JSON-shaped values (what ``Memory.add`` checks)
- ``timestamp``  ``parse_time`` on strings, ints and floats
- ``timeexpr``   ``find_time_ranges`` + ``strip_time_expressions`` on queries and odd ``as_of``
- ``import``     ``Memory.import_`` of a byte file into a real SQLite memory (lexical only)

A *crash* is any exception that is not a ``MemstrataError`` (and, for ``timeexpr``, which
promises never to raise on a string, any exception at all), or a broken invariant: a
``parse_time`` result that is not aware UTC within years 1-9999, a time range with
start >= end. Each crashing input is written to ``--crash-dir/<target>/`` and counted; the
run goes on (libFuzzer would stop at the first). Every target runs in its own child process,
since libFuzzer exits the process when it is done; memstrata's modules are instrumented for
coverage as that process imports them.

atheris is in the ``test`` extra (``pip install atheris`` otherwise). Pure Python: exec/s is
far below a C fuzzer's, so the numbers say how much input was tried, not a proof.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = ("ingest", "normalize", "timestamp", "timeexpr", "import")

_SEEDS: dict[str, list[bytes]] = {
    "ingest": [
        b'{"user_id": "ana", "session_id": "s1", "timestamp": "2024-06-01T10:00:00Z", '
        b'"messages": [{"role": "user", "content": "I moved to Lisbon in May.", "name": "Ana"}]}',
        b'[{"user_id": "u", "messages": ["hi", {"role": "assistant", "content": "hello"}]}]',
        b'\xef\xbb\xbf{"messages": [{"content": [{"type": "text", "text": "parts"}]}], "metadata": {"a": [1, 2.5]}}',
    ],
    "normalize": [
        b'[{"role": "user", "content": "hello", "timestamp": "2023/05/20 (Sat) 02:21"}]',
        b'{"role": "human", "text": "x", "name": "Bo", "metadata": {"k": null}}',
        b'"just a string"',
    ],
    "timestamp": [b"2024-05-01T13:45:00Z", b"2023/05/20 (Sat) 02:21", b"1:56 pm on 8 May, 2023", b"1700000000"],
    "timeexpr": [
        b"what did I do last Saturday?", b"between November and February 2022",
        b"two weeks ago in the summer of 2021", b"on the 7th of May, or 5/7/2023, since early March",
    ],
    "import": [
        b'{"type": "memstrata-export", "version": 1}\n'
        b'{"type": "episode", "id": "e1", "namespace": "default", "user_id": "u", "agent_id": null, '
        b'"session_id": "s1", "position": 0, "role": "user", "speaker": null, "content": "hello", '
        b'"event_time": "2024-01-01T00:00:00+00:00", "ingest_time": "2024-01-01T00:00:00+00:00", "metadata": {}}\n',
    ],
}


class _Crashes:
    """Counts executions and keeps crashing inputs (one file per distinct error site)."""

    def __init__(self, target: str, crash_dir: Path, deadline: float, stats_path: Path) -> None:
        self.target, self.dir, self.deadline, self.stats_path = target, crash_dir / target, deadline, stats_path
        self.execs = 0
        self.crashes = 0
        self.kinds: dict[str, str] = {}
        self.started = time.monotonic()

    def record(self, data: bytes, exc: BaseException) -> None:
        self.crashes += 1
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        site = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}" if frame else type(exc).__name__
        if site not in self.kinds:
            self.kinds[site] = f"{type(exc).__name__}: {str(exc)[:200]}"
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / f"crash-{len(self.kinds)}.bin").write_bytes(data)

    def tick(self) -> None:
        self.execs += 1
        if time.monotonic() >= self.deadline:
            self.dump()
            os._exit(0)  # libFuzzer has no "stop now"; the stats are on disk

    def dump(self) -> None:
        elapsed = time.monotonic() - self.started
        self.stats_path.write_text(json.dumps({
            "target": self.target, "executions": self.execs, "seconds": round(elapsed, 1),
            "exec_per_s": round(self.execs / elapsed, 1) if elapsed else 0.0, "crashes": self.crashes,
            "distinct_crashes": self.kinds, "crash_dir": str(self.dir) if self.kinds else None,
        }))


def _json_value(fdp: Any, depth: int = 0) -> Any:
    """A JSON-shaped value of arbitrary structure, with hostile strings and numbers."""
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 6 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 64))
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind in (4, 5):
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    if kind in (6, 7):
        keys = ["role", "content", "text", "name", "speaker", "timestamp", "created_at", "time", "date",
                "metadata", "type"]
        out = {}
        for _ in range(fdp.ConsumeIntInRange(0, 5)):
            key = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)] if fdp.ConsumeBool() else fdp.ConsumeUnicode(6)
            out[key] = _json_value(fdp, depth + 1)
        return out
    return [_json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]


def _target(name: str, workdir: Path) -> Callable[[bytes], None]:
    import atheris

    from memstrata import Memory, MemoryConfig
    from memstrata.cli import _check_conversations, _read_conversations
    from memstrata.config import EmbedConfig, Limits, NotesConfig
    from memstrata.errors import MemstrataError
    from memstrata.ingest.normalize import normalize_messages
    from memstrata.retrieve.timeexpr import OPEN_END, OPEN_START, find_time_ranges, strip_time_expressions
    from memstrata.timeutil import MAX_TIME, MIN_TIME, UTC, parse_time


    limits = Limits()

    def ingest(data: bytes) -> None:
        path = workdir / ("conv.jsonl" if data[:1] == b"\n" else "conv.json")
        path.write_bytes(data)
        try:
            convs = _read_conversations(path, "fuzz-user")
            _check_conversations(path, convs, limits)
        except MemstrataError as exc:
            _named(exc)

    def normalize(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        if fdp.ConsumeBool():
            try:
                value = json.loads(fdp.ConsumeUnicodeNoSurrogates(len(data)))
            except (ValueError, RecursionError):
                return
        else:
            value = _json_value(fdp)
        try:
            drafts = normalize_messages(value, session_id=None, agent_id=None, timestamp=None, metadata=None,
                                        limits=limits)
        except MemstrataError as exc:
            _named(exc)
            return
        for d in drafts:  # accepted content is stored verbatim: it must be a non-empty str
            if not isinstance(d.content, str) or not d.content.strip() or "\x00" in d.content:
                raise AssertionError(f"accepted content {d.content!r}")

    def timestamp(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        choice = fdp.ConsumeIntInRange(0, 2)
        value: Any = (fdp.ConsumeUnicode(len(data)) if choice == 0 else
                      fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 200)) if choice == 1 else fdp.ConsumeFloat())
        try:
            dt = parse_time(value)
        except MemstrataError as exc:
            _named(exc)
            return
        if dt.tzinfo is None or dt.utcoffset().total_seconds() != 0 or not MIN_TIME <= dt <= MAX_TIME:  # type: ignore[union-attr]
            raise AssertionError(f"parse_time({value!r}) = {dt!r}")

    def timeexpr(data: bytes) -> None:
        from datetime import datetime, timedelta, timezone

        fdp = atheris.FuzzedDataProvider(data)
        seconds = fdp.ConsumeIntInRange(-62_135_596_800 + 86_400 * 2, 253_402_128_000)  # years 1..9999
        offset = timezone(timedelta(minutes=fdp.ConsumeIntInRange(-1439, 1439)))
        base = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
        try:
            as_of = base.astimezone(offset) if fdp.ConsumeBool() else base.replace(tzinfo=None)
        except (OverflowError, ValueError):
            return
        query = fdp.ConsumeUnicode(len(data))
        ranges = find_time_ranges(query, as_of)
        for r in ranges:
            if not (OPEN_START <= r.start < r.end <= OPEN_END):
                raise AssertionError(f"range {r!r} for {query!r} at {as_of!r}")
        strip_time_expressions(query, ranges)

    mem = None
    if name == "import":
        mem = Memory(workdir / "import.db", config=MemoryConfig(embed=EmbedConfig(enabled=False),
                                                                notes=NotesConfig(enabled=False)))

    def import_(data: bytes) -> None:
        path = workdir / "import.jsonl"
        path.write_bytes(data)
        try:
            mem.import_(path, user_id="u" if data[-1:] == b"\n" else None)  # type: ignore[union-attr]
        except MemstrataError as exc:
            _named(exc)

    return {"ingest": ingest, "normalize": normalize, "timestamp": timestamp, "timeexpr": timeexpr,
            "import": import_}[name]


def _named(exc: BaseException) -> None:
    """An expected error must say what is wrong: a non-empty, single-purpose message."""
    if not str(exc).strip():
        raise AssertionError(f"{type(exc).__name__} with an empty message")


def _child(name: str, seconds: float, seed: int, crash_dir: Path, stats_path: Path) -> None:
    import atheris

    workdir = Path(tempfile.mkdtemp(prefix=f"memstrata-fuzz-{name}-"))
    corpus = workdir / "corpus"
    corpus.mkdir()
    for i, seed_input in enumerate(_SEEDS[name]):
        (corpus / f"seed-{i}").write_bytes(seed_input)
    fn = _target(name, workdir)
    state = _Crashes(name, crash_dir, time.monotonic() + seconds, stats_path)
    sys.setrecursionlimit(1000)

    def one(data: bytes) -> None:
        state.tick()
        try:
            fn(data)
        except Exception as exc:  # noqa: BLE001 - every unexpected exception is a finding
            state.record(data, exc)

    atheris.Setup([sys.argv[0], f"-seed={seed}", f"-max_total_time={int(seconds) + 60}", "-max_len=4096",
                   "-rss_limit_mb=4096", "-timeout=30", str(corpus)], one)
    try:
        atheris.Fuzz()
    finally:
        state.dump()


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run(targets: list[str], seconds: float, seed: int, crash_dir: Path,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fuzz each target for ``seconds`` in its own process; returns the per-target stats."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"unknown fuzz target {unknown[0]!r}; known: {', '.join(TARGETS)}")
    if not have_atheris():
        from ..errors import ConfigError

        raise ConfigError("memstrata bench fuzz needs atheris: pip install atheris (it is in the test extra)")
    results = []
    for name in targets:
        if progress:
            progress(f"fuzzing {name} for {seconds:g} s")
        with tempfile.TemporaryDirectory() as tmp:
            stats_path = Path(tmp) / "stats.json"
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, name, str(seconds), str(seed), str(crash_dir), str(stats_path)],
                capture_output=True, text=True, timeout=seconds + 300,
            )
            if not stats_path.exists():
                results.append({"target": name, "executions": 0, "crashes": 1, "distinct_crashes": {
                    "fuzzer process died": f"exit {proc.returncode}: {proc.stderr[-500:]}"}})
                continue
            results.append(json.loads(stats_path.read_text()))
    return {"seed": seed, "seconds_per_target": seconds, "python": sys.version.split()[0],
            "targets": results, "total_executions": sum(r["executions"] for r in results),
            "total_crashes": sum(r["crashes"] for r in results)}


# The child process: memstrata is imported under atheris' import hook, so only its own
# modules get coverage instrumentation (instrument_all() would take ~30 s on numpy & co).
_CHILD = """
import sys
from pathlib import Path
import atheris
with atheris.instrument_imports(include=["memstrata"]):
    import memstrata.cli, memstrata.memory, memstrata.retrieve.timeexpr, memstrata.timeutil
    from memstrata.bench.fuzz import _child
_child(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
"""
