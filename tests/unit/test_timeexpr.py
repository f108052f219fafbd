"""Time expressions: fixed as_of values, conservative negatives, and a never-raise property."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memstrata.retrieve.timeexpr import (
    OPEN_END,
    OPEN_START,
    TimeRange,
    find_time_ranges,
    strip_time_expressions,
)

UTC = timezone.utc
SAT = datetime(2023, 5, 20, 15, 30, tzinfo=UTC)   # a Saturday
WED = datetime(2023, 5, 17, 9, 0, tzinfo=UTC)     # a Wednesday
MAR = datetime(2023, 3, 10, 12, 0, tzinfo=UTC)    # a Friday, before May
OCT = datetime(2023, 10, 5, 12, 0, tzinfo=UTC)
JAN = datetime(2023, 1, 15, 12, 0, tzinfo=UTC)
LEAP_END = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)


def d(y: int, m: int, day: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, day, h, mi, tzinfo=UTC)


def one(query: str, as_of: datetime = SAT) -> TimeRange:
    ranges = find_time_ranges(query, as_of)
    assert len(ranges) == 1, ranges
    return ranges[0]


def span(query: str, as_of: datetime = SAT) -> tuple[datetime, datetime]:
    r = one(query, as_of)
    return r.start, r.end


def assert_none(query: str, as_of: datetime = SAT) -> None:
    assert find_time_ranges(query, as_of) == []


# --- relative days ----------------------------------------------------------------------

@pytest.mark.parametrize(("query", "start", "end"), [
    ("what did I eat today?", d(2023, 5, 20), d(2023, 5, 21)),
    ("yesterday", d(2023, 5, 19), d(2023, 5, 20)),
    ("the day before yesterday", d(2023, 5, 18), d(2023, 5, 19)),
    ("tomorrow", d(2023, 5, 21), d(2023, 5, 22)),
    ("tonight", d(2023, 5, 20, 18), d(2023, 5, 21, 6)),
    ("this morning", d(2023, 5, 20, 5), d(2023, 5, 20, 12)),
    ("last night", d(2023, 5, 19, 18), d(2023, 5, 20, 6)),
    ("yesterday afternoon", d(2023, 5, 19, 12), d(2023, 5, 19, 18)),
])
def test_relative_days(query: str, start: datetime, end: datetime) -> None:
    r = one(query)
    assert (r.start, r.end, r.kind, r.fuzzy) == (start, end, "relative_day", False)


def test_day_before_yesterday_is_not_an_open_range() -> None:
    r = one("what happened the day before yesterday")
    assert r.text == "the day before yesterday" and r.kind == "relative_day"


def test_relative_day_text_keeps_query_case() -> None:
    assert one("What did I do YESTERDAY?").text == "YESTERDAY"


@pytest.mark.parametrize("query", ["the last night of the trip", "my last night in Rome"])
def test_last_night_as_ordinal_is_ignored(query: str) -> None:
    assert_none(query)


# --- N units ago ------------------------------------------------------------------------

def test_weeks_ago_is_a_fuzzy_week_centred_window() -> None:
    r = one("what did I cook two weeks ago?")
    centre = SAT - timedelta(weeks=2)
    assert (r.start, r.end) == (centre - timedelta(days=3.5), centre + timedelta(days=3.5))
    assert r.kind == "ago" and r.fuzzy and r.text == "two weeks ago"


def test_days_ago_is_plus_minus_one_day() -> None:
    assert span("3 days ago") == (SAT - timedelta(days=4), SAT - timedelta(days=2))


def test_hours_ago() -> None:
    assert span("an hour ago") == (SAT - timedelta(hours=2), SAT)


@pytest.mark.parametrize(("as_of", "centre"), [
    (LEAP_END, d(2024, 2, 29, 12)),                        # clamped to the leap day
    (datetime(2023, 3, 31, 12, tzinfo=UTC), d(2023, 2, 28, 12)),
])
def test_month_ago_clamps_month_end(as_of: datetime, centre: datetime) -> None:
    r = one("a month ago", as_of)
    assert (r.start, r.end) == (centre - timedelta(days=15), centre + timedelta(days=15))


def test_year_ago_from_leap_day() -> None:
    centre = d(2023, 2, 28, 12)
    assert span("a year ago", d(2024, 2, 29, 12)) == (centre - timedelta(days=182.5),
                                                      centre + timedelta(days=182.5))


def test_a_few_weeks_ago_covers_two_to_four_weeks() -> None:
    r = one("a few weeks ago")
    assert r.start == SAT - timedelta(weeks=4, days=3.5)
    assert r.end == SAT - timedelta(weeks=2) + timedelta(days=3.5)
    assert r.fuzzy


@pytest.mark.parametrize(("query", "n"), [("a couple of days ago", 2), ("a couple weeks ago", 2),
                                          ("twelve months ago", 12), ("20 years ago", 20),
                                          ("one day ago", 1), ("a week ago", 1)])
def test_spoken_counts(query: str, n: int) -> None:
    r = one(query)
    unit = query.split()[-2].rstrip("s")
    centre = {"day": SAT - timedelta(days=n), "week": SAT - timedelta(weeks=n),
              "month": SAT.replace(year=SAT.year - (n // 12)) if n % 12 == 0 else None,
              "year": SAT.replace(year=SAT.year - n)}[unit]
    assert centre is not None and r.start < centre < r.end and r.fuzzy


# --- the past N units ---------------------------------------------------------------------

@pytest.mark.parametrize(("query", "start", "text"), [
    ("what did I read in the past 3 days?", SAT - timedelta(days=3), "in the past 3 days"),
    ("the last two weeks", SAT - timedelta(weeks=2), "the last two weeks"),
    ("over the past week", SAT - timedelta(weeks=1), "over the past week"),
    ("in the last week", SAT - timedelta(weeks=1), "in the last week"),
    ("during the past year", d(2022, 5, 20, 15, 30), "during the past year"),
    ("last 6 months", d(2022, 11, 20, 15, 30), "last 6 months"),
])
def test_past_n_units_end_at_as_of(query: str, start: datetime, text: str) -> None:
    r = one(query)
    assert (r.start, r.end, r.kind, r.fuzzy, r.text) == (start, SAT, "past", False, text)


def test_past_month_clamps_to_leap_day() -> None:
    assert span("over the past month", LEAP_END) == (d(2024, 2, 29, 12), LEAP_END)


def test_past_few_days_is_fuzzy() -> None:
    r = one("the past few days")
    assert r.fuzzy and r.start == SAT - timedelta(days=4)


@pytest.mark.parametrize("query", ["my last 3 days in Paris", "the last 3 days of the trip",
                                   "on the last day", "the last week of June",
                                   "during the last year of college"])
def test_past_units_used_as_ordinals_are_ignored(query: str) -> None:
    assert_none(query)


# --- calendar weeks, months, years, weekends ---------------------------------------------

@pytest.mark.parametrize(("query", "start", "end", "kind"), [
    ("last week", d(2023, 5, 8), d(2023, 5, 15), "week"),
    ("this week", d(2023, 5, 15), d(2023, 5, 22), "week"),
    ("next week", d(2023, 5, 22), d(2023, 5, 29), "week"),
    ("last month", d(2023, 4, 1), d(2023, 5, 1), "month"),
    ("this month", d(2023, 5, 1), d(2023, 6, 1), "month"),
    ("last year", d(2022, 1, 1), d(2023, 1, 1), "year"),
    ("this year", d(2023, 1, 1), d(2024, 1, 1), "year"),
    ("next year", d(2024, 1, 1), d(2025, 1, 1), "year"),
])
def test_calendar_periods(query: str, start: datetime, end: datetime, kind: str) -> None:
    r = one(query)
    assert (r.start, r.end, r.kind, r.fuzzy) == (start, end, kind, False)


def test_last_month_in_january_crosses_the_year() -> None:
    assert span("last month", JAN) == (d(2022, 12, 1), d(2023, 1, 1))


@pytest.mark.parametrize(("query", "as_of", "start"), [
    ("last weekend", SAT, d(2023, 5, 13)),
    ("this weekend", SAT, d(2023, 5, 20)),
    ("next weekend", SAT, d(2023, 5, 27)),
    ("last weekend", WED, d(2023, 5, 13)),
    ("this weekend", WED, d(2023, 5, 20)),
    ("this past weekend", WED, d(2023, 5, 13)),
])
def test_weekends(query: str, as_of: datetime, start: datetime) -> None:
    r = one(query, as_of)
    assert (r.start, r.end, r.kind) == (start, start + timedelta(days=2), "weekend")


@pytest.mark.parametrize("query", ["the last book I read", "the last time we met", "last time",
                                   "my last year at school", "the next month was hard",
                                   "the weekend is for rest"])
def test_last_without_a_time_unit_or_as_ordinal(query: str) -> None:
    assert_none(query)


# --- weekdays ---------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "as_of", "day"), [
    ("on Monday", SAT, d(2023, 5, 15)),
    ("on Saturday", SAT, d(2023, 5, 20)),       # on or before as_of's date
    ("last Saturday", SAT, d(2023, 5, 13)),     # strictly before
    ("last Friday", SAT, d(2023, 5, 19)),
    ("this Friday", SAT, d(2023, 5, 19)),
    ("this Friday", WED, d(2023, 5, 19)),
    ("next Monday", SAT, d(2023, 5, 22)),
    ("last Wednesday", WED, d(2023, 5, 10)),
    ("on Thursday", WED, d(2023, 5, 11)),
])
def test_weekdays(query: str, as_of: datetime, day: datetime) -> None:
    r = one(query, as_of)
    assert (r.start, r.end, r.kind, r.fuzzy) == (day, day + timedelta(days=1), "weekday", False)


@pytest.mark.parametrize(("query", "day"), [("two Saturdays ago", d(2023, 5, 6)),
                                          ("a Monday ago", d(2023, 5, 15)),
                                          ("3 Fridays ago", d(2023, 5, 5))])
def test_weekdays_ago(query: str, day: datetime) -> None:
    r = one(query)
    assert (r.start, r.end, r.kind, r.fuzzy) == (day, day + timedelta(days=1), "weekday", False)


def test_vague_weekdays_ago_is_ignored() -> None:
    assert_none("a few Sundays ago")


@pytest.mark.parametrize("query", ["I teach sunday school", "on Sunday school was fun",
                                   "Monday blues", "I go running on Mondays",
                                   "the last Monday of the month"])
def test_weekday_negatives(query: str) -> None:
    assert_none(query)


# --- months -----------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "as_of", "start", "end"), [
    ("in May", MAR, d(2022, 5, 1), d(2022, 6, 1)),
    ("in May", SAT, d(2023, 5, 1), d(2023, 6, 1)),
    ("in March", MAR, d(2023, 3, 1), d(2023, 4, 1)),
    ("last May", SAT, d(2022, 5, 1), d(2022, 6, 1)),
    ("last May", datetime(2023, 6, 2, tzinfo=UTC), d(2023, 5, 1), d(2023, 6, 1)),
    ("last March", MAR, d(2022, 3, 1), d(2022, 4, 1)),
    ("this May", MAR, d(2023, 5, 1), d(2023, 6, 1)),
    ("next May", SAT, d(2024, 5, 1), d(2024, 6, 1)),
    ("May 2022", SAT, d(2022, 5, 1), d(2022, 6, 1)),
    ("in December of 2021", SAT, d(2021, 12, 1), d(2022, 1, 1)),
    ("Sept 2020", SAT, d(2020, 9, 1), d(2020, 10, 1)),
    ("2022-11", SAT, d(2022, 11, 1), d(2022, 12, 1)),
    ("during February", LEAP_END, d(2024, 2, 1), d(2024, 3, 1)),
])
def test_months(query: str, as_of: datetime, start: datetime, end: datetime) -> None:
    r = one(query, as_of)
    assert (r.start, r.end, r.kind, r.fuzzy) == (start, end, "month", False)


@pytest.mark.parametrize(("query", "start", "end"), [
    ("in early June", d(2022, 6, 1), d(2022, 6, 11)),
    ("in mid-June", d(2022, 6, 11), d(2022, 6, 21)),
    ("in late June", d(2022, 6, 21), d(2022, 7, 1)),
    ("at the end of April", d(2023, 4, 21), d(2023, 5, 1)),
    ("late February 2024", d(2024, 2, 21), d(2024, 3, 1)),
])
def test_month_thirds(query: str, start: datetime, end: datetime) -> None:
    assert span(query) == (start, end)


def test_month_text_includes_preposition() -> None:
    assert one("what did I buy in May?").text == "in May"


@pytest.mark.parametrize("query", ["may I ask you something", "I may go to Paris", "you may 2x it",
                                   "march forward", "we march 5 miles", "this may take a while",
                                   "this march was peaceful", "a gift from May", "I talked to June",
                                   "too late may be", "the 2 may be related"])
def test_month_words_in_other_senses(query: str) -> None:
    assert_none(query)


def test_may_as_verb_and_month_in_one_query() -> None:
    assert [r.text for r in find_time_ranges("We may march in May", SAT)] == ["in May"]


# --- explicit dates ---------------------------------------------------------------------

@pytest.mark.parametrize(("query", "as_of", "day"), [
    ("May 7", SAT, d(2023, 5, 7)),
    ("on may 7th", SAT, d(2023, 5, 7)),
    ("7 May", SAT, d(2023, 5, 7)),
    ("the 7th of May", SAT, d(2023, 5, 7)),
    ("May 7th, 2023", MAR, d(2023, 5, 7)),
    ("7 May 2021", SAT, d(2021, 5, 7)),
    ("Aug. 3", SAT, d(2022, 8, 3)),
    ("May 25", SAT, d(2022, 5, 25)),             # later this year -> last year's
    ("May 7", MAR, d(2022, 5, 7)),
    ("Feb 29", SAT, d(2020, 2, 29)),             # the latest leap day
    ("2023-05-07", SAT, d(2023, 5, 7)),
    ("2023/05/07", SAT, d(2023, 5, 7)),
    ("5/7/2023", SAT, d(2023, 5, 7)),            # US month/day
    ("12/25/22", SAT, d(2022, 12, 25)),
    ("on the 7th", SAT, d(2023, 5, 7)),
    ("on the 25th", SAT, d(2023, 4, 25)),        # later this month -> previous month
    ("on the 31st", SAT, d(2023, 3, 31)),        # April has no 31st
    ("on the 4th of July", SAT, d(2022, 7, 4)),
])
def test_dates(query: str, as_of: datetime, day: datetime) -> None:
    r = one(query, as_of)
    assert (r.start, r.end, r.kind, r.fuzzy) == (day, day + timedelta(days=1), "date", False)


def test_weekday_prefix_is_part_of_the_date() -> None:
    r = one("on Sunday, May 7")
    assert r.text == "on Sunday, May 7" and r.start == d(2023, 5, 7)


@pytest.mark.parametrize("query", ["I ate 5 apples", "February 30", "2023-02-30", "13/25/2023",
                                   "on the 3rd floor", "the 2nd time", "version 1/2/3",
                                   "call 555-1234", "it costs 12.50", "March 3:30",
                                   "I scored 2022 points", "in 2000 steps", "the 7th"])
def test_numbers_that_are_not_dates(query: str) -> None:
    assert_none(query)


# --- years and seasons ------------------------------------------------------------------

@pytest.mark.parametrize(("query", "start"), [("in 2022", 2022), ("during 1999", 1999),
                                              ("back in 2019", 2019)])
def test_years(query: str, start: int) -> None:
    r = one(query)
    assert (r.start, r.end, r.kind) == (d(start, 1, 1), d(start + 1, 1, 1), "year")


@pytest.mark.parametrize(("query", "as_of", "start", "fuzzy"), [
    ("last summer", SAT, d(2022, 6, 1), False),
    ("last summer", OCT, d(2023, 6, 1), False),
    ("last summer", datetime(2023, 7, 10, tzinfo=UTC), d(2022, 6, 1), False),
    ("this spring", SAT, d(2023, 3, 1), False),
    ("this spring", OCT, d(2023, 3, 1), False),
    ("this winter", OCT, d(2023, 12, 1), False),
    ("this winter", JAN, d(2022, 12, 1), False),
    ("next summer", SAT, d(2023, 6, 1), False),
    ("in the winter", JAN, d(2022, 12, 1), True),
    ("in the winter", SAT, d(2022, 12, 1), True),
    ("in the summer", SAT, d(2022, 6, 1), True),
    ("during autumn", SAT, d(2022, 9, 1), True),
    ("in the fall", OCT, d(2023, 9, 1), True),
    ("the summer of 2021", SAT, d(2021, 6, 1), False),
    ("winter 2022", SAT, d(2022, 12, 1), False),
])
def test_seasons(query: str, as_of: datetime, start: datetime, fuzzy: bool) -> None:
    r = one(query, as_of)
    end = start.replace(year=start.year + 1, month=3) if start.month == 12 else start.replace(month=start.month + 3)
    assert (r.start, r.end, r.kind, r.fuzzy) == (start, end, "season", fuzzy)


@pytest.mark.parametrize("query", ["the fall of Rome", "in the spring of my life", "did I fall",
                                   "a hot spring"])
def test_season_words_in_other_senses(query: str) -> None:
    assert_none(query)


# --- recency ----------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "days"), [("what did I watch recently", 14), ("lately", 30),
                                             ("the other day", 7)])
def test_recency_windows_end_at_as_of(query: str, days: int) -> None:
    r = one(query)
    assert (r.start, r.end, r.kind, r.fuzzy) == (SAT - timedelta(days=days), SAT, "recent", True)


# --- open and closed ranges -------------------------------------------------------------

def test_before_month() -> None:
    r = one("what did I buy before May", MAR)
    assert (r.start, r.end, r.kind, r.text) == (OPEN_START, d(2022, 5, 1), "range", "before May")


def test_after_year_and_since_week() -> None:
    assert span("after 2020") == (d(2021, 1, 1), OPEN_END)
    assert span("since last week") == (d(2023, 5, 8), OPEN_END)
    assert span("until June") == (OPEN_START, d(2022, 7, 1))
    assert span("prior to March 3") == (OPEN_START, d(2023, 3, 3))


def test_open_bounds_are_utc_and_survive_timezone_conversion() -> None:
    assert OPEN_START.tzinfo is UTC and OPEN_END.tzinfo is UTC
    for tz in (timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))):
        OPEN_START.astimezone(tz)
        OPEN_END.astimezone(tz)


def test_since_fuzzy_expression_stays_fuzzy() -> None:
    r = one("since two weeks ago")
    assert r.kind == "range" and r.fuzzy and r.end == OPEN_END


@pytest.mark.parametrize(("query", "as_of", "start", "end"), [
    ("between May and July", MAR, d(2022, 5, 1), d(2022, 8, 1)),
    ("between November and February", datetime(2023, 12, 10, tzinfo=UTC), d(2022, 11, 1), d(2023, 3, 1)),
    ("from Monday to Wednesday", SAT, d(2023, 5, 15), d(2023, 5, 18)),
    ("from Friday to Monday", WED, d(2023, 5, 12), d(2023, 5, 16)),
    ("between 2019 and 2021", SAT, d(2019, 1, 1), d(2022, 1, 1)),
    ("from May 1 until May 7", SAT, d(2023, 5, 1), d(2023, 5, 8)),
])
def test_closed_ranges(query: str, as_of: datetime, start: datetime, end: datetime) -> None:
    r = one(query, as_of)
    assert (r.start, r.end, r.kind, r.text) == (start, end, "range", query)


# --- several expressions, time zones, stripping ----------------------------------------

def test_several_expressions_in_order() -> None:
    ranges = find_time_ranges("did I swim last weekend or on May 7?", SAT)
    assert [r.text for r in ranges] == ["last weekend", "on May 7"]


def test_calendar_days_follow_as_of_timezone() -> None:
    tz = timezone(timedelta(hours=-5))
    as_of = datetime(2023, 5, 20, 2, 0, tzinfo=tz)     # 07:00 UTC
    r = one("yesterday", as_of)
    assert r.start == datetime(2023, 5, 19, tzinfo=tz) and r.start.tzinfo == UTC
    assert r.end == datetime(2023, 5, 20, tzinfo=tz)


def test_naive_as_of_counts_as_utc() -> None:
    assert span("today", datetime(2023, 5, 20, 15, 30)) == (d(2023, 5, 20), d(2023, 5, 21))


@pytest.mark.parametrize(("query", "expected"), [
    ("what did I buy last month?", "what did I buy?"),
    ("Where did I go in May 2022 with Anna", "Where did I go with Anna"),
    ("what did  I read in the past 3 days ,  and yesterday", "what did I read, and"),
    ("no time here", "no time here"),
])
def test_strip_time_expressions(query: str, expected: str) -> None:
    assert strip_time_expressions(query, find_time_ranges(query, SAT)) == expected


def test_strip_is_case_insensitive_and_ignores_missing_text() -> None:
    r = TimeRange(d(2023, 5, 19), d(2023, 5, 20), "YESTERDAY", "relative_day", False)
    gone = TimeRange(d(2023, 5, 19), d(2023, 5, 20), "last week", "week", False)
    assert strip_time_expressions("what about yesterday?", [r, gone]) == "what about?"


@pytest.mark.parametrize("as_of", [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=UTC),
                                   datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
                                   datetime(9999, 12, 31, tzinfo=timezone(timedelta(hours=-12)))])
def test_extreme_as_of_never_raises(as_of: datetime) -> None:
    query = ("today yesterday tonight 9999 years ago next year last year next week in May "
             "before 2022 after 2099 since yesterday the past 9999 months next summer on the 31st "
             "in the winter between May and July recently")
    for r in find_time_ranges(query, as_of):
        assert r.start < r.end


def test_empty_and_non_string() -> None:
    assert find_time_ranges("", SAT) == []
    assert find_time_ranges(None, SAT) == []  # type: ignore[arg-type]


# --- property: never raises on arbitrary text ------------------------------------------

_VOCAB = ["today", "yesterday", "the", "day", "before", "after", "since", "between", "and", "from",
          "to", "last", "this", "next", "past", "in", "on", "a", "few", "couple", "of", "two", "3",
          "31st", "days", "weeks", "month", "years", "ago", "May", "march", "June", "Monday",
          "sunday", "weekend", "summer", "fall", "2022", "1999", "7", "7th", "5/7/2023",
          "2023-02-29", "early", "late", "mid-", "recently", "the other day", "tonight", "morning",
          "night", ",", "?", "I", "may", "school", "9999", "0", "an", "hour"]
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)),
                          timezone(timedelta(hours=5, minutes=30))])
_AS_OF = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=_ZONES)


def _check(query: str, as_of: datetime) -> None:
    ranges = find_time_ranges(query, as_of)
    lowered = query.lower()
    for r in ranges:
        assert r.start.tzinfo is not None and r.end.tzinfo is not None
        assert r.start < r.end
        assert r.text and r.text.lower() in lowered
    strip_time_expressions(query, ranges)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), _AS_OF)
def test_random_text_never_raises(query: str, as_of: datetime) -> None:
    _check(query, as_of)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_VOCAB), max_size=14), _AS_OF)
def test_time_vocabulary_never_raises(words: list[str], as_of: datetime) -> None:
    _check(" ".join(words), as_of)
