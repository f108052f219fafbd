"""Parsing and normalising timestamps: everything becomes an aware UTC datetime.

Accepted inputs: ``datetime`` (naive means UTC), ``date``, ints/floats (Unix seconds),
ISO 8601 strings, and the formats the two public benchmarks use
("2023/05/20 (Sat) 02:21" from LongMemEval, "1:56 pm on 8 May, 2023" from LoCoMo).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from typing import Any

from .errors import InvalidTimestampError

UTC = timezone.utc
MIN_TIME = datetime(1, 1, 2, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_LME = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})(?:\s*\(\w+\))?\s+(\d{1,2}):(\d{2})$")
_LOCOMO = re.compile(
    r"^(\d{1,2}):(\d{2})\s*(am|pm)\s+on\s+(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})$", re.IGNORECASE
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["january", "february", "march", "april", "may", "june", "july",
         "august", "september", "october", "november", "december"]
    )
}


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any, *, what: str = "timestamp") -> datetime:
    """Return ``value`` as an aware UTC datetime or raise InvalidTimestampError naming it."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return _check_range(_to_utc(dt, value, what), value, what)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, bool):
        raise InvalidTimestampError(f"{what} must be a time, not a boolean: {value!r}")
    if isinstance(value, (int, float)):
        try:  # an int too large for a float overflows here, as float('inf') would below
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise InvalidTimestampError(f"{what} is not a finite number of seconds: {_short(value)}")
        try:
            return _check_range(datetime.fromtimestamp(value, UTC), value, what)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidTimestampError(f"{what} {_short(value)} is out of range") from exc
    if isinstance(value, str):
        return _check_range(_parse_string(value.strip(), what), value, what)
    raise InvalidTimestampError(f"{what} must be a datetime, ISO string or Unix seconds, got {type(value).__name__}")


def _parse_string(text: str, what: str) -> datetime:
    if not text:
        raise InvalidTimestampError(f"{what} is an empty string")
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        pass
    else:
        return _to_utc(dt, text, what) if dt.tzinfo else dt.replace(tzinfo=UTC)
    if m := _LME.match(text):
        y, mo, d, h, mi = map(int, m.groups())
        return _build(what, text, y, mo, d, h, mi)
    if m := _LOCOMO.match(text):
        h, mi, ampm, d, month, y = m.groups()
        mo = _MONTHS.get(month.lower()) or _month_prefix(month)
        if mo is None:
            raise InvalidTimestampError(f"{what} {_short(text)}: unknown month {month!r}")
        hour = int(h) % 12 + (12 if ampm.lower() == "pm" else 0)
        return _build(what, text, int(y), mo, int(d), hour, int(mi))
    raise InvalidTimestampError(
        f"{what} {_short(text)} is not a recognised time (use ISO 8601, e.g. 2024-05-01T13:45:00Z)"
    )


def _to_utc(dt: datetime, original: Any, what: str) -> datetime:
    # An offset that pushes year 1 or 9999 past the calendar's edge cannot be represented
    # in UTC at all (datetime raises OverflowError): it is out of range, like year 0.
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidTimestampError(
            f"{what} {_short(original)} is outside the supported range (years 1-9999 in UTC)"
        ) from exc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _month_prefix(name: str) -> int | None:
    name = name.lower()
    hits = [i for m, i in _MONTHS.items() if len(name) >= 3 and m.startswith(name)]
    return hits[0] if len(hits) == 1 else None


def _build(what: str, text: str, *parts: int) -> datetime:
    try:
        return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]
    except ValueError as exc:
        raise InvalidTimestampError(f"{what} {_short(text)}: {exc}") from exc


def _check_range(dt: datetime, original: Any, what: str) -> datetime:
    if not (MIN_TIME <= dt <= MAX_TIME):
        raise InvalidTimestampError(f"{what} {_short(original)} is outside the supported range (years 1-9999)")
    return dt


def to_micros(dt: datetime) -> int:
    """Microseconds since the Unix epoch: the lossless integer form the stores keep."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=us)


def fmt_time(dt: datetime) -> str:
    """Human-readable form used in contexts: '2023-05-08 13:56 (Mon)'."""
    return dt.strftime("%Y-%m-%d %H:%M (%a)")
