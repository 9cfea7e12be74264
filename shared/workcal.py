"""The working calendar: business hours on working days, per region.

A working day is a weekday that is not a public holiday, or a weekend day the State Council
made a make-up working day (调休上班). The holidays and make-up days come from one YAML file per
year (`shared/calendars/<calendar>/<year>.yaml`); which calendar, time zone and business hours a
region uses comes from `shared/calendars/regions.yaml` (or the file AFTERSALES_WORKCAL_FILE names).

A clock on this calendar runs only inside business hours of working days:
`add_working_time(start, delta)` is the instant at which `delta` of such time has passed since
`start`; `working_time_between(a, b)` is how much of it lies between two instants. Durations of
whole days are counted in working days by `working_duration` (P2D = two working days' hours),
so "resolve within 2 days" filed Monday 10:00 is due Wednesday 10:00, or after the holiday.

A date outside the years the calendar has is either refused (`CalendarNotCovered`, naming the
years it has and the file to add) or, by default, treated as weekends-only with one warning per
year logged, so a service keeps its clocks running when a new year's file is late; the region's
`missing_year` setting decides.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.validation import check_timezone

log = structlog.get_logger("aftersales.workcal")

CALENDARS_DIR = Path(__file__).parent / "calendars"
REGIONS_FILE = CALENDARS_DIR / "regions.yaml"
# Ten years without a single working hour means the calendar is wrong, not that time is short.
_MAX_IDLE_DAYS = 3660

MissingYear = Literal["weekends", "refuse"]


class CalendarError(ValueError):
    """A calendar file or region table that cannot be used; the message names the file and field."""


class CalendarNotCovered(CalendarError):
    """A date in a year the calendar has no file for (and the region refuses to guess)."""


# ---------------------------------------------------------------------------------------
# The files


class _HolidaySpan(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    first: date = Field(alias="from")
    last: date = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> _HolidaySpan:
        if self.last < self.first:
            raise ValueError(f"holiday {self.name!r} ends ({self.last}) before it starts ({self.first})")
        return self


class _MakeUpDay(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    day: date = Field(alias="date")
    for_holiday: str = Field(alias="for")

    @field_validator("day")
    @classmethod
    def _weekend(cls, value: date) -> date:
        if value.weekday() < 5:
            raise ValueError(f"{value} is a {value.strftime('%A')}; a make-up working day (调休) falls on a weekend")
        return value


class _YearFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    year: int
    calendar: str
    provisional: bool = False
    source: str | None = None
    holidays: list[_HolidaySpan] = Field(default_factory=list)
    workdays: list[_MakeUpDay] = Field(default_factory=list)


class _RegionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calendar: str | None = None
    timezone: str | None = None
    hours: list[tuple[time, time]] | None = None
    missing_year: MissingYear | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("hours")
    @classmethod
    def _spans(cls, value: list[tuple[time, time]] | None) -> list[tuple[time, time]] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("hours is empty: a working day needs at least one span such as ['09:00', '17:00']")
        previous = time.min
        for start, end in value:
            if end <= start:
                raise ValueError(f"business hours span {start:%H:%M}–{end:%H:%M} ends before it starts")
            if start < previous:
                raise ValueError(f"business hours span {start:%H:%M}–{end:%H:%M} overlaps or precedes the one before")
            previous = end
        return value


class _RegionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: _RegionEntry
    regions: dict[str, _RegionEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete_default(self) -> _RegionsFile:
        missing = [n for n in ("calendar", "timezone", "hours") if getattr(self.default, n) is None]
        if missing:
            raise ValueError(f"the default region must name {', '.join(missing)}")
        return self


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalendarError(f"calendar file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise CalendarError(f"calendar file {path} is not valid YAML: {exc}") from None


def _parse(model: type[BaseModel], path: Path) -> BaseModel:
    try:
        return model.model_validate(_read_yaml(path))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise CalendarError(f"calendar file {path}: {problems}") from None


@dataclass(frozen=True)
class CalendarYear:
    """One year's official schedule: its days off and its make-up working days."""

    year: int
    provisional: bool
    source: str | None
    holidays: dict[date, str]
    workdays: dict[date, str]
    path: Path

    @classmethod
    def read(cls, path: Path, calendar: str) -> CalendarYear:
        parsed = _parse(_YearFile, path)
        assert isinstance(parsed, _YearFile)
        if parsed.calendar != calendar or path.stem != str(parsed.year):
            raise CalendarError(
                f"calendar file {path} says calendar {parsed.calendar!r} year {parsed.year}; "
                f"its place says calendar {calendar!r} year {path.stem}"
            )
        holidays: dict[date, str] = {}
        for span in parsed.holidays:
            day = span.first
            while day <= span.last:
                holidays[day] = span.name
                day += timedelta(days=1)
        workdays = {w.day: w.for_holiday for w in parsed.workdays}
        both = sorted(set(holidays) & set(workdays))
        if both:
            raise CalendarError(f"calendar file {path}: {both[0]} is both a holiday and a make-up working day")
        return cls(parsed.year, parsed.provisional, parsed.source, holidays, workdays, path)


# ---------------------------------------------------------------------------------------
# The calendar


@dataclass
class WorkingCalendar:
    """Business hours on working days in one time zone, from a holiday calendar's years."""

    name: str
    timezone: ZoneInfo
    hours: tuple[tuple[time, time], ...]
    years: dict[int, CalendarYear]
    missing_year: MissingYear = "weekends"
    _warned: set[int] = field(default_factory=set, repr=False)
    # A day's business periods as instants, computed once (SLA clocks ask for the same days again and again).
    _days: dict[date, tuple[tuple[datetime, datetime], ...]] = field(default_factory=dict, repr=False)

    # -- loading ------------------------------------------------------------------------
    @classmethod
    def load(cls, region: str | None = None, *, regions_file: Path | str | None = None) -> WorkingCalendar:
        """The calendar of `region` (its own entry in the regions file, else the default).
        The regions file is AFTERSALES_WORKCAL_FILE if set, else the one shipped here."""
        return _load(region, str(regions_file or os.environ.get("AFTERSALES_WORKCAL_FILE") or REGIONS_FILE))

    @classmethod
    def from_directory(
        cls, directory: Path, *, name: str, timezone: str, hours: list[tuple[time, time]],
        missing_year: MissingYear = "weekends",
    ) -> WorkingCalendar:
        years: dict[int, CalendarYear] = {}
        if not directory.is_dir():
            raise CalendarError(f"holiday calendar {name!r}: no folder {directory} with one YAML file per year")
        for file in sorted(directory.glob("*.yaml")):
            year = CalendarYear.read(file, name)
            years[year.year] = year
        if not years:
            raise CalendarError(f"holiday calendar {name!r}: {directory} holds no <year>.yaml file")
        provisional = [y for y in sorted(years) if years[y].provisional]
        if provisional:
            log.warning("workcal.provisional_years", calendar=name, years=provisional,
                        hint="replace them with the State Council's notice when it is published")
        return cls(name, ZoneInfo(timezone), tuple(hours), years, missing_year)

    # -- days ---------------------------------------------------------------------------
    @property
    def covered_years(self) -> list[int]:
        return sorted(self.years)

    def _year(self, day: date) -> CalendarYear | None:
        found = self.years.get(day.year)
        if found is not None:
            return found
        if self.missing_year == "refuse":
            raise CalendarNotCovered(
                f"the {self.name} working calendar has no year {day.year} (it has "
                f"{', '.join(map(str, self.covered_years))}); add shared/calendars/{self.name}/{day.year}.yaml "
                "from the State Council's notice"
            )
        if day.year not in self._warned:
            self._warned.add(day.year)
            log.warning("workcal.year_missing", calendar=self.name, year=day.year, covered=self.covered_years,
                        assumed="Saturdays and Sundays off, no public holidays")
        return None

    def is_working_day(self, day: date) -> bool:
        """A weekday that is no public holiday, or a make-up working day (调休上班)."""
        # A make-up day or holiday may be listed in the neighbouring year's file (a New Year
        # bridge), so every loaded year is consulted before the day's own.
        for year in self.years.values():
            if day in year.workdays:
                return True
            if day in year.holidays:
                return False
        self._year(day)
        return day.weekday() < 5

    def holiday_name(self, day: date) -> str | None:
        return next((y.holidays[day] for y in self.years.values() if day in y.holidays), None)

    def __post_init__(self) -> None:
        self.working_day_length: timedelta = sum((_span(s, e) for s, e in self.hours), timedelta(0))

    def working_duration(self, delta: timedelta) -> timedelta:
        """A rule's duration as working time: whole days count as working days (P2D = two
        working days' business hours), the rest as business hours (PT4H = four of them)."""
        return delta.days * self.working_day_length + timedelta(seconds=delta.seconds, microseconds=delta.microseconds)

    # -- instants -----------------------------------------------------------------------
    def periods(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The business-hours periods that end after `start`, in order, as aware instants."""
        _aware(start, "start")
        day = start.astimezone(self.timezone).date()
        idle = 0
        while True:
            periods = self._day(day)
            if periods:
                idle = 0
                for p0, p1 in periods:
                    if p1 > start:
                        yield p0, p1
            else:
                idle += 1
                if idle > _MAX_IDLE_DAYS:
                    raise CalendarError(f"the {self.name} working calendar has no working day in ten years after {day}")
            day += timedelta(days=1)

    def _day(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        found = self._days.get(day)
        if found is None:
            found = tuple((_at(day, s, self.timezone), _at(day, e, self.timezone)) for s, e in self.hours) \
                if self.is_working_day(day) else ()
            self._days[day] = found
        return found

    def next_working_moment(self, moment: datetime) -> datetime:
        """`moment` itself if it lies inside business hours of a working day, else the start of
        the next such period."""
        p0, _ = next(self.periods(moment))
        return max(p0, moment)

    def add_working_time(self, start: datetime, delta: timedelta) -> datetime:
        """The instant at which `delta` of business time has passed since `start` (the clock
        stands still at night, on weekends and holidays, and runs on make-up working days)."""
        if delta < timedelta(0):
            raise ValueError(f"add_working_time needs a duration of zero or more, not {delta}")
        if delta == timedelta(0):
            return start
        left = delta
        for p0, p1 in self.periods(start):
            begin = max(p0, start)
            if left <= p1 - begin:
                return begin + left
            left -= p1 - begin
        raise AssertionError("unreachable: periods() never ends")

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """The business time between two instants (negative if b is before a)."""
        _aware(b, "end")
        if b < a:
            return -self.working_time_between(b, a)
        total = timedelta(0)
        for p0, p1 in self.periods(a):
            if p0 >= b:
                break
            total += min(p1, b) - max(p0, a)
        return total


def _span(start: time, end: time) -> timedelta:
    return datetime.combine(date.min, end) - datetime.combine(date.min, start)


def _at(day: date, wall: time, zone: ZoneInfo) -> datetime:
    # A wall time in a daylight-saving gap does not exist; normalising through UTC moves it on.
    return datetime.combine(day, wall, tzinfo=zone).astimezone(ZoneInfo("UTC")).astimezone(zone)


def _aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"the working calendar needs a timezone-aware {what}, got {moment.isoformat()}")


@lru_cache(maxsize=64)
def _load(region: str | None, where: str) -> WorkingCalendar:
    regions_file = Path(where).resolve()
    parsed = _parse(_RegionsFile, regions_file)
    assert isinstance(parsed, _RegionsFile)
    entry = parsed.regions.get(region) if region else None
    base = parsed.default

    def pick(name: str) -> Any:  # the region's own value, else the default's
        value = getattr(entry, name) if entry is not None else None
        return value if value is not None else getattr(base, name)

    calendar = pick("calendar")
    return WorkingCalendar.from_directory(
        regions_file.parent / calendar, name=calendar, timezone=pick("timezone"), hours=pick("hours"),
        missing_year=pick("missing_year") or "weekends",
    )
