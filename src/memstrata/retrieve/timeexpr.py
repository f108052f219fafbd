"""Time expressions in English queries, resolved against a reference time ``as_of``.

Pure and stdlib-only. Conservative on purpose: a wrong time filter hurts retrieval more
than a missed one, so ambiguous words only count as times in a clear frame ("may" only as
"in May", "May 7", "May 2023" or a capitalised "May" that is not "May I").

Rules (all ranges are [start, end) in UTC; ``fuzzy`` ranges should boost, not filter):
- today / tonight / this morning -> as_of's day; yesterday / last night -> the day before;
  the day before yesterday -> two days before.
- N days ago -> that day ±1 day (fuzzy); N weeks ago -> ±3.5 days around as_of - N weeks
  (fuzzy); N months ago -> that calendar month (fuzzy); N years ago -> that year (fuzzy).
  "a few"/"several" = 3 and always fuzzy; "a couple of" = 2.
- last/past N days|weeks|months|years, "the past month" -> [as_of - N units, as_of]
  (rolling; "last month" without "the" is the calendar month).
- last/this/next week (Monday-based) / month / year; last/this weekend (Sat-Sun).
- last <weekday> -> the most recent such day strictly before as_of's day; on <weekday>
  -> the most recent on or before it; this <weekday> -> that day of as_of's week.
- in <Month> -> the most recent such month not after as_of; last <Month> -> the one
  before as_of's month; <Month> <year>; early/mid/late <Month> -> thirds of the month.
- dates: "May 7", "7 May", "May 7th, 2023", "the 7th of May", "2023-05-07", "5/7/2023"
  (US order), "on the 7th" (that day of as_of's month, or the previous month's if later).
- years: "in 2022" (also during/since/of), "last year", "this year".
- seasons (northern hemisphere: spring Mar-May, summer Jun-Aug, autumn/fall Sep-Nov,
  winter Dec-Feb): "last summer" = the latest one that ended before as_of; "this
  summer" = the one of as_of's year; "in the summer" = the latest one begun by as_of.
- recently / lately -> the 30 days before as_of; the other day -> the 7 days before (fuzzy).
- since X -> [start of X, as_of]; before X -> [year 1, start of X); after X -> [end of X, year 9999).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
_MIN = datetime(1, 1, 2, tzinfo=UTC)
_MAX = datetime(9999, 12, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime
    text: str
    kind: str
    fuzzy: bool


MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
_MONTH_ABBR = {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {"sept": 9}
_MONTH_NUM = {m: i + 1 for i, m in enumerate(MONTHS)} | _MONTH_ABBR
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())} | {"a": 1, "an": 1, "a couple of": 2, "a couple": 2,
                                                            "couple of": 2, "a few": 3, "few": 3, "several": 3}
_FUZZY_NUMBERS = {"a few", "few", "several"}
_SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}

_NUM = r"(?P<num>\d{1,3}|a couple of|a couple|couple of|a few|few|several|an?|" + "|".join(
    sorted((w for w in _NUMBERS if " " not in w and len(w) > 2), key=len, reverse=True)) + r")"
_UNIT = r"(?P<unit>day|week|month|year)s?"
_MONTH = r"(?P<month>" + "|".join(MONTHS + sorted(_MONTH_ABBR, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d{2})"
_WEEKDAY = r"(?P<weekday>" + "|".join(WEEKDAYS) + r")"


def _day_start(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    total = year * 12 + (month - 1) + delta
    return total // 12, total % 12 + 1


def _month_range(year: int, month: int) -> tuple[datetime, datetime]:
    y2, m2 = _add_months(year, month, 1)
    return datetime(year, month, 1, tzinfo=UTC), datetime(y2, m2, 1, tzinfo=UTC)


def _safe(fn: Callable[[], tuple[datetime, datetime]]) -> tuple[datetime, datetime] | None:
    try:
        start, end = fn()
    except (ValueError, OverflowError):
        return None
    start, end = max(start, _MIN), min(end, _MAX)
    return (start, end) if start < end else None


def _recent_month(month: int, as_of: datetime, *, strictly_before: bool = False) -> int:
    """Year of the latest ``month`` not after as_of's month (strictly before if asked)."""
    if month < as_of.month or (month == as_of.month and not strictly_before):
        return as_of.year
    return as_of.year - 1


def _season_range(season: str, year: int) -> tuple[datetime, datetime]:
    start_month = _SEASONS[season]
    if start_month == 12:  # winter of `year` starts in December of the previous year
        return datetime(year - 1, 12, 1, tzinfo=UTC), datetime(year, 3, 1, tzinfo=UTC)
    return datetime(year, start_month, 1, tzinfo=UTC), datetime(*_add_months(year, start_month, 3), 1, tzinfo=UTC)


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS[word]


# Each handler gets the match and as_of and returns (start, end, kind, fuzzy) or None.
Handler = Callable[[re.Match[str], datetime], tuple[datetime, datetime, str, bool] | None]


def _h_ago(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    n, unit, fuzzy = _number(m["num"]), m["unit"], m["num"] in _FUZZY_NUMBERS
    if n > 200:
        return None
    if unit == "day":
        day = _day_start(now) - timedelta(days=n)
        r = _safe(lambda: (day - timedelta(days=1), day + timedelta(days=2)))
    elif unit == "week":
        center = now - timedelta(weeks=n)
        r = _safe(lambda: (center - timedelta(days=3.5), center + timedelta(days=3.5)))
    elif unit == "month":
        r = _safe(lambda: _month_range(*_add_months(now.year, now.month, -n)))
    else:
        r = _safe(lambda: (datetime(now.year - n, 1, 1, tzinfo=UTC), datetime(now.year - n + 1, 1, 1, tzinfo=UTC)))
    return (r[0], r[1], "ago", True if unit != "day" or fuzzy else fuzzy or n > 2) if r else None


def _h_past_n(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    n, unit = _number(m["num"]) if m["num"] else 1, m["unit"]
    if n > 200:
        return None
    if unit == "month":
        y, mo = _add_months(now.year, now.month, -n)
        start = now.replace(year=y, month=mo, day=min(now.day, calendar.monthrange(y, mo)[1]))
    elif unit == "year":
        start = now.replace(year=now.year - n, day=min(now.day, calendar.monthrange(now.year - n, now.month)[1]))
    else:
        start = now - timedelta(days=n * (7 if unit == "week" else 1))
    r = _safe(lambda: (start, now + timedelta(microseconds=1)))
    return (r[0], r[1], "range", m["num"] in _FUZZY_NUMBERS if m["num"] else False) if r else None


def _h_relative_period(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    which, unit = m["which"], m["period"]
    shift = {"last": -1, "previous": -1, "past": -1, "this": 0, "current": 0, "next": 1}[which]
    today = _day_start(now)
    if unit == "week":
        monday = today - timedelta(days=today.weekday()) + timedelta(weeks=shift)
        r = _safe(lambda: (monday, monday + timedelta(weeks=1)))
    elif unit == "weekend":  # the Saturday-Sunday of as_of's (Monday-based) week, shifted
        saturday = today - timedelta(days=today.weekday()) + timedelta(days=5) + timedelta(weeks=shift)
        r = _safe(lambda: (saturday, saturday + timedelta(days=2)))
    elif unit == "month":
        r = _safe(lambda: _month_range(*_add_months(now.year, now.month, shift)))
    else:
        r = _safe(lambda: (datetime(now.year + shift, 1, 1, tzinfo=UTC), datetime(now.year + shift + 1, 1, 1, tzinfo=UTC)))
    return (r[0], r[1], unit, False) if r else None


def _h_day_word(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    word = m["dayword"].lower()
    back = 2 if "before" in word else 1 if word in ("yesterday", "last night") else 0
    day = _day_start(now) - timedelta(days=back)
    r = _safe(lambda: (day, day + timedelta(days=1)))
    return (r[0], r[1], "relative_day", False) if r else None


def _h_weekday(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    target = WEEKDAYS.index(m["weekday"].lower())
    today = _day_start(now)
    which = (m["which"] or "on").lower()
    if which == "last":
        delta = (today.weekday() - target) % 7 or 7
        day = today - timedelta(days=delta)
    elif which == "this":
        day = today - timedelta(days=today.weekday()) + timedelta(days=target)
    elif which == "next":
        delta = (target - today.weekday()) % 7 or 7
        day = today + timedelta(days=delta)
    else:
        day = today - timedelta(days=(today.weekday() - target) % 7)
    r = _safe(lambda: (day, day + timedelta(days=1)))
    return (r[0], r[1], "weekday", False) if r else None


def _month_of(m: re.Match[str]) -> int:
    return _MONTH_NUM[m["month"].lower().rstrip(".")]


def _h_date(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    month, day = _month_of(m), int(m["day"])
    if m["year"]:
        year = int(m["year"])
    else:
        year = now.year if (month, day) <= (now.month, now.day) else now.year - 1
    r = _safe(lambda: (datetime(year, month, day, tzinfo=UTC), datetime(year, month, day, tzinfo=UTC) + timedelta(days=1)))
    return (r[0], r[1], "date", False) if r else None


def _h_numeric_date(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    if m["iso_y"]:
        year, month, day = int(m["iso_y"]), int(m["iso_m"]), int(m["iso_d"])
    else:
        month, day = int(m["us_m"]), int(m["us_d"])
        year = int(m["us_y"]) if m["us_y"] else (now.year if (month, day) <= (now.month, now.day) else now.year - 1)
        if year < 100:
            year += 2000
    r = _safe(lambda: (datetime(year, month, day, tzinfo=UTC), datetime(year, month, day, tzinfo=UTC) + timedelta(days=1)))
    return (r[0], r[1], "date", False) if r else None


def _h_ordinal_day(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    day = int(m["day"])
    year, month = now.year, now.month
    if day > now.day:
        year, month = _add_months(year, month, -1)
    r = _safe(lambda: (datetime(year, month, day, tzinfo=UTC), datetime(year, month, day, tzinfo=UTC) + timedelta(days=1)))
    return (r[0], r[1], "date", True) if r else None


def _h_month(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    month = _month_of(m)
    which = (m["which"] or "").lower()
    if m["year"]:
        year = int(m["year"])
    elif which == "last":
        year = _recent_month(month, now, strictly_before=True)
    elif which == "this":
        year = now.year
    else:
        year = _recent_month(month, now)
    r = _safe(lambda: _month_range(year, month))
    if not r:
        return None
    start, end = r
    part = (m["part"] or "").lower()
    if part:
        days = (end - start).days
        third = {"early": 0, "mid": 1, "late": 2}[part.rstrip("-")]
        start, end = start + timedelta(days=days * third // 3), start + timedelta(days=days * (third + 1) // 3)
    return start, end, "month", False


def _h_year(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    year = int(m["year"])
    r = _safe(lambda: (datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)))
    return (r[0], r[1], "year", False) if r else None


def _h_season(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    season, which = m["season"].lower(), (m["which"] or "in").lower()
    year = now.year + (1 if season == "winter" and now.month == 12 else 0)
    start, end = _season_range(season, year)
    if which == "last":
        while end > now:
            year -= 1
            start, end = _season_range(season, year)
    elif which in ("in", "in the", "during", "during the"):
        while start > now:
            year -= 1
            start, end = _season_range(season, year)
    return start, end, "season", which not in ("last", "this")


def _h_recent(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    days = 7 if "other day" in m["recent"].lower() else 30
    return now - timedelta(days=days), now + timedelta(microseconds=1), "recent", True


_MAYBE_MONTH = r"(?<![\w'])"
def _h_between(m: re.Match[str], now: datetime) -> tuple[datetime, datetime, str, bool] | None:
    m1, m2 = _MONTH_NUM[m["m1"].lower().rstrip(".")], _MONTH_NUM[m["m2"].lower().rstrip(".")]
    year2 = int(m["y2"]) if m["y2"] else _recent_month(m2, now)
    year1 = int(m["y1"]) if m["y1"] else (year2 if m1 <= m2 else year2 - 1)
    r = _safe(lambda: (_month_range(year1, m1)[0], _month_range(year2, m2)[1]))
    return (r[0], r[1], "range", False) if r else None


_MONTHS_ALT = "|".join(MONTHS + sorted(_MONTH_ABBR, key=len, reverse=True))
_RULES: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(rf"\bbetween\s+(?P<m1>{_MONTHS_ALT})\.?(?:\s+(?P<y1>(?:19|20)\d{{2}}))?\s+and\s+(?P<m2>{_MONTHS_ALT})\.?(?:\s+(?P<y2>(?:19|20)\d{{2}}))?\b", re.I), _h_between),
    (re.compile(rf"\b{_NUM}\s+{_UNIT}\s+ago\b", re.I), _h_ago),
    (re.compile(rf"\b(?:in\s+|during\s+|over\s+|within\s+)?(?:the\s+)?(?:last|past|previous)\s+(?:{_NUM}\s+)?(?P<unit>day|week|month|year)s\b", re.I), _h_past_n),
    (re.compile(r"\b(?:in\s+|during\s+|over\s+|within\s+)?the\s+(?:last|past)\s+(?P<num>)(?P<unit>day|week|month|year)\b", re.I), _h_past_n),
    (re.compile(r"\b(?P<which>last|previous|past|this|current|next)\s+(?P<period>week(?:end)?|month|year)\b", re.I), _h_relative_period),
    (re.compile(r"\b(?P<dayword>the\s+day\s+before\s+yesterday|yesterday|today|tonight|this\s+morning|this\s+afternoon|this\s+evening|last\s+night)\b", re.I), _h_day_word),
    (re.compile(rf"\b(?:(?P<which>last|this|next|on)\s+){_WEEKDAY}\b", re.I), _h_weekday),
    (re.compile(rf"\b(?:on\s+)?(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b", re.I), _h_date),
    (re.compile(rf"\b(?:on\s+)?{_MONTH}\s+(?:the\s+)?{_DAY}(?!\d)(?:,?\s+{_YEAR})?\b(?!\s*(?:am|pm|%|:))", re.I), _h_date),
    (re.compile(r"\b(?P<iso_y>(?:19|20)\d{2})-(?P<iso_m>\d{1,2})-(?P<iso_d>\d{1,2})\b|\b(?P<us_m>\d{1,2})/(?P<us_d>\d{1,2})(?:/(?P<us_y>\d{2}|\d{4}))?\b"), _h_numeric_date),
    (re.compile(r"\bon\s+the\s+(?P<day>\d{1,2})(?:st|nd|rd|th)\b", re.I), _h_ordinal_day),
    (re.compile(rf"\b(?:(?P<which>last|this)\s+|(?:in|during|of|since|before|after|until|by)\s+(?:the\s+)?(?:(?P<part>early|mid-?|late)\s*)?|(?P<part2>early|mid-?|late)\s+)?{_MONTH}(?:\s+(?:of\s+)?{_YEAR})?\b", re.I), _h_month),
    (re.compile(rf"\b(?:in|during|since|of|by|before|after)\s+{_YEAR}\b", re.I), _h_year),
    (re.compile(r"\b(?P<which>last|this|in\s+the|during\s+the|in|during)\s+(?P<season>spring|summer|autumn|fall|winter)\b", re.I), _h_season),
    (re.compile(r"\b(?P<recent>recently|lately|the\s+other\s+day)\b", re.I), _h_recent),
]
_OPEN = re.compile(r"\b(?P<op>since|before|after)\s+$", re.I)
_MONTH_WORD_CAUTION = {"may", "march", "jan", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}


def _month_is_plausible(m: re.Match[str], query: str) -> bool:
    """Bare month words that are also common words need a frame ("in May", "May 2023")."""
    word = m["month"].lower().rstrip(".")
    framed = bool(m["which"] or m["year"] or (m.groupdict().get("part") or m.groupdict().get("part2"))) or \
        m.group(0).lower().split()[0] in ("in", "during", "of", "since", "before", "after", "until", "by")
    if word not in _MONTH_WORD_CAUTION and len(word) > 3:
        return framed or m["month"][0].isupper()
    if word == "may":
        return framed and not re.match(r"may\s+(i|we|you|he|she|they|it|be|have|not)\b", query[m.start("month"):], re.I)
    return framed


def find_time_ranges(query: str, as_of: datetime) -> list[TimeRange]:
    """Every time expression in ``query``, resolved against ``as_of``; non-overlapping,
    in order of appearance. Never raises on any string."""
    if not isinstance(query, str) or not query:
        return []
    now = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, TimeRange]] = []
    for pattern, handler in _RULES:
        for m in pattern.finditer(query):
            span = m.span()
            if any(span[0] < e and s < span[1] for s, e in taken):
                continue
            if handler is _h_month:
                if not _month_is_plausible(m, query):
                    continue
                if m.groupdict().get("part2") and not m["part"]:
                    m = _with_part(m)
            try:
                resolved = handler(m, now)
            except (ValueError, OverflowError, KeyError):
                resolved = None
            if resolved is None:
                continue
            start, end, kind, fuzzy = resolved
            start, end, kind = _open_ended(query, span[0], m.group(0), start, end, kind, now)
            taken.append(span)
            found.append((span[0], TimeRange(start, end, m.group(0).strip(), kind, fuzzy)))
    return [r for _, r in sorted(found, key=lambda p: p[0])]


class _PartMatch:
    """A month match whose early/mid/late came before the month without a preposition."""

    def __init__(self, m: re.Match[str]) -> None:
        self._m = m

    def __getitem__(self, key: str) -> str | None:
        return self._m["part2"] if key == "part" else self._m[key]

    def group(self, i: int = 0) -> str:
        return self._m.group(i)

    def span(self) -> tuple[int, int]:
        return self._m.span()

    def groupdict(self) -> dict[str, str | None]:
        return self._m.groupdict()


def _with_part(m: re.Match[str]) -> re.Match[str]:
    return _PartMatch(m)  # type: ignore[return-value]


def _open_ended(query: str, pos: int, text: str, start: datetime, end: datetime, kind: str,
                now: datetime) -> tuple[datetime, datetime, str]:
    lead = text.lower().split()[0] if text.strip() else ""
    op = lead if lead in ("since", "before", "after") else None
    if op is None:
        before = _OPEN.search(query[:pos])
        op = before["op"].lower() if before else None
    if op == "since":
        return start, max(now + timedelta(microseconds=1), end), "range"
    if op == "before":
        return _MIN, start, "range"
    if op == "after":
        return end, _MAX, "range"
    return start, end, kind


def strip_time_expressions(query: str, ranges: list[TimeRange]) -> str:
    """``query`` without the matched expressions (for lexical search), spaces squeezed."""
    out = query
    for r in ranges:
        idx = out.lower().find(r.text.lower())
        if idx >= 0:
            out = out[:idx] + " " + out[idx + len(r.text):]
    return " ".join(out.split())
