"""Time expressions resolved against as_of (a Tuesday: 2023-05-30 23:40 UTC)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memstrata.retrieve.timeexpr import find_time_ranges, strip_time_expressions

UTC = timezone.utc
NOW = datetime(2023, 5, 30, 23, 40, tzinfo=UTC)


def one(query: str, now: datetime = NOW) -> tuple[date, date, bool]:
    ranges = find_time_ranges(query, now)
    assert len(ranges) == 1, ranges
    r = ranges[0]
    return r.start.date(), r.end.date(), r.fuzzy


@pytest.mark.parametrize(
    ("query", "start", "end", "fuzzy"),
    [
        ("what did I buy last month?", date(2023, 4, 1), date(2023, 5, 1), False),
        ("what did I do yesterday", date(2023, 5, 29), date(2023, 5, 30), False),
        ("the day before yesterday", date(2023, 5, 28), date(2023, 5, 29), False),
        ("today", date(2023, 5, 30), date(2023, 5, 31), False),
        ("last night", date(2023, 5, 29), date(2023, 5, 30), False),
        ("last Saturday", date(2023, 5, 27), date(2023, 5, 28), False),
        ("last Tuesday", date(2023, 5, 23), date(2023, 5, 24), False),  # strictly before today
        ("on Monday", date(2023, 5, 29), date(2023, 5, 30), False),
        ("this Friday", date(2023, 6, 2), date(2023, 6, 3), False),
        ("two weeks ago", date(2023, 5, 13), date(2023, 5, 20), True),
        ("3 days ago", date(2023, 5, 26), date(2023, 5, 29), True),
        ("a couple of days ago", date(2023, 5, 27), date(2023, 5, 30), False),
        ("a few weeks ago", date(2023, 5, 6), date(2023, 5, 13), True),
        ("three months ago", date(2023, 2, 1), date(2023, 3, 1), True),
        ("a year ago", date(2022, 1, 1), date(2023, 1, 1), True),
        ("in the past 3 days", date(2023, 5, 27), date(2023, 5, 30), False),
        ("over the last two weeks", date(2023, 5, 16), date(2023, 5, 30), False),
        ("last week", date(2023, 5, 22), date(2023, 5, 29), False),
        ("this week", date(2023, 5, 29), date(2023, 6, 5), False),
        ("last weekend", date(2023, 5, 27), date(2023, 5, 29), False),
        ("this weekend", date(2023, 6, 3), date(2023, 6, 5), False),
        ("in May", date(2023, 5, 1), date(2023, 6, 1), False),
        ("in June", date(2022, 6, 1), date(2022, 7, 1), False),  # the latest June not after as_of
        ("last May", date(2022, 5, 1), date(2022, 6, 1), False),
        ("in early June", date(2022, 6, 1), date(2022, 6, 11), False),
        ("late April", date(2023, 4, 21), date(2023, 5, 1), False),
        ("May 2022", date(2022, 5, 1), date(2022, 6, 1), False),
        ("on May 7th, 2023", date(2023, 5, 7), date(2023, 5, 8), False),
        ("7 May", date(2023, 5, 7), date(2023, 5, 8), False),
        ("the 7th of May", date(2023, 5, 7), date(2023, 5, 8), False),
        ("Dec 3", date(2022, 12, 3), date(2022, 12, 4), False),
        ("2023-05-07", date(2023, 5, 7), date(2023, 5, 8), False),
        ("5/7/2023", date(2023, 5, 7), date(2023, 5, 8), False),
        ("on the 7th", date(2023, 5, 7), date(2023, 5, 8), True),
        ("in 2022", date(2022, 1, 1), date(2023, 1, 1), False),
        ("last year", date(2022, 1, 1), date(2023, 1, 1), False),
        ("last summer", date(2022, 6, 1), date(2022, 9, 1), False),
        ("this spring", date(2023, 3, 1), date(2023, 6, 1), False),
        ("in the winter", date(2022, 12, 1), date(2023, 3, 1), True),
        ("recently", date(2023, 4, 30), date(2023, 5, 30), True),
        ("the other day", date(2023, 5, 23), date(2023, 5, 30), True),
        ("since April", date(2023, 4, 1), date(2023, 5, 30), False),
        ("after March", date(2023, 4, 1), date(9999, 12, 30), False),
        ("between Nov 2021 and Feb 2022", date(2021, 11, 1), date(2022, 3, 1), False),
    ],
)
def test_resolves(query: str, start: date, end: date, fuzzy: bool) -> None:
    assert one(query) == (start, end, fuzzy)


def test_before_is_open_ended() -> None:
    r = find_time_ranges("before June 2022", NOW)[0]
    assert r.start.year == 1 and r.end == datetime(2022, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("query", [
    "may I ask what I ate", "I may go to the park", "march forward", "the last book I read", "5 apples",
    "a second opinion", "How many days ago did I run the 5K?", "Sunday school", "The May I ask", "last time we spoke",
])
def test_does_not_invent_times(query: str) -> None:
    assert find_time_ranges(query, NOW) == []


def test_month_arithmetic_at_month_end_and_leap_years() -> None:
    end_of_march = datetime(2024, 3, 31, 12, tzinfo=UTC)
    assert one("a month ago", end_of_march)[:2] == (date(2024, 2, 1), date(2024, 3, 1))
    assert one("in the past month", end_of_march)[:2] == (date(2024, 2, 29), date(2024, 3, 31))
    assert one("in the past year", datetime(2024, 2, 29, tzinfo=UTC))[:2] == (date(2023, 2, 28), date(2024, 2, 29))
    assert one("last month", datetime(2024, 1, 15, tzinfo=UTC))[:2] == (date(2023, 12, 1), date(2024, 1, 1))


def test_several_expressions_and_stripping() -> None:
    q = "what did I cook last Saturday and in early June?"
    ranges = find_time_ranges(q, NOW)
    assert [r.text for r in ranges] == ["last Saturday", "in early June"]
    assert strip_time_expressions(q, ranges) == "what did I cook and ?"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)))
def test_never_raises_and_ranges_are_sane(query: str, now: datetime) -> None:
    for r in find_time_ranges(query, now):
        assert r.start < r.end and r.start.tzinfo and r.end.tzinfo
        assert r.text.lower() in query.lower()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["in", "May", "last", "week", "3", "days", "ago", "the", "7th", "of", "June", "2023",
                                 "before", "since", "between", "and", "March", "on", "Friday", "/", "-", "12"]),
                max_size=10),
       st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)))
def test_time_like_word_salad_never_raises(words: list[str], now: datetime) -> None:
    for r in find_time_ranges(" ".join(words), now):
        assert r.start < r.end
