"""The working calendar: holidays, make-up working days (调休), business hours, regions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.workcal import CalendarError, CalendarNotCovered, WorkingCalendar

SH = ZoneInfo("Asia/Shanghai")


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar.load()


def test_the_2026_schedule_of_the_state_council(cal: WorkingCalendar) -> None:
    off = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 2, 16), date(2026, 2, 23), date(2026, 4, 6),
           date(2026, 5, 5), date(2026, 6, 19), date(2026, 9, 25), date(2026, 10, 7)]
    make_up = [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20),
               date(2026, 10, 10)]
    assert [d for d in off if cal.is_working_day(d)] == []
    assert all(d.weekday() >= 5 for d in make_up)
    assert [d for d in make_up if not cal.is_working_day(d)] == []
    assert cal.holiday_name(date(2026, 2, 17)) == "春节 Spring Festival"
    # An ordinary week: weekdays work, the weekend does not.
    assert [cal.is_working_day(date(2026, 11, 16) + timedelta(days=i)) for i in range(7)] == [True] * 5 + [False] * 2


def test_2027_is_shipped_provisional_with_its_statutory_holidays(cal: WorkingCalendar) -> None:
    assert cal.covered_years == [2026, 2027]
    assert cal.years[2027].provisional and not cal.years[2026].provisional
    assert not cal.is_working_day(date(2027, 2, 8))  # the lunar new year's third day, a Monday
    assert not cal.is_working_day(date(2027, 10, 4))
    assert not cal.is_working_day(date(2027, 9, 15))  # Mid-Autumn, a Wednesday
    assert cal.is_working_day(date(2027, 9, 16))


def test_business_hours_skip_the_lunch_break_and_the_night(cal: WorkingCalendar) -> None:
    assert cal.working_day_length == timedelta(hours=8)
    assert cal.add_working_time(at(2026, 11, 16, 10), timedelta(hours=4)) == at(2026, 11, 16, 15)
    assert cal.add_working_time(at(2026, 11, 16, 16), timedelta(hours=4)) == at(2026, 11, 17, 11)
    assert cal.next_working_moment(at(2026, 11, 16, 12, 20)) == at(2026, 11, 16, 13)
    assert cal.next_working_moment(at(2026, 11, 16, 9)) == at(2026, 11, 16, 9)


def test_the_clock_stands_still_over_the_spring_festival_and_runs_on_its_make_up_saturday(
    cal: WorkingCalendar,
) -> None:
    friday_evening = at(2026, 2, 13, 19)
    # Saturday 14 February is a make-up working day; 15–23 February are off.
    assert cal.next_working_moment(friday_evening) == at(2026, 2, 14, 8, 30)
    assert cal.add_working_time(friday_evening, timedelta(hours=4)) == at(2026, 2, 14, 13, 30)
    assert cal.add_working_time(friday_evening, cal.working_duration(timedelta(days=2))) == at(2026, 2, 24, 17, 30)
    assert cal.add_working_time(at(2026, 2, 14, 17), timedelta(hours=1)) == at(2026, 2, 24, 9)
    assert cal.working_time_between(friday_evening, at(2026, 2, 24, 9)) == timedelta(hours=8, minutes=30)
    assert cal.working_time_between(at(2026, 2, 24, 9), friday_evening) == -timedelta(hours=8, minutes=30)


def test_a_friday_evening_before_qingming_waits_for_tuesday(cal: WorkingCalendar) -> None:
    assert cal.next_working_moment(at(2026, 4, 3, 19)) == at(2026, 4, 7, 8, 30)


def test_whole_days_count_as_working_days(cal: WorkingCalendar) -> None:
    assert cal.working_duration(timedelta(days=2)) == timedelta(hours=16)
    assert cal.working_duration(timedelta(days=1, hours=2)) == timedelta(hours=10)
    # Monday 10:00 + 2 days → Wednesday 10:00.
    assert cal.add_working_time(at(2026, 11, 16, 10), cal.working_duration(timedelta(days=2))) == at(2026, 11, 18, 10)


def test_adding_working_time_and_measuring_it_agree(cal: WorkingCalendar) -> None:
    start = at(2026, 9, 18, 16, 45)  # Friday before a make-up Sunday (20 Sept) and Mid-Autumn
    for hours in (1, 3, 8, 13, 30, 47):
        end = cal.add_working_time(start, timedelta(hours=hours))
        assert cal.working_time_between(start, end) == timedelta(hours=hours)
    assert cal.add_working_time(start, timedelta(hours=1)) == at(2026, 9, 20, 8, 45)


def _write_region_files(root: Path, missing_year: str) -> Path:
    (root / "xx").mkdir()
    (root / "xx" / "2026.yaml").write_text(
        "year: 2026\ncalendar: xx\nholidays:\n  - {name: Founders, from: 2026-11-16, to: 2026-11-16}\n"
        "workdays:\n  - {date: 2026-11-21, for: Founders}\n", encoding="utf-8")
    regions = root / "regions.yaml"
    regions.write_text(
        "default:\n  calendar: xx\n  timezone: Asia/Shanghai\n  hours: [['09:00', '17:00']]\n"
        f"  missing_year: {missing_year}\n"
        "regions:\n  west:\n    timezone: Asia/Urumqi\n    hours: [['10:00', '18:00']]\n", encoding="utf-8")
    return regions


def test_a_region_names_its_own_calendar_zone_and_hours(tmp_path: Path) -> None:
    regions = _write_region_files(tmp_path, "refuse")
    default = WorkingCalendar.load(regions_file=regions)
    west = WorkingCalendar.load("west", regions_file=regions)
    assert not default.is_working_day(date(2026, 11, 16)) and default.is_working_day(date(2026, 11, 21))
    assert default.next_working_moment(at(2026, 11, 17, 8)) == at(2026, 11, 17, 9)
    # 10:00 in Urumqi (UTC+6) is 12:00 in Shanghai.
    assert west.next_working_moment(at(2026, 11, 17, 8)) == at(2026, 11, 17, 12)
    assert WorkingCalendar.load("unknown", regions_file=regions).hours == default.hours


def test_a_year_without_a_file_is_refused_or_weekends_only_as_the_region_says(tmp_path: Path) -> None:
    strict = WorkingCalendar.load(regions_file=_write_region_files(tmp_path, "refuse"))
    with pytest.raises(CalendarNotCovered, match=r"has no year 2027 \(it has 2026\); add shared/calendars/xx/2027.yaml"):
        strict.is_working_day(date(2027, 3, 1))
    lenient_root = tmp_path / "lenient"
    lenient_root.mkdir()
    lenient = WorkingCalendar.load(regions_file=_write_region_files(lenient_root, "weekends"))
    assert lenient.is_working_day(date(2027, 3, 1)) and not lenient.is_working_day(date(2027, 3, 6))


def test_a_bad_calendar_file_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "2026.yaml").write_text(
        "year: 2026\ncalendar: xx\nworkdays:\n  - {date: 2026-11-18, for: Founders}\n", encoding="utf-8")
    regions = tmp_path / "regions.yaml"
    regions.write_text("default:\n  calendar: xx\n  timezone: Asia/Shanghai\n  hours: [['09:00', '17:00']]\n",
                       encoding="utf-8")
    with pytest.raises(CalendarError, match="2026-11-18 is a Wednesday; a make-up working day"):
        WorkingCalendar.load(regions_file=regions)
    regions.write_text("default:\n  calendar: xx\n  timezone: Mars/Base\n  hours: [['09:00', '17:00']]\n",
                       encoding="utf-8")
    with pytest.raises(CalendarError, match="not an IANA zone name"):
        WorkingCalendar.load(regions_file=regions)


def test_naive_times_are_refused(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add_working_time(datetime(2026, 11, 16, 10), timedelta(hours=1))
