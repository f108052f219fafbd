"""Time expressions in English queries, resolved against a reference time ``as_of``.

Pure and stdlib-only. ``find_time_ranges(query, as_of)`` returns the expressions in order of
appearance as half-open ``[start, end)`` ranges in UTC; ``fuzzy`` ranges are approximate and
callers should boost, not filter, with them. It never raises on a string query.

Calendar arithmetic is done on as_of's own wall clock (its tzinfo; a naive as_of counts as
UTC) and the results are converted to UTC. Weeks start on Monday. Month arithmetic clamps
the day ("a month ago" from March 31 is centred on Feb 28/29).

Conservative on purpose, because a false time filter hurts retrieval more than a missed one:

- Words that are also ordinary words count only in a frame. A bare month ("May", "March"),
  weekday, season, year ("2022") or "the 7th" needs a preposition in front: in/during/
  throughout for months, years and seasons (also over for seasons), on for weekdays and
  "the 7th", or a range word (before/after/since/until, between .. and, from .. to).
  So "may I ask", "I may go", "march forward", "5 apples", "sunday school" (never a
  weekday) and "a second opinion" give nothing. "this may"/"this march" needs a capital.
  Lowercase "may"/"march" after a subject or modal ("we march 5 miles") is a verb, and
  day-first dates with them ("2 may") need an ordinal, "of", a year or a capital.
- "last/next X" does not count after the/my/your/... ("the last week of June", "my last
  year at school") or before "of"; "the last book I read" has no time unit at all.

Rules (D = as_of's calendar date; "unit" is hour, day, week, month or year):

- today, yesterday, tomorrow, the day before yesterday, the day after tomorrow: that day.
  this/yesterday/tomorrow morning 05-12, afternoon 12-18, evening 18-24; tonight = D 18:00
  to D+1 06:00; last night = D-1 18:00 to D 06:00.
- "N units ago" (fuzzy): centred on as_of - N units with a half-width of one unit for
  hours and days and half a unit for weeks (3.5 d), months (15 d) and years (182.5 d).
  Numbers: digits, one..twenty, thirty..sixty, a/an = 1, a couple (of) = 2; the vague
  "a few"/"few" span 2-4 units and "several" 3-7 (the window covers the whole span).
- "the past/last N units", "the past unit", "in/over/during/within/for the last unit":
  [as_of - N units, as_of); fuzzy only for vague counts.
- last/this/next week, month, year: the calendar period. last/this/next weekend: the
  Saturday+Sunday of the previous/current/next Monday-based week.
- weekdays: "on Monday" = the latest Monday on or before D; "last/past Monday" = the
  latest strictly before D; "this Monday" = the one in D's week; "next Monday" = next week's;
  "two Mondays ago" = a week before last Monday (exact, not fuzzy).
- months: "in May" = the latest May that has begun by D (May 2022 if D is 2023-03-10, May
  2023 if D is 2023-05-20); "last May" = the latest May before the current month's May
  (i.e. a year back when D is in May); "this May" = May of D's year; "next May" = the
  first May starting after D. "May 2022", "2022-05". early/mid/late (and the beginning/
  middle/end of) narrow to days 1-10, 11-20, 21-end.
- dates: "May 7", "7 May", "May 7th, 2023", "the 7th of May", "2023-05-07", "5/7/2023"
  (US month/day, two-digit years are 20xx). Without a year: the latest such date on or
  before D (Feb 29 goes back to the latest leap year). "on the 7th" = the 7th of D's month,
  or of the latest earlier month having a 7th that is not after D.
- years: "in 2022" (1900-2099 when bare), last/this/next year.
- seasons, northern hemisphere, meteorological: spring Mar-May, summer Jun-Aug, autumn/
  fall Sep-Nov, winter Dec-Feb; "winter 2022" is Dec 2022 - Feb 2023. "in (the) summer"
  = the latest one begun by D (fuzzy: it may be habitual); "last summer" = the latest one
  that is not the current one; "this summer" = the current one, else the one beginning
  in D's year; "next summer" = the first beginning after D; "summer (of) 2022".
- recently: [as_of - 14 d, as_of); lately: [as_of - 30 d, as_of); the other day:
  [as_of - 7 d, as_of); all fuzzy.
- before X = [OPEN_START, X.start); after X = [X.end, OPEN_END); since X = [X.start,
  OPEN_END); until/till X = [OPEN_START, X.end); between X and Y / from X to Y = [X.start,
  Y.end) (when reversed and X recurs, X steps back a week or a year: "between November
  and February"). Open sides use year 1 / 9999 bounds (OPEN_START/OPEN_END) that survive
  any timezone conversion. A range is fuzzy when any part is.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import TypeVar

__all__ = ["OPEN_END", "OPEN_START", "TimeRange", "find_time_ranges", "strip_time_expressions"]

UTC = timezone.utc
OPEN_START = datetime(1, 1, 2, tzinfo=UTC)
OPEN_END = datetime(9999, 12, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime      # inclusive, tz-aware (UTC)
    end: datetime        # exclusive, tz-aware (UTC)
    text: str            # the matched expression as it appears in the query
    kind: str            # relative_day, ago, past, week, month, year, weekend, weekday,
    #                      date, season, recent, range
    fuzzy: bool          # approximate: boost, do not filter


# --- internal model ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Ctx:
    now: datetime        # as_of, aware
    today: date          # as_of's calendar date on its own clock
    tz: tzinfo

    def at(self, d: date, hours: float = 0) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=self.tz) + timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class _Hit:
    lo: int                               # span in the query
    hi: int
    start: datetime
    end: datetime
    kind: str
    fuzzy: bool = False
    preps: frozenset[str] | None = None   # None: stands alone; else the words licensing it
    period: str | None = None             # "week"/"year": how a recurring X steps back


_Handler = Callable[[re.Match[str], _Ctx], _Hit | None]
_D = TypeVar("_D", date, datetime)

_FLAGS = re.IGNORECASE | re.ASCII
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december"]
_MONTH_NUM = {m: i + 1 for i, m in enumerate(_MONTHS)} | {
    m[:3]: i + 1 for i, m in enumerate(_MONTHS)} | {"sept": 9}
_AMBIGUOUS_MONTHS = {"may", "march", "mar"}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_SEASON_START = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
_WORD_NUMS = {w: i + 1 for i, w in enumerate(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())} | {
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60}
_UNIT_DELTA = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
_AGO_HALF = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=3.5),
             "month": timedelta(days=15), "year": timedelta(days=182.5)}
_RECENT_DAYS = {"recently": 14, "lately": 30, "the other day": 7}
_PART_OF_DAY = {"morning": (5, 12), "afternoon": (12, 18), "evening": (18, 24), "night": (18, 30)}
_MONTH_THIRDS = {"early": 0, "beginning": 0, "start": 0, "mid": 1, "middle": 1, "late": 2, "end": 2}

# Words in front of an expression. Plain prepositions are folded into the matched text;
# range words make open or closed ranges; glue joins the two ends of a closed range.
_PLAIN = frozenset({"in", "on", "at", "during", "throughout", "over", "within", "for",
                    "back in", "earlier", "later"})
_OPEN = {"before": "before", "prior to": "before", "after": "after", "since": "since",
         "until": "until", "till": "until", "up until": "until"}
_PAIR_GLUE = {"between": {"and"}, "from": {"to", "until", "till", "through", "thru"}}
_GLUE = frozenset({"and", "to", "until", "till", "through", "thru"})
_RANGE_WORDS = frozenset(_OPEN) | frozenset(_PAIR_GLUE) | _GLUE
_MONTH_PREPS = frozenset({"in", "during", "throughout"})
_PART_PREPS = frozenset({"in", "during", "throughout", "at"})
_SEASON_PREPS = frozenset({"in", "during", "throughout", "over"})
_ON = frozenset({"on"})
_ROLLING_PREPS = frozenset({"in", "over", "during", "within", "for"})
# A "last/next X" right after these is an ordinal ("the last week of June"), not a time.
_DETERMINERS = frozenset({"the", "my", "your", "our", "his", "her", "their", "its", "that",
                          "a", "every", "each", "first", "very"})
# "I may 7 ..." / "we march 5 miles": an ambiguous month after these is a verb.
_SUBJECTS = frozenset({"i", "you", "we", "they", "he", "she", "it", "who", "which", "that",
                       "this", "there", "one", "people", "to", "will", "would", "can", "could",
                       "should", "must", "might", "shall", "let's"})


# --- calendar helpers -------------------------------------------------------------------

def _add_months(d: _D, n: int) -> _D:
    year, month0 = divmod(d.month - 1 + n, 12)
    year += d.year
    return d.replace(year=year, month=month0 + 1, day=min(d.day, monthrange(year, month0 + 1)[1]))


def _shift(dt: datetime, n: int, unit: str) -> datetime:
    if unit in ("month", "year"):
        return _add_months(dt, n * (12 if unit == "year" else 1))
    return dt + n * _UNIT_DELTA[unit]


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _occurrence(today: date, first_month: int, months: int, mode: str) -> date:
    """Start of a recurring month/season: mode in / last / this / next (see module doc)."""
    this_year = date(today.year, first_month, 1)
    start = this_year if this_year <= today else _add_months(this_year, -12)
    current = today < _add_months(start, months)
    if mode == "last" and current:
        return _add_months(start, -12)
    if mode == "this" and not current:
        return this_year
    if mode == "next":
        return this_year if this_year > today else _add_months(this_year, 12)
    return start


def _recent_date(today: date, month: int, day: int) -> date | None:
    """The latest month/day on or before ``today`` (looking back up to eight years)."""
    for back in range(9):
        try:
            d = date(today.year - back, month, day)
        except ValueError:
            continue
        if d <= today:
            return d
    return None


def _recent_ordinal(today: date, day: int) -> date | None:
    first = today.replace(day=1)
    for back in range(13):
        month = _add_months(first, -back)
        if day <= monthrange(month.year, month.month)[1] and month.replace(day=day) <= today:
            return month.replace(day=day)
    return None


# --- text helpers -----------------------------------------------------------------------

def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch in "_'"


def _words_before(s: str, i: int, floor: int, n: int) -> list[tuple[str, int]]:
    """Up to ``n`` whitespace-separated words ending right before ``s[i]``, nearest first,
    as (lowercased word, start index), never reaching below ``floor``."""
    out: list[tuple[str, int]] = []
    j = i
    for _ in range(n):
        k = j
        while k > floor and s[k - 1].isspace():
            k -= 1
        end = k
        while k > floor and _is_word(s[k - 1]):
            k -= 1
        if end == j or k == end or (k == floor and k > 0 and _is_word(s[k - 1])):
            break
        out.append((s[k:end].lower(), k))
        j = k
    return out


def _prep_before(s: str, i: int, floor: int, allowed: frozenset[str] | set[str]) -> tuple[str, int] | None:
    words = _words_before(s, i, floor, 2)
    for n in (2, 1):
        if len(words) >= n:
            phrase = " ".join(w for w, _ in reversed(words[:n]))
            if phrase in allowed:
                return phrase, words[n - 1][1]
    return None


def _word_before(s: str, i: int) -> str:
    words = _words_before(s, i, 0, 1)
    return words[0][0] if words else ""


_FOLLOWED_BY_OF = re.compile(r"\s+of\b", _FLAGS)


def _ordinal_use(m: re.Match[str]) -> bool:
    """'the last week of June', 'my last year': a modifier used as an ordinal."""
    return _word_before(m.string, m.start()) in _DETERMINERS or bool(
        _FOLLOWED_BY_OF.match(m.string, m.end()))


def _verb_month(m: re.Match[str], group: str = "mon") -> bool:
    """A lowercase ambiguous month word ("may", "march") right after a subject or modal."""
    word = m[group]
    return (word.lower() in _AMBIGUOUS_MONTHS and not word[0].isupper()
            and _word_before(m.string, m.start()) in _SUBJECTS)


def _count(text: str) -> tuple[int, int]:
    """(low, high) of a spoken count; they differ only for vague counts."""
    word = " ".join(text.lower().split())
    if word.isdigit():
        return int(word), int(word)
    if "few" in word:
        return 2, 4
    if word == "several":
        return 3, 7
    if "couple" in word:
        return 2, 2
    return (1, 1) if word in ("a", "an") else (_WORD_NUMS[word], _WORD_NUMS[word])


def _hit(m: re.Match[str], start: datetime, end: datetime, kind: str, **kw: object) -> _Hit:
    return _Hit(m.start(), m.end(), start, end, kind, **kw)  # type: ignore[arg-type]


def _day_hit(m: re.Match[str], ctx: _Ctx, d: date, kind: str, **kw: object) -> _Hit:
    return _hit(m, ctx.at(d), ctx.at(d + timedelta(days=1)), kind, **kw)


# --- handlers: one per pattern, (match, ctx) -> _Hit | None -----------------------------

_REL_DAYS = {"the day before yesterday": (-2, 0, 24), "yesterday": (-1, 0, 24),
             "today": (0, 0, 24), "tonight": (0, 18, 30), "tomorrow": (1, 0, 24),
             "the day after tomorrow": (2, 0, 24)}


def _h_rel_day(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    offset, h0, h1 = _REL_DAYS[" ".join(m[0].lower().split())]
    d = ctx.today + timedelta(days=offset)
    return _hit(m, ctx.at(d, h0), ctx.at(d, h1), "relative_day")


def _h_part_of_day(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    which, part = m["d"].lower(), m["p"].lower()
    if which == "last" and (part not in ("night", "evening") or _ordinal_use(m)):
        return None
    offset = {"this": 0, "today": 0, "yesterday": -1, "last": -1, "tomorrow": 1}[which]
    d = ctx.today + timedelta(days=offset)
    h0, h1 = _PART_OF_DAY[part]
    return _hit(m, ctx.at(d, h0), ctx.at(d, h1), "relative_day")


def _h_ago(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    lo, hi = _count(m["num"])
    unit, half = m["unit"].lower(), _AGO_HALF[m["unit"].lower()]
    start = _shift(ctx.now, -hi, unit) - half
    end = _shift(ctx.now, -lo, unit) + half
    return _hit(m, start, end, "ago", fuzzy=True)


def _h_past(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    if _ordinal_use(m):
        return None
    lo, hi = _count(m["num"]) if m["num"] else (1, 1)
    start = _shift(ctx.now, -hi, m["unit"].lower())
    return _hit(m, start, ctx.now, "past", fuzzy=lo != hi)


def _h_rolling(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    start = _shift(ctx.now, -1, m["unit"].lower())
    return _hit(m, start, ctx.now, "past", preps=_ROLLING_PREPS)


def _h_period(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    mod, unit = m["mod"].lower(), m["unit"].lower()
    if mod != "this" and _ordinal_use(m):
        return None
    step = {"last": -1, "previous": -1, "this": 0, "next": 1}[mod]
    if unit == "week":
        start: date = _monday(ctx.today) + timedelta(weeks=step)
        end: date = start + timedelta(weeks=1)
    elif unit == "month":
        start = _add_months(ctx.today.replace(day=1), step)
        end = _add_months(start, 1)
    else:
        start = date(ctx.today.year + step, 1, 1)
        end = date(start.year + 1, 1, 1)
    return _hit(m, ctx.at(start), ctx.at(end), unit)


def _h_weekend(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    mod = " ".join(m["mod"].lower().split())
    if mod != "this" and _ordinal_use(m):
        return None
    step = {"last": -1, "past": -1, "this past": -1, "this": 0, "next": 1}[mod]
    saturday = _monday(ctx.today) + timedelta(weeks=step, days=5)
    return _hit(m, ctx.at(saturday), ctx.at(saturday + timedelta(days=2)), "weekend")


def _weekday_date(today: date, target: int, mod: str) -> date:
    if mod in ("last", "past", "this past"):
        return today - timedelta(days=(today.weekday() - target - 1) % 7 + 1)
    if mod == "this":
        return _monday(today) + timedelta(days=target)
    if mod == "next":
        return _monday(today) + timedelta(weeks=1, days=target)
    return today - timedelta(days=(today.weekday() - target) % 7)


def _h_weekday(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    mod = " ".join((m["mod"] or "").lower().split())
    if mod and mod != "this" and _ordinal_use(m):
        return None
    d = _weekday_date(ctx.today, _WEEKDAYS.index(m["wd"].lower()), mod)
    if mod:
        return _day_hit(m, ctx, d, "weekday")
    return _day_hit(m, ctx, d, "weekday", preps=_ON, period="week")


def _h_weekdays_ago(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    lo, hi = _count(m["num"])
    if lo != hi or lo < 1:
        return None
    last = _weekday_date(ctx.today, _WEEKDAYS.index(m["wd"].lower()), "last")
    return _day_hit(m, ctx, last - timedelta(weeks=lo - 1), "weekday")


def _h_month_bare(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    start = _occurrence(ctx.today, _MONTH_NUM[m["mon"].lower()], 1, "in")
    return _hit(m, ctx.at(start), ctx.at(_add_months(start, 1)), "month",
                preps=_MONTH_PREPS, period="year")


def _h_month_mod(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    mod, mon = m["mod"].lower(), m["mon"]
    if mod != "this" and _ordinal_use(m):
        return None
    if mod == "this" and mon.lower() in _AMBIGUOUS_MONTHS and not mon[0].isupper():
        return None  # "this may take a while"
    start = _occurrence(ctx.today, _MONTH_NUM[mon.lower()], 1, mod)
    return _hit(m, ctx.at(start), ctx.at(_add_months(start, 1)), "month")


def _h_month_part(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    month = _MONTH_NUM[m["mon"].lower()]
    if m["year"]:
        first = date(int(m["year"]), month, 1)
    else:
        first = _occurrence(ctx.today, month, 1, "in")
    third = _MONTH_THIRDS[(m["part"] or m["part2"]).lower()]
    last_day = monthrange(first.year, first.month)[1]
    start = first.replace(day=1 + 10 * third)
    end = first.replace(day=last_day) + timedelta(days=1) if third == 2 else first.replace(day=11 + 10 * third)
    preps = None if m["year"] else _PART_PREPS
    return _hit(m, ctx.at(start), ctx.at(end), "month", preps=preps, period=None if m["year"] else "year")


def _h_month_year(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    if _verb_month(m):
        return None
    first = date(int(m["year"]), _MONTH_NUM[m["mon"].lower()], 1)
    return _hit(m, ctx.at(first), ctx.at(_add_months(first, 1)), "month")


def _h_iso_month(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    first = date(int(m["y"]), int(m["m"]), 1)
    return _hit(m, ctx.at(first), ctx.at(_add_months(first, 1)), "month")


def _date_hit(m: re.Match[str], ctx: _Ctx, month: int, day: int, year: str | None) -> _Hit | None:
    if year:
        return _day_hit(m, ctx, date(int(year), month, day), "date")
    d = _recent_date(ctx.today, month, day)
    return _day_hit(m, ctx, d, "date", period="year") if d else None


def _h_date_mdy(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    if _verb_month(m):
        return None
    return _date_hit(m, ctx, _MONTH_NUM[m["mon"].lower()], int(m["day"]), m["year"])


def _h_date_dmy(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    mon = m["mon"]
    if mon.lower() in _AMBIGUOUS_MONTHS and not (m["suf"] or m["of"] or m["year"] or mon[0].isupper()):
        return None  # "the 2 may be related"
    return _date_hit(m, ctx, _MONTH_NUM[mon.lower()], int(m["day"]), m["year"])


def _h_iso_date(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    return _day_hit(m, ctx, date(int(m["y"]), int(m["m"]), int(m["d"])), "date")


def _h_us_date(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    year = int(m["y"]) + (2000 if len(m["y"]) == 2 else 0)
    return _day_hit(m, ctx, date(year, int(m["m"]), int(m["d"])), "date")


def _h_ordinal(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    d = _recent_ordinal(ctx.today, int(m["day"]))
    return _day_hit(m, ctx, d, "date", preps=_ON) if d else None


def _h_year_bare(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    year = int(m["year"])
    return _hit(m, ctx.at(date(year, 1, 1)), ctx.at(date(year + 1, 1, 1)), "year", preps=_MONTH_PREPS)


def _season_hit(m: re.Match[str], ctx: _Ctx, start: date, **kw: object) -> _Hit:
    return _hit(m, ctx.at(start), ctx.at(_add_months(start, 3)), "season", **kw)


def _h_season_mod(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    mod = " ".join(m["mod"].lower().split())
    if mod != "this" and _ordinal_use(m):
        return None
    mode = "last" if mod in ("past", "this past") else mod
    return _season_hit(m, ctx, _occurrence(ctx.today, _SEASON_START[m["s"].lower()], 3, mode))


def _h_season_year(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    return _season_hit(m, ctx, date(int(m["year"]), _SEASON_START[m["s"].lower()], 1))


def _h_season_bare(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    start = _occurrence(ctx.today, _SEASON_START[m["s"].lower()], 3, "in")
    return _season_hit(m, ctx, start, fuzzy=True, preps=_SEASON_PREPS, period="year")


def _h_recent(m: re.Match[str], ctx: _Ctx) -> _Hit | None:
    days = _RECENT_DAYS[" ".join(m[0].lower().split())]
    return _hit(m, ctx.now - timedelta(days=days), ctx.now, "recent", fuzzy=True)


# --- patterns ---------------------------------------------------------------------------

def _alt(words: list[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_NUM = (r"(?P<num>\d{1,4}|a\s+couple(?:\s+of)?|couple\s+of|a\s+few|few|several|an?|"
        + _alt(list(_WORD_NUMS)) + ")")
_UNIT = r"(?P<unit>hour|day|week|month|year)"
_WD = "(?P<wd>" + _alt(_WEEKDAYS) + ")"
_WD_PREFIX = "(?:\\b" + _alt(_WEEKDAYS) + r"\s*,?\s+)?"
_MON_FULL = "(?P<mon>" + _alt(_MONTHS) + ")"
_MON_ANY = "(?P<mon>" + _alt(list(_MONTH_NUM)) + ")"
_SEASON = r"(?P<s>spring|summer|autumn|fall|winter)"
_DAY = r"(?P<day>3[01]|[12]\d|0?[1-9])(?P<suf>st|nd|rd|th)?(?![\w:])"
_DATE_YEAR = r"(?:\s*,?\s*(?P<year>(?:1[89]|2\d)\d\d)(?![\w:]))?"
_YEAR = r"(?P<year>\d{4})(?![\w:])"
_NOT_NUMBER_AROUND = r"(?<![\w$.,/:-])"
_YEAR_NOT_QUANTITY = (r"(?![\w/:-]|[.,]\d)(?!\s*(?:%|percent\b|per\b|times\b|ways\b|steps\b|"
                      r"people\b|words\b|items\b|dollars\b|miles\b|calories\b|euros\b))")
_MOD = r"(?P<mod>this\s+past|last|past|this|next)"
_ORDINAL_NOUNS = (r"floor|time|times|grade|place|row|street|st|avenue|ave|level|century|edition|"
                  r"inning|hole|round|page|chapter|person|one|step|try|attempt|day|week|month|year")

_RULES: list[tuple[re.Pattern[str], _Handler]] = [(re.compile(p, _FLAGS), h) for p, h in [
    (r"\b(?:the\s+day\s+before\s+yesterday|the\s+day\s+after\s+tomorrow|today|yesterday|"
     r"tomorrow|tonight)\b", _h_rel_day),
    (r"\b(?P<d>this|today|yesterday|tomorrow|last)\s+(?P<p>morning|afternoon|evening|night)\b",
     _h_part_of_day),
    (rf"\b{_NUM}\s+{_UNIT}s?\s+ago\b", _h_ago),
    (rf"\b(?:(?:the|this)\s+)?(?:past|last|previous)\s+{_NUM}\s+{_UNIT}s?\b", _h_past),
    (rf"\b(?:(?:the|this)\s+)?past\s+(?P<num>){_UNIT}\b", _h_past),
    (rf"\bthe\s+(?:last|previous)\s+{_UNIT}\b(?!\s+of\b)", _h_rolling),
    (r"\b(?P<mod>last|previous|this|next)\s+(?P<unit>week|month|year)\b", _h_period),
    (r"\b(?P<mod>this\s+past|last|past|this|next)\s+weekend\b", _h_weekend),
    (rf"\b{_MOD}\s+{_WD}\b", _h_weekday),
    (rf"\b(?P<mod>){_WD}\b(?!\s+school)", _h_weekday),
    (rf"\b{_NUM}\s+{_WD}s?\s+ago\b", _h_weekdays_ago),
    (rf"\b{_MON_FULL}\b", _h_month_bare),
    (rf"\b(?P<mod>last|this|next)\s+{_MON_FULL}\b", _h_month_mod),
    (rf"\b(?:(?P<part>early|mid|late)(?:\s+|\s*-\s*)|(?:the\s+)?(?P<part2>beginning|start|middle|end)"
     rf"\s+of\s+){_MON_FULL}\b(?:\s*,?\s+(?:of\s+)?{_YEAR})?", _h_month_part),
    (rf"\b{_MON_ANY}\b\.?(?:\s*,\s*|\s+of\s+|\s+){_YEAR}", _h_month_year),
    (r"(?<![\w/.:-])(?P<y>\d{4})-(?P<m>\d\d)(?![\w/:-])", _h_iso_month),
    (rf"{_WD_PREFIX}\b{_MON_ANY}\b\.?\s+(?:the\s+)?{_DAY}{_DATE_YEAR}", _h_date_mdy),
    (rf"{_WD_PREFIX}(?:\bthe\s+)?{_NOT_NUMBER_AROUND}{_DAY}\s+(?P<of>of\s+)?{_MON_ANY}\b{_DATE_YEAR}",
     _h_date_dmy),
    (r"(?<![\w/.:-])(?P<y>\d{4})(?P<sep>[-/])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})(?![\d/-])",
     _h_iso_date),
    (r"(?<![\w/.:-])(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4}|\d\d)(?![\w/:-]|\.\d)", _h_us_date),
    (rf"\bthe\s+(?P<day>3[01]|[12]\d|0?[1-9])(?:st|nd|rd|th)\b(?!\s+of\b)(?!\s*-?\s*(?:{_ORDINAL_NOUNS})\b)",
     _h_ordinal),
    (rf"{_NOT_NUMBER_AROUND}(?P<year>(?:19|20)\d\d){_YEAR_NOT_QUANTITY}", _h_year_bare),
    (rf"\b{_MOD}\s+{_SEASON}\b", _h_season_mod),
    (rf"\b(?:the\s+)?{_SEASON}\s+(?:of\s+)?{_YEAR}", _h_season_year),
    (rf"\b(?:the\s+)?{_SEASON}\b(?!\s+of\b)", _h_season_bare),
    (r"\b(?:recently|lately|the\s+other\s+day)\b", _h_recent),
]]


# --- pipeline ---------------------------------------------------------------------------

def _context(as_of: datetime) -> _Ctx:
    now = as_of if as_of.tzinfo is not None and as_of.utcoffset() is not None else as_of.replace(tzinfo=UTC)
    return _Ctx(now, now.date(), now.tzinfo or UTC)


def _licensed(query: str, hit: _Hit) -> bool:
    return hit.preps is None or _prep_before(query, hit.lo, 0, hit.preps | _RANGE_WORDS) is not None


def _candidates(query: str, ctx: _Ctx) -> list[_Hit]:
    out = []
    for pattern, handler in _RULES:
        for m in pattern.finditer(query):
            try:
                hit = handler(m, ctx)
            except (ValueError, OverflowError, KeyError):
                continue
            if hit is not None and hit.start < hit.end and _licensed(query, hit):
                out.append(hit)
    return out


def _select(hits: list[_Hit]) -> list[_Hit]:
    """Longest first, then leftmost; drop anything overlapping a chosen hit."""
    chosen: list[_Hit] = []
    for h in sorted(hits, key=lambda h: (h.lo - h.hi, h.lo)):
        if all(h.hi <= c.lo or c.hi <= h.lo for c in chosen):
            chosen.append(h)
    return sorted(chosen, key=lambda h: h.lo)


def _step_back(h: _Hit) -> _Hit:
    if h.period == "week":
        return replace(h, start=h.start - timedelta(weeks=1), end=h.end - timedelta(weeks=1))
    return replace(h, start=_add_months(h.start, -12), end=_add_months(h.end, -12))


_GLUE_WORD = re.compile(r"\s+(\w+)\s+", _FLAGS)


def _pair(query: str, x: _Hit, y: _Hit | None, floor: int) -> _Hit | None:
    """between X and Y / from X to Y."""
    found = _prep_before(query, x.lo, floor, set(_PAIR_GLUE))
    if found is None or y is None:
        return None
    glue = _GLUE_WORD.fullmatch(query, x.hi, y.lo)
    if glue is None or glue[1].lower() not in _PAIR_GLUE[found[0]]:
        return None
    if x.start >= y.end and x.period:
        x = _step_back(x)
    if x.start >= y.end:
        return None
    return _Hit(found[1], y.hi, x.start, y.end, "range", x.fuzzy or y.fuzzy)


def _open_range(h: _Hit, word: str, at: int) -> _Hit:
    op = _OPEN[word]
    start, end = {"before": (OPEN_START, h.start), "after": (h.end, OPEN_END),
                  "since": (h.start, OPEN_END), "until": (OPEN_START, h.end)}[op]
    return _Hit(at, h.hi, start, end, "range", h.fuzzy)


def _single(query: str, h: _Hit, floor: int) -> _Hit | None:
    """Attach a preceding range word or preposition; drop an unlicensed bare word."""
    preps = h.preps if h.preps is not None else _PLAIN
    found = _prep_before(query, h.lo, floor, preps | set(_OPEN))
    if found is None:
        return h if h.preps is None else None
    word, at = found
    if word in _OPEN:
        return _open_range(h, word, at)
    return replace(h, lo=at)


def _compose(query: str, hits: list[_Hit]) -> list[_Hit]:
    out: list[_Hit] = []
    floor, i = 0, 0
    while i < len(hits):
        nxt = hits[i + 1] if i + 1 < len(hits) else None
        pair = _pair(query, hits[i], nxt, floor)
        if pair is not None:
            out.append(pair)
            floor, i = pair.hi, i + 2
            continue
        single = _single(query, hits[i], floor)
        if single is not None:
            out.append(single)
        floor, i = hits[i].hi, i + 1
    return out


def _finish(query: str, h: _Hit) -> TimeRange | None:
    try:
        start, end = h.start.astimezone(UTC), h.end.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    start, end = max(start, OPEN_START), min(end, OPEN_END)
    if start >= end:
        return None
    return TimeRange(start, end, query[h.lo:h.hi], h.kind, h.fuzzy)


def find_time_ranges(query: str, as_of: datetime) -> list[TimeRange]:
    """Time expressions in ``query`` resolved against ``as_of``: non-overlapping, in order
    of appearance, ``[start, end)`` in UTC. Never raises on a string query."""
    if not isinstance(query, str) or not query:
        return []
    ctx = _context(as_of)
    hits = _compose(query, _select(_candidates(query, ctx)))
    return [r for r in (_finish(query, h) for h in hits) if r is not None]


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([?.!,;:])")


def strip_time_expressions(query: str, ranges: list[TimeRange]) -> str:
    """``query`` without the matched expressions (for lexical search), whitespace squeezed."""
    out = query
    for r in sorted(ranges, key=lambda r: len(r.text), reverse=True):
        if not r.text:
            continue
        idx, end = out.find(r.text), -1
        if idx >= 0:
            end = idx + len(r.text)
        elif m := re.search(re.escape(r.text), out, re.IGNORECASE):
            idx, end = m.span()
        if end >= 0:
            out = out[:idx] + " " + out[end:]
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(out.split()))
