"""Proof of erasure: scan the raw bytes of a store's files for what should be gone.

``Memory.erase`` deletes a user's rows, merges the FTS5 segments, zeroes freed pages
(``secure_delete``) and truncates the WAL. This module checks the result from the
outside, byte by byte, in the store file, its ``-wal``/``-shm``/``-journal`` siblings
and the cache directory (``MEMSTRATA_CACHE_DIR``).

What counts as a trace of an erased text (the rule ``verify-erased`` applies):

- a text of 24 bytes or more (UTF-8): *every* run of 24 bytes of it, wherever it
  starts, so any surviving piece of 24 bytes or longer is found (a session document,
  a note quoting a sentence, a JSON copy, a half-overwritten page);
- a text of 12 to 23 bytes: the whole text; shorter texts are too common to be evidence
  of anything and are counted as unchecked;
- ids (episode, note and session ids of 8 bytes or more): the whole id;
- the user's FTS5 scope token ("zt" + 20 hex digits), last 12 characters, as the
  tables store it and as the index stores it (stemmed: a trailing hex "e"/"ed" goes).
  Every full-text row of the user carries that token, and an FTS5 leaf stores each
  term's suffix verbatim after the prefix it shares with the previous term; the tail is
  cut only if a neighbouring tenant's token shares its first 8 hex digits (about one in
  4 billion per pair), so a posting of the user left in any segment shows it. Content words are
  not searched as tokens: they are stemmed, lowercased and prefix-compressed, so a raw
  match could neither prove nor disprove them; the scope token covers the rows they
  belong to, and the 24-byte rule covers the stored text itself.

A hit whose bytes are also in a live row of *another* tenant (two users wrote the same
sentence) is reported as ``shared`` and does not fail the check: it is that user's data,
not a residue of the erased one.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .errors import InvalidFileError, InvalidInputError
from .store.base import Tenant

if TYPE_CHECKING:
    from .memory import Memory

WINDOW = 24      # every run of this many bytes of a text is searched
MIN_TEXT = 12    # texts shorter than this are not evidence of anything
MIN_ID = 8
SCOPE_TAIL = 12
_PREFIX = 8      # prefilter length (every trace is at least this long)
_CHUNK = 8 << 20
_SIBLINGS = ("", "-wal", "-shm", "-journal")
_SHARED_COLUMNS = (
    ("episodes", "content"), ("episodes", "metadata"), ("episodes", "id"), ("sessions", "doc"),
    ("sessions", "session_id"), ("notes", "content"), ("notes", "context"), ("notes", "keywords"),
    ("notes", "entities"), ("notes", "value"), ("notes", "norm"), ("notes", "subject"), ("notes", "slot"),
    ("notes", "id"), ("summaries", "text"), ("note_history", "detail"), ("pending", "error"),
)


@dataclass(frozen=True, slots=True)
class Trace:
    """One thing that must not be found: ``label`` says which record it came from."""

    label: str
    data: bytes
    kind: str  # "text", "id" or "scope"


@dataclass(frozen=True, slots=True)
class Finding:
    """Bytes of a trace found in a file: ``length`` bytes at ``offset``."""

    file: str
    offset: int
    length: int
    label: str
    kind: str
    shared: bool = False  # also in a live row of another tenant

    def describe(self) -> str:
        tag = " (also stored for another user)" if self.shared else ""
        return f"{self.file} @ {self.offset} (+{self.length} bytes): {self.kind} of {self.label}{tag}"


@dataclass(slots=True)
class ErasureReport:
    files: list[tuple[str, int]] = field(default_factory=list)   # (path, bytes) scanned
    traces: int = 0
    unchecked: int = 0           # texts shorter than MIN_TEXT bytes
    findings: list[Finding] = field(default_factory=list)

    @property
    def residue(self) -> list[Finding]:
        return [f for f in self.findings if not f.shared]

    @property
    def ok(self) -> bool:
        return not self.residue

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "files": [{"path": p, "bytes": n} for p, n in self.files], "traces": self.traces,
            "unchecked_short_texts": self.unchecked, "shared": len(self.findings) - len(self.residue),
            # every residue finding; shared ones (phrases other users also said) only as examples
            "findings": [{"file": f.file, "offset": f.offset, "length": f.length, "label": f.label,
                          "kind": f.kind, "shared": f.shared}
                         for f in self.residue + [f for f in self.findings if f.shared][:20]],
        }


# -- what to look for ------------------------------------------------------------
def text_traces(label: str, text: str) -> list[Trace]:
    """The trace of one text: itself when short, else every 24-byte run (see module doc)."""
    data = text.encode("utf-8")
    if len(data) < MIN_TEXT:
        return []
    if len(data) <= WINDOW:
        return [Trace(label, data, "text")]
    return [Trace(label, data[i:i + WINDOW], "text") for i in range(len(data) - WINDOW + 1)]


def id_trace(label: str, value: str | None) -> list[Trace]:
    data = (value or "").encode("utf-8")
    return [Trace(label, data, "id")] if len(data) >= MIN_ID else []


def _fts_term(token: str) -> str:
    """The term FTS5 stores for ``token`` (the store's tokenizer stems: a scope token
    ending in hex 'e' or 'ed' loses it in the index)."""
    from .store.migrations import _TOKENIZE

    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{_TOKENIZE}')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
        conn.execute("INSERT INTO t (x) VALUES (?)", (token,))
        return str(conn.execute("SELECT term FROM v").fetchone()[0])
    finally:
        conn.close()


def scope_traces(tenant: Tenant) -> list[Trace]:
    """The user's scope token as stored in the tables' ``scope`` column and as the FTS5
    term: the last SCOPE_TAIL characters of each (see the module doc)."""
    from .store.sqlite import scope_token

    label = f"full-text index rows of user {tenant.user_id!r}"
    token = scope_token(tenant)
    tails = dict.fromkeys([token[-SCOPE_TAIL:], _fts_term(token)[-SCOPE_TAIL:]])
    return [Trace(label, t.encode(), "scope") for t in tails]


def scope_trace(tenant: Tenant) -> Trace:
    """The scope token tail as the tables store it (see ``scope_traces`` for the index)."""
    return scope_traces(tenant)[0]


def _strings(value: Any) -> Iterator[str]:
    """String leaves of a JSON value (metadata)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def episode_traces(ep_id: str, content: str, session_id: str | None, metadata: Any) -> list[Trace]:
    out = text_traces(f"episode {ep_id}", content)
    out += id_trace(f"episode {ep_id}", ep_id)
    out += id_trace(f"session {session_id!r}", session_id)
    for s in _strings(metadata):
        out += text_traces(f"episode {ep_id} metadata", s)
    return out


def traces_from_file(path: str | os.PathLike[str], tenant: Tenant) -> tuple[list[Trace], int]:
    """Traces from the user's own export (JSON Lines written by ``export``; only this
    tenant's episodes are used) or from a plain text file (one text per non-empty line).
    Returns the traces and how many texts were too short to check."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"cannot read texts file {str(p)!r}: {exc}") from exc
    out: list[Trace] = []
    short = 0
    export = False
    if lines:
        try:
            head = json.loads(lines[0])
            export = isinstance(head, dict) and head.get("type") == "memstrata-export"
        except json.JSONDecodeError:
            export = False
    for n, line in enumerate(lines[1:] if export else lines, start=2 if export else 1):
        if not line.strip():
            continue
        if not export:
            found = text_traces(f"line {n}", line)
            short += not found
            out += found
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidFileError(f"{p}: line {n} is not JSON ({exc})") from exc
        if not isinstance(row, dict) or row.get("type") != "episode":
            continue
        if row.get("user_id") != tenant.user_id or row.get("namespace", tenant.namespace) != tenant.namespace:
            continue
        content = row.get("content")
        if not isinstance(content, str) or not isinstance(row.get("id"), str):
            raise InvalidFileError(f"{p}: line {n}: an episode needs string 'id' and 'content'")
        found = episode_traces(row["id"], content, row.get("session_id"), row.get("metadata"))
        short += len(content.encode()) < MIN_TEXT
        out += found
    if not out and not short:
        raise InvalidInputError(f"{p}: no texts of user {tenant.user_id!r} in this file")
    return out, short


def collect(mem: "Memory", user_id: str, namespace: str | None = None) -> tuple[list[Trace], int]:
    """Everything of the user that erase must remove, read before erasing (kept only in
    memory): episodes (text, ids, session ids, metadata), notes (text, context, ids),
    summaries, and the user's full-text scope token."""
    tenant = mem._tenant(user_id, namespace)
    out: list[Trace] = scope_traces(tenant)
    short = 0
    for ep, _vec, _model in mem.store.export_rows(tenant):
        out += episode_traces(ep.id, ep.content, ep.session_id, ep.metadata)
        short += len(ep.content.encode()) < MIN_TEXT
    offset = 0
    while batch := mem.store.get_notes(tenant, limit=1000, offset=offset):
        for note in batch:
            out += text_traces(f"note {note.id}", note.content)
            out += text_traces(f"note {note.id} context", note.context)
            out += id_trace(f"note {note.id}", note.id)
        offset += len(batch)
    for s in mem.store.get_summaries(tenant):
        out += text_traces(f"summary of session {s.session_id!r}" if s.session_id else "user summary", s.text)
    return out, short


# -- where to look ----------------------------------------------------------------
def store_files(path: str | os.PathLike[str]) -> list[Path]:
    base = str(path)
    return [Path(base + s) for s in _SIBLINGS if Path(base + s).is_file()]


def cache_files(cache_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    if cache_dir is None:
        from .providers.embed import cache_dir as default_cache

        cache_dir = default_cache()
    root = Path(cache_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# -- the scan -----------------------------------------------------------------------
# Prefilter: the first 8 bytes of every trace, read as one little-endian integer, hashed
# into a 2**24-bit table; every 8-byte window of a file is looked up in one vectorised
# pass, and only the few candidates are compared byte for byte.
_MULT = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(64 - 24)


def _prefix_key(data: bytes) -> int:
    return int.from_bytes(data[:_PREFIX], "little")


def _slot(keys: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return ((keys * _MULT) >> _SHIFT).astype(np.intp)


def _scan_file(path: Path, by_prefix: dict[int, list[int]], traces: list[Trace],
               table: np.ndarray) -> list[tuple[int, int]]:
    with open(path, "rb") as fh:
        return _scan_stream(fh, by_prefix, traces, table)


def _scan_stream(fh: BinaryIO, by_prefix: dict[int, list[int]], traces: list[Trace],
                 table: np.ndarray) -> list[tuple[int, int]]:
    """(offset, trace index) of every trace found in the stream, read in chunks that
    overlap by the longest trace so nothing straddling a boundary is missed."""
    hits: list[tuple[int, int]] = []
    keep = max(len(t.data) for t in traces) - 1
    tail, base = b"", 0  # base: file offset of data[0]
    while True:
        chunk = fh.read(_CHUNK)
        final = not chunk
        data = tail + chunk
        owned = len(data) if final else max(len(data) - keep, 0)  # the rest is scanned next round
        n = min(owned, len(data) - _PREFIX + 1)
        if n > 0:
            windows = np.ndarray((n,), dtype="<u8", buffer=data, strides=(1,))
            for pos in np.nonzero(table[_slot(windows)])[0].tolist():
                for ti in by_prefix.get(int(windows[pos]), ()):
                    if data.startswith(traces[ti].data, pos):
                        hits.append((base + pos, ti))
        if final:
            return hits
        tail, base = data[owned:], base + owned


def _merge(file: str, hits: list[tuple[int, int]], traces: list[Trace], shared: bool) -> list[Finding]:
    """Overlapping hits of the same record become one finding."""
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for off, ti in hits:
        t = traces[ti]
        groups.setdefault((t.label, t.kind), []).append((off, off + len(t.data)))
    out = []
    for (label, kind), spans in groups.items():
        spans.sort()
        cur_s, cur_e = spans[0]
        for s, e in spans[1:]:
            if s <= cur_e:
                cur_e = max(cur_e, e)
            else:
                out.append(Finding(file, cur_s, cur_e - cur_s, label, kind, shared))
                cur_s, cur_e = s, e
        out.append(Finding(file, cur_s, cur_e - cur_s, label, kind, shared))
    return sorted(out, key=lambda f: (f.file, f.offset))


def _live_text(store_path: str, tenant: Tenant | None) -> bytes:
    """The text of every live row (of tenants other than ``tenant`` when given), joined
    by NUL: a run found in it is still legitimately stored, so it is no evidence."""
    try:
        conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return b""
    parts: list[bytes] = []
    try:
        for table, col in _SHARED_COLUMNS:
            where, args = ("WHERE NOT (namespace=? AND user_id=?)", (tenant.namespace, tenant.user_id)) \
                if tenant is not None else ("", ())
            try:
                rows = conn.execute(f"SELECT {col} FROM {table} {where}", args)  # noqa: S608 (fixed names)
                parts.extend(str(r[0]).encode("utf-8") for r in rows if r[0] is not None)
            except sqlite3.Error:
                continue  # an older schema without this table
    finally:
        conn.close()
    return b"\0".join(parts)


def scan(store_path: str | os.PathLike[str], traces: Iterable[Trace], *, tenant: Tenant | None = None,
         discount_live: bool | None = None, cache_dir: str | os.PathLike[str] | None = None,
         include_cache: bool = True, unchecked: int = 0) -> ErasureReport:
    """Look for every trace in the raw bytes of the store's files (and the cache
    directory). ``tenant`` is the erased user. With ``discount_live`` (default: when a
    tenant is given) a trace also present in a live row (of another tenant, when a
    tenant is given) is reported as shared, not as residue: after ``delete`` pass
    ``discount_live=True`` without a tenant, since the user's other turns may repeat a
    phrase of the deleted one."""
    items = [t for t in traces if len(t.data) >= _PREFIX]
    report = ErasureReport(traces=len(items), unchecked=unchecked)
    if not items:
        report.files = [(str(f), f.stat().st_size) for f in store_files(store_path)]
        return report
    files = store_files(store_path) + (cache_files(cache_dir) if include_cache else [])
    by_prefix: dict[int, list[int]] = {}
    for i, t in enumerate(items):
        by_prefix.setdefault(_prefix_key(t.data), []).append(i)
    table = np.zeros(1 << 24, dtype=bool)
    table[_slot(np.fromiter(by_prefix.keys(), dtype=np.uint64, count=len(by_prefix)))] = True
    live: set[int] = set()
    if discount_live if discount_live is not None else tenant is not None:
        blob = _live_text(str(store_path), tenant)
        live = {ti for _, ti in _scan_stream(io.BytesIO(blob), by_prefix, items, table)} if blob else set()
    for f in files:
        try:
            size = f.stat().st_size
            hits = _scan_file(f, by_prefix, items, table)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {str(f)!r}: {exc.strerror}") from exc
        report.files.append((str(f), size))
        report.findings += _merge(str(f), [h for h in hits if h[1] not in live], items, False)
        report.findings += _merge(str(f), [h for h in hits if h[1] in live], items, True)
    report.findings.sort(key=lambda x: (x.file, x.offset))
    return report


def erase_verified(mem: "Memory", user_id: str, namespace: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None) -> tuple[int, ErasureReport]:
    """Erase a user and prove it: read what the user has (in memory only), erase, then
    scan the files for it. Returns (episodes erased, report)."""
    path = getattr(mem.store, "path", None)
    if not path or path == ":memory:":
        raise InvalidInputError("erase verification needs a store file (SQLite)")
    tenant = mem._tenant(user_id, namespace)
    traces, short = collect(mem, user_id, namespace)
    n = mem.erase(user_id=user_id, namespace=namespace)
    return n, scan(path, traces, tenant=tenant, cache_dir=cache_dir, unchecked=short)


__all__ = [
    "ErasureReport", "Finding", "Trace", "collect", "erase_verified", "scan", "scope_trace", "scope_traces",
    "text_traces",
    "traces_from_file",
]
