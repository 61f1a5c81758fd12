"""Cron schedules: the 5-field grammar a job's ``spec.schedule`` is written in (UTC).

``minute hour day-of-month month day-of-week``, as Vixie cron (and
Kubernetes' CronJob) read them: each field ``*``, a number, a range
``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from a to the field's end),
or a comma list of those; months ``jan``..``dec`` and weekdays
``sun``..``sat`` by name (any case); weekday 7 is Sunday again. The
shorthands ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``,
``@daily`` (``@midnight``) and ``@hourly`` stand for their 5 fields.
Vixie's rule for the two day fields: when both are restricted (neither
starts with ``*``) a day matches if either does; otherwise both must.

- ``parse`` -> ``Schedule`` (raises ``CronError``, one line naming the field);
- ``error`` -> that line or None (what validation reports for spec.schedule);
- ``next_tick`` and ``ticks_between``: the ticks, in unix seconds.

Pure and ours rather than croniter's: this is the whole grammar in a screen,
validation needs one line naming the bad field, and the controllers would
otherwise take a dependency (with its own time-zone and seconds extensions
we must refuse anyway) for a hundred lines of set arithmetic.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names for lowest.. on) per field, in order.
FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()),
          ("month", 1, 12, MONTHS), ("day-of-week", 0, 7, WEEKDAYS))
SHORTHANDS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
              "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
              "@hourly": "0 * * * *"}
# A schedule with no tick in this many years never fires (Feb 29 on a given weekday
# recurs within 28 years; a day that never exists, such as Feb 30, never does).
HORIZON_YEARS = 30


class CronError(ValueError):
    """A schedule that does not parse (or never fires); the message is one line."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]  # of the month, 1..31
    months: frozenset[int]  # 1..12
    weekdays: frozenset[int]  # 0..6, Sunday 0
    days_restricted: bool  # the day-of-month field does not start with "*"
    weekdays_restricted: bool

    def day_matches(self, when: datetime) -> bool:
        """Vixie's rule: both restricted -> either; otherwise both (a "*" one always holds)."""
        by_day = when.day in self.days
        by_weekday = (when.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def matches(self, when: datetime) -> bool:
        return (when.minute in self.minutes and when.hour in self.hours
                and when.month in self.months and self.day_matches(when))


def _number(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    lowered = text.lower()
    if lowered in names:
        return low + names.index(lowered)
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number" + (f" or a name ({names[0]}..{names[-1]})"
                                                         if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}-{high}")
    return value


def _field(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"step {step_text!r} in {part!r} is not a positive number")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _number(a, low, high, names), _number(b, low, high, names)
            if first > last:
                raise ValueError(f"range {body!r} runs backwards")
        elif body:
            first = _number(body, low, high, names)
            last = high if slash else first
        else:
            raise ValueError(f"empty entry in {text!r}")
        values.update(range(first, last + 1, step))
    return values


def parse(text: str) -> Schedule:
    """The schedule ``text`` says; CronError names the field that is wrong."""
    expr = SHORTHANDS.get(text.strip().lower(), text)
    parts = expr.split()
    if len(parts) != 5:
        raise CronError(f"{len(parts)} fields, expected 5: minute hour day-of-month month "
                        f"day-of-week (UTC)")
    sets: list[frozenset[int]] = []
    for part, (name, low, high, names) in zip(parts, FIELDS):
        try:
            sets.append(frozenset(_field(part, low, high, names)))
        except ValueError as err:
            raise CronError(f"{name} field {part!r}: {err}") from None
    weekdays = frozenset(d % 7 for d in sets[4])
    return Schedule(sets[0], sets[1], sets[2], sets[3], weekdays,
                    not parts[2].startswith("*"), not parts[4].startswith("*"))


def _as_schedule(expr: str | Schedule) -> Schedule:
    return expr if isinstance(expr, Schedule) else parse(expr)


def _first_after(schedule: Schedule, after: float) -> float | None:
    """The first matching minute strictly after ``after``, within the horizon."""
    when = datetime.fromtimestamp(after // 60 * 60, tz=timezone.utc) + timedelta(minutes=1)
    horizon = when.replace(year=when.year + HORIZON_YEARS, month=1, day=1)
    while when < horizon:
        if when.month not in schedule.months:  # skip to the 1st of next month
            year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
            when = when.replace(year=year, month=month, day=1, hour=0, minute=0)
        elif not schedule.day_matches(when):
            when = when.replace(hour=0, minute=0) + timedelta(days=1)
        elif when.hour not in schedule.hours:
            when = when.replace(minute=0) + timedelta(hours=1)
        elif when.minute not in schedule.minutes:
            when += timedelta(minutes=1)
        else:
            return float(calendar.timegm(when.utctimetuple()))
    return None


def error(text: str) -> str | None:
    """Why ``text`` is not a schedule (one line, naming the field), or None."""
    try:
        schedule = parse(text)
    except CronError as err:
        return str(err)
    if _first_after(schedule, 0.0) is None:
        return f"{text!r} never fires (no such day in {HORIZON_YEARS} years)"
    return None


def next_tick(expr: str | Schedule, after: float) -> float:
    """The first tick strictly after ``after`` (unix seconds, UTC). CronError: never fires."""
    tick = _first_after(_as_schedule(expr), after)
    if tick is None:
        raise CronError(f"{expr!r} never fires")
    return tick


def ticks_between(expr: str | Schedule, start: float, end: float) -> Iterator[float]:
    """The ticks in (start, end], oldest first (lazily: a caller may stop early)."""
    schedule = _as_schedule(expr)
    tick = _first_after(schedule, start)
    while tick is not None and tick <= end:
        yield tick
        tick = _first_after(schedule, tick)
