"""Calendar arithmetic the rules share: months, ISO weeks, local wall-clock windows."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def add_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month `months` later, clamped to the month's last day (Jan 31 + 1 = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def iso_week(moment: datetime | date) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(moment: datetime | date) -> date:
    day = moment.date() if isinstance(moment, datetime) else moment
    return day - timedelta(days=day.weekday())


def month_span(month: str, zone: str) -> tuple[datetime, datetime]:
    """A month written like 2026-11 as its first instant and the next month's, in `zone`;
    ValueError saying how to write it otherwise."""
    try:
        year, number = (int(p) for p in month.split("-"))
        start = datetime(year, number, 1, tzinfo=ZoneInfo(zone))
        end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=ZoneInfo(zone))
    except (ValueError, TypeError):
        raise ValueError(f"month {month!r} is not a month; write it like 2026-11") from None
    return start, end


def local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def next_time_within(moment: datetime, zone: str, start: time, end: time) -> datetime:
    """The earliest instant >= `moment` whose wall-clock time in `zone` lies in [start, end).
    Handles daylight-saving gaps by resolving wall times through the zone."""
    tz = ZoneInfo(zone)
    here = moment.astimezone(tz)
    if start <= here.time().replace(tzinfo=None) < end:
        return moment
    day = here.date() if here.time().replace(tzinfo=None) < start else here.date() + timedelta(days=1)
    candidate = datetime.combine(day, start, tzinfo=tz)
    # A wall time in a DST gap does not exist; normalising through UTC moves it forward.
    return candidate.astimezone(ZoneInfo("UTC")).astimezone(tz)
