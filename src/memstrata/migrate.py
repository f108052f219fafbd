"""``memstrata migrate``: copy every row of one store into another, then prove the copy.

The copy goes table by table in ``TABLES`` order (parents before children), in batches,
through ``Store.dump_table`` and ``Store.load_table`` only, so it works between any two
backends. Internal keys are kept, so notes, links, sources and summaries still point at
the right rows.

Verification reads both stores again, every table in full, and compares the row count
and a SHA-256 over a canonical encoding of the rows in primary-key order: each value is
tagged by type (None, integer, float, text, bytes), integers in decimal, floats as their
8 IEEE-754 bytes (exact), text as UTF-8 and bytes as they are, each with its length. A
single changed value, a lost or extra row, a float that lost a bit or a vector stored at
another precision changes the checksum.

One column is not copied verbatim: ``tenants.revision`` is the counter caches compare
to decide whether a tenant's data changed. The copy sets it to at least the current
clock in microseconds (where SQLite starts new tenants), so no process that cached an
earlier state of the target can mistake the copy for it; the tenants checksum leaves
that column out, and the check asks that the target's revision is not below the
source's.

The target must be empty. A failure half-way leaves it partly filled: the error says
which table and what to do (empty the target, then run migrate again).
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidInputError, MemstrataError, StoreError
from .store import Store, open_store
from .store.base import TABLES
from .store.sqlite_copy import missing_sqlite_file

Progress = Callable[[str, str, int, "int | None"], None]
"""progress(stage, table, rows done, rows expected or None); stage is 'copy' or 'verify'."""

_REVISION = TABLES["tenants"].index("revision")


@dataclass(frozen=True, slots=True)
class TableCheck:
    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str
    note: str = ""

    @property
    def ok(self) -> bool:
        return (self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256
                and not self.note)


@dataclass(frozen=True, slots=True)
class Report:
    source: str
    target: str
    tables: tuple[TableCheck, ...]
    rows_copied: int
    copy_seconds: float
    verify_seconds: float
    mismatched: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatched

    @property
    def rows_per_second(self) -> float:
        return self.rows_copied / self.copy_seconds if self.copy_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "source": self.source, "target": self.target, "rows_copied": self.rows_copied,
            "copy_seconds": round(self.copy_seconds, 3), "verify_seconds": round(self.verify_seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1), "mismatched": list(self.mismatched),
            "tables": [{"table": t.table, "ok": t.ok, "source_rows": t.source_rows, "target_rows": t.target_rows,
                        "source_sha256": t.source_sha256, "target_sha256": t.target_sha256,
                        **({"note": t.note} if t.note else {})} for t in self.tables],
        }


def redact(url: str) -> str:
    """A store URL fit for messages and reports: any password replaced by '***'."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and "password=" not in parts.query:
        return url
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password=" in parts.query:  # libpq also takes it as a parameter
        parts = parts._replace(query=re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query))
    return urlunsplit(parts)


def open_stores(source: str, target: str) -> tuple[Store, Store]:
    """Open both ends of a migration. The source must exist (opening a missing SQLite
    path would create an empty store); a missing SQLite target is created."""
    missing = missing_sqlite_file(source)
    if missing is not None:
        raise InvalidInputError(f"source store {missing!r} does not exist")
    src = open_store(source)
    try:
        dst = open_store(target)
    except BaseException:
        src.close()
        raise
    return src, dst


def migrate(source: Store, target: Store, *, batch: int = 5000, progress: Progress | None = None) -> Report:
    """Copy every table of ``source`` into the empty ``target``, then verify the copy.

    Returns a report; ``report.ok`` is False (and ``report.mismatched`` names the tables)
    when the verification finds a difference. Raises ``StoreError`` when the target is
    not empty (nothing is written then) or when the copy fails part-way (the target then
    holds a partial copy: empty it and run again)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")
    notify = progress or (lambda *_: None)
    _require_empty(target)
    started = time.perf_counter()
    copied: dict[str, int] = {}
    for table in TABLES:
        copied[table] = _copy_table(source, target, table, batch, notify)
    try:  # indexes the target deferred while loading (PostgreSQL: HNSW), counted in the copy time
        target.finish_load()
    except MemstrataError as exc:
        raise StoreError(f"migrate copied every row but could not build the target's indexes: {exc}; "
                         "search on the target is correct but slower until they exist "
                         "(the next write of vectors builds them)") from exc
    copy_seconds = time.perf_counter() - started
    started = time.perf_counter()
    checks = verify(source, target, batch=batch, progress=progress, expected=copied)
    return Report(
        source=redact(source.url), target=redact(target.url), tables=checks, rows_copied=sum(copied.values()),
        copy_seconds=copy_seconds, verify_seconds=time.perf_counter() - started,
        mismatched=tuple(c.table for c in checks if not c.ok),
    )


def verify(source: Store, target: Store, *, batch: int = 5000, progress: Progress | None = None,
           expected: dict[str, int] | None = None) -> tuple[TableCheck, ...]:
    """Compare every table of two stores: row counts and SHA-256 of the rows (see the
    module docstring). ``expected`` (rows copied per table) adds a check that the source
    did not change since."""
    notify = progress or (lambda *_: None)
    return tuple(_check_table(source, target, table, batch, None if expected is None else expected.get(table),
                              notify) for table in TABLES)


def _require_empty(target: Store) -> None:
    filled = []
    for table in TABLES:
        with closing(target.dump_table(table, batch=1)) as rows:
            if next(rows, None):
                filled.append(table)
    if filled:
        raise StoreError(f"the target store {redact(target.url)} is not empty (rows in: {', '.join(filled)}); "
                         "migrate copies into an empty store only, nothing was written")


def _copy_table(source: Store, target: Store, table: str, batch: int, notify: Progress) -> int:
    done = 0
    notify("copy", table, 0, None)
    try:
        with closing(source.dump_table(table, batch=batch)) as batches:
            for rows in batches:
                if table == "tenants":
                    rows = _renew_revisions(rows)
                target.load_table(table, rows)
                done += len(rows)
                notify("copy", table, done, None)
        notify("copy", table, done, done)
    except Exception as exc:  # a driver error as much as a StoreError: the target is partial either way
        what = str(exc) if isinstance(exc, MemstrataError) else f"{type(exc).__name__}: {exc}"
        raise StoreError(
            f"migrate failed while copying table {table!r} after {done} of its rows: {what}. "
            f"The target {redact(target.url)} now holds a partial copy: empty it (delete the SQLite file, "
            "or drop and recreate the PostgreSQL database) and run migrate again"
        ) from exc
    return done


def _renew_revisions(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    now = time.time_ns() // 1000
    return [(*r[:_REVISION], max(int(r[_REVISION]), now), *r[_REVISION + 1:]) for r in rows]


def _check_table(source: Store, target: Store, table: str, batch: int, expected: int | None,
                 notify: Progress) -> TableCheck:
    # One bar per table for both reads: the source's rows, then the target's.
    total = None if expected is None else 2 * expected
    notify("verify", table, 0, total)
    src = _digest(source, table, batch, lambda n: notify("verify", table, n, total))
    dst = _digest(target, table, batch, lambda n: notify("verify", table, src.rows + n, total))
    note = ""
    if table == "tenants" and src.revisions is not None and dst.revisions is not None:
        behind = [k for k, rev in src.revisions.items() if dst.revisions.get(k, rev) < rev]
        if behind:
            note = f"revision of {len(behind)} tenant(s) is below the source's (first: {behind[0]})"
    if expected is not None and src.rows != expected and not note:
        note = f"the source changed during the copy ({expected} rows copied, {src.rows} there now)"
    return TableCheck(table, src.rows, dst.rows, src.sha256, dst.sha256, note)


@dataclass(slots=True)
class _Digest:
    rows: int
    sha256: str
    revisions: dict[tuple[Any, ...], int] | None


def _digest(store: Store, table: str, batch: int, tick: Callable[[int], None]) -> _Digest:
    """Row count and SHA-256 of the canonical encoding of every row, in dump order."""
    h = hashlib.sha256()
    n = 0
    revisions: dict[tuple[Any, ...], int] | None = {} if table == "tenants" else None
    try:
        with closing(store.dump_table(table, batch=batch)) as batches:
            for rows in batches:
                for row in rows:
                    if revisions is not None:
                        revisions[(row[0], row[1])] = int(row[_REVISION])
                        row = (*row[:_REVISION], *row[_REVISION + 1:])
                    h.update(encode_row(row, table))
                n += len(rows)
                tick(n)
    except Exception as exc:
        if isinstance(exc, MemstrataError):
            raise
        raise StoreError(f"verifying table {table!r} of {redact(store.url)} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return _Digest(n, h.hexdigest(), revisions)


def encode_row(row: tuple[Any, ...], table: str = "?") -> bytes:
    """The canonical, exact and unambiguous bytes of one row (see the module docstring)."""
    return b"".join(_values(row, table))


def _values(row: tuple[Any, ...], table: str) -> Iterator[bytes]:
    yield b"R" + struct.pack("<I", len(row))
    for value in row:
        if value is None:
            yield b"N"
        elif isinstance(value, bool):  # a driver that maps 0/1 columns to bool: the same integer
            yield b"I" + str(int(value)).encode() + b";"
        elif isinstance(value, int):
            yield b"I" + str(value).encode() + b";"
        elif isinstance(value, float):
            yield b"F" + struct.pack("<d", value)
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            yield b"S" + struct.pack("<Q", len(data)) + data
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            yield b"B" + struct.pack("<Q", len(data)) + data
        else:
            raise StoreError(f"table {table!r}: a value of type {type(value).__name__} is not one of "
                             "int, float, str, bytes or None (the store's dump_table broke the contract)")


__all__ = ["Report", "TableCheck", "encode_row", "migrate", "open_stores", "redact", "verify"]
