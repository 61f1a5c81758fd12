"""Cron schedules: the grammar (table tests) and the ticks (hypothesis, against a brute-force
walk over minutes and days that re-reads the fields with its own, naive rule)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from kubeless.api import cron, validate, workload


def utc(text: str) -> float:
    return float(calendar.timegm(datetime.fromisoformat(text).timetuple()))


@pytest.mark.parametrize("text, error", [
    ("*/5 * * * *", None),
    ("0 9-17/2 * jan,JUL mon-fri", None),
    ("@hourly", None),
    ("0 0 29 2 *", None),
    ("5/15 * * * 7", None),
    ("* * * *", "4 fields, expected 5: minute hour day-of-month month day-of-week (UTC)"),
    ("60 * * * *", "minute field '60': 60 is outside 0-59"),
    ("* 24 * * *", "hour field '24': 24 is outside 0-23"),
    ("* * 0 * *", "day-of-month field '0': 0 is outside 1-31"),
    ("* * * foo *", "month field 'foo': 'foo' is not a number or a name (jan..dec)"),
    ("* * * * 8", "day-of-week field '8': 8 is outside 0-7"),
    ("*/0 * * * *", "minute field '*/0': step '0' in '*/0' is not a positive number"),
    ("5-1 * * * *", "minute field '5-1': range '5-1' runs backwards"),
    ("1,,2 * * * *", "minute field '1,,2': empty entry in '1,,2'"),
    ("0 0 30 2 *", "'0 0 30 2 *' never fires (no such day in 30 years)"),
    ("@reboot", "1 fields, expected 5: minute hour day-of-month month day-of-week (UTC)"),
])
def test_grammar(text: str, error: str | None) -> None:
    assert cron.error(text) == error


@pytest.mark.parametrize("expr, after, expected", [
    ("*/5 * * * *", "2026-12-02T10:03:59", "2026-12-02T10:05:00"),
    ("*/5 * * * *", "2026-12-02T10:05:00", "2026-12-02T10:10:00"),  # strictly after
    ("0 0 1 1 *", "2026-12-02T10:00:00", "2027-01-01T00:00:00"),
    ("0 12 * * mon", "2026-12-02T10:00:00", "2026-12-07T12:00:00"),  # Dec 2 2026 is a Wednesday
    ("0 0 13 * fri", "2026-12-02T10:00:00", "2026-12-04T00:00:00"),  # Vixie: either day field
    ("0 0 */2 * fri", "2026-12-02T10:00:00", "2026-12-11T00:00:00"),  # "*/2" is no restriction: an odd day and a Friday
    ("0 0 29 2 *", "2026-12-02T10:00:00", "2028-02-29T00:00:00"),
    ("30 23 31 * *", "2026-11-30T00:00:00", "2026-12-31T23:30:00"),
    ("0 0 * * 7", "2026-12-02T10:00:00", "2026-12-06T00:00:00"),  # 7 is Sunday
])
def test_next_tick(expr: str, after: str, expected: str) -> None:
    assert cron.next_tick(expr, utc(after)) == utc(expected)


def test_ticks_between() -> None:
    start = utc("2026-12-02T10:00:00")
    ticks = list(cron.ticks_between("*/20 * * * *", start, start + 3600))
    assert ticks == [start + 1200, start + 2400, start + 3600]


def test_validation_reports_the_schedule() -> None:
    doc = {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": {"name": "nightly"},
           "spec": {"mode": "replicated-job", "schedule": "0 25 * * *",
                    "template": {"image": "busybox"}}}
    assert [m for _, m in workload.problems(doc)] == ["hour field '25': 25 is outside 0-23"]
    with pytest.raises(Exception, match=r"spec\.schedule.*hour field '25'"):
        validate(doc)


# -- ticks against a brute-force walk ---------------------------------------------------

def _entry(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    return st.one_of(
        number.map(str),
        st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.integers(1, high - low + 1).map(lambda n: f"*/{n}"),
        st.tuples(number, number, st.integers(1, 12)).map(
            lambda abn: f"{min(abn[:2])}-{max(abn[:2])}/{abn[2]}"),
        number.flatmap(lambda a: st.integers(1, 9).map(lambda n: f"{a}/{n}")))


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(st.just("*"), st.lists(_entry(low, high), min_size=1, max_size=3)
                     .map(",".join))


expressions = st.tuples(*(_field(low, high) for _, low, high, _ in cron.FIELDS)).map(" ".join)
instants = st.floats(0, utc("2040-01-01T00:00:00"), allow_nan=False)


def naive_values(text: str, low: int, high: int) -> set[int]:
    """The field's values by the plain reading of the grammar (numbers only)."""
    out: set[int] = set()
    for part in text.split(","):
        body, _, step = part.partition("/")
        if body == "*":
            a, b = low, high
        elif "-" in body:
            a, b = (int(x) for x in body.split("-"))
        else:
            a = int(body)
            b = high if step else a
        out.update(v for v in range(a, b + 1) if (v - a) % int(step or 1) == 0)
    return out


def naive_day(fields: list[str], when: datetime) -> bool:
    dom = when.day in naive_values(fields[2], 1, 31)
    dow = (when.isoweekday() % 7) in {v % 7 for v in naive_values(fields[4], 0, 7)}
    month = when.month in naive_values(fields[3], 1, 12)
    if fields[2].startswith("*") or fields[4].startswith("*"):
        return month and dom and dow
    return month and (dom or dow)


def naive_match(fields: list[str], when: datetime) -> bool:
    return (when.minute in naive_values(fields[0], 0, 59)
            and when.hour in naive_values(fields[1], 0, 23) and naive_day(fields, when))


@settings(max_examples=150, deadline=None)
@given(expressions, instants)
def test_next_tick_is_the_first_matching_minute(expr: str, after: float) -> None:
    fields = expr.split()
    try:
        tick = cron.next_tick(expr, after)
    except cron.CronError:  # a day that never exists (Feb 30): no day may match for years
        start = datetime.fromtimestamp(after, tz=timezone.utc)
        assert not any(naive_day(fields, start + timedelta(days=d)) for d in range(366 * 9))
        return
    assert tick > after and tick % 60 == 0
    found = datetime.fromtimestamp(tick, tz=timezone.utc)
    assert naive_match(fields, found)
    # Every minute before it: walked one by one for two days, then day by day (a day that
    # matches holds a matching minute: the minute and hour fields are never empty).
    minute = datetime.fromtimestamp(after // 60 * 60 + 60, tz=timezone.utc)
    walk_end = min(found, (minute + timedelta(days=2)).replace(hour=0, minute=0))
    while minute < walk_end:
        assert not naive_match(fields, minute), minute
        minute += timedelta(minutes=1)
    day = walk_end
    while day < found.replace(hour=0, minute=0):
        assert not naive_day(fields, day), day
        day += timedelta(days=1)


@settings(max_examples=50, deadline=None)
@given(expressions, instants, st.integers(1, 5))
def test_ticks_between_chains_next_tick(expr: str, start: float, count: int) -> None:
    try:
        first = cron.next_tick(expr, start)
    except cron.CronError:
        return
    ticks = [first]
    while len(ticks) < count:
        ticks.append(cron.next_tick(expr, ticks[-1]))
    assert list(cron.ticks_between(expr, start, ticks[-1])) == ticks
