"""Calls are placed on working days of the customer's region's working calendar (pure domain,
fixed dates from the shipped calendar files, so they hold on any test moment): no call on a
public holiday or a weekend, a make-up working day (调休) is a calling day, and a window that
would end on a day without calls runs to the next working day."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from services.followup.config import FollowUpDeps, FollowUpRules
from services.followup.domain import (
    EVERY_DAY,
    NewFollowUp,
    Window,
    after_attempt,
    calling_days,
    calling_window,
    first_visit_window,
    in_calling_hours,
    next_callable,
    second_visit_window,
)
from services.followup.handlers import on_calling_days as schedule_on_calling_days
from shared.workcal import CALENDARS_DIR, WorkingCalendar

RULES = FollowUpRules()
SHANGHAI = ZoneInfo("Asia/Shanghai")
CN = WorkingCalendar.load(None)
ZONE = "Asia/Shanghai"


def at(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def on_calling_days(window: Window) -> Window:
    return calling_window(window, ZONE, CN, RULES)


def test_the_shipped_calendar_has_the_days_these_tests_rely_on() -> None:
    assert CN.holiday_name(date(2026, 10, 1)) and CN.holiday_name(date(2026, 10, 7))
    assert CN.holiday_name(date(2026, 9, 27)) and CN.holiday_name(date(2026, 2, 18))
    assert CN.is_working_day(date(2026, 9, 20)) and date(2026, 9, 20).weekday() == 6  # a make-up Sunday
    assert CN.is_working_day(date(2026, 2, 14)) and date(2026, 2, 14).weekday() == 5  # a make-up Saturday


def test_a_pickup_before_the_national_day_week_is_called_after_it() -> None:
    # Monday 28 Sep: 3 days later is 1 Oct (National Day, off until 7 Oct); 7 days later is 5 Oct.
    window = on_calling_days(first_visit_window(at(2026, 9, 28, 10), RULES))
    assert window.due_from == at(2026, 10, 8, 9), "first calling moment: Thursday 8 Oct 09:00"
    assert window.due_by == at(2026, 10, 8, 20), "the window's end on a holiday runs to the next working day"


def test_a_pickup_opening_on_a_holiday_and_closing_in_the_national_day_week() -> None:
    # Thursday 24 Sep: 3 days later is Sunday 27 Sep (Mid-Autumn), 7 days later is 1 Oct (National Day).
    window = on_calling_days(first_visit_window(at(2026, 9, 24, 15), RULES))
    assert window.due_from == at(2026, 9, 28, 9)
    assert window.due_by == at(2026, 10, 8, 20)


def test_a_pickup_before_spring_festival_is_called_on_its_make_up_saturday() -> None:
    # Wednesday 11 Feb 2026: 3 days later is Saturday 14 Feb, a make-up working day (调休) before
    # the Spring Festival days off (15-23 Feb); 7 days later is 18 Feb, in the middle of them.
    window = on_calling_days(first_visit_window(at(2026, 2, 11, 10), RULES))
    assert window.due_from == at(2026, 2, 14, 10), "the make-up Saturday is a calling day"
    assert in_calling_hours(window.due_from, ZONE, RULES, CN)
    assert window.due_by == at(2026, 2, 24, 20), "the first working day after the festival"


def test_a_window_on_working_days_is_left_as_the_plan_counts_it() -> None:
    # Monday 9 Nov 2026 10:00: Thursday 12 Nov to Monday 16 Nov, all plain working days.
    plan = first_visit_window(at(2026, 11, 9, 10), RULES)
    assert on_calling_days(plan) == plan == Window(at(2026, 11, 12, 10), at(2026, 11, 16, 10))


def test_a_window_ending_on_a_plain_weekend_runs_to_monday() -> None:
    plan = first_visit_window(at(2026, 11, 14, 11), RULES)  # a Saturday pickup: 7 days later is Saturday
    window = on_calling_days(plan)
    assert window.due_from == at(2026, 11, 17, 11)
    assert window.due_by == at(2026, 11, 23, 20)


def test_a_retry_that_would_fall_on_a_holiday_waits_for_the_next_working_days_calling_hours() -> None:
    # Unreachable at 17:00 on Wednesday 30 Sep: four hours later is 21:00, the next morning is National Day.
    decision = after_attempt("unreachable", at(2026, 9, 30, 17), 0, ZONE, None, RULES, CN)
    assert decision.next_attempt_at == at(2026, 10, 8, 9)
    # Every day: the next morning.
    assert after_attempt("unreachable", at(2026, 9, 30, 17), 0, ZONE, None, RULES, EVERY_DAY).next_attempt_at \
        == at(2026, 10, 1, 9)


def test_a_make_up_working_sunday_is_callable_and_a_plain_sunday_is_not() -> None:
    assert in_calling_hours(at(2026, 9, 20, 10), ZONE, RULES, CN), "Sunday 20 Sep 2026 is worked for National Day"
    assert not in_calling_hours(at(2026, 9, 13, 10), ZONE, RULES, CN), "a plain Sunday"
    assert next_callable(at(2026, 9, 19, 12), ZONE, RULES, CN) == at(2026, 9, 20, 9)
    assert next_callable(at(2026, 9, 12, 12), ZONE, RULES, CN) == at(2026, 9, 14, 9)


def test_no_call_is_proposed_on_any_day_of_the_national_day_week() -> None:
    for day in range(1, 8):
        assert not in_calling_hours(at(2026, 10, day, 10), ZONE, RULES, CN)
        assert next_callable(at(2026, 10, day, 10), ZONE, RULES, CN) == at(2026, 10, 8, 9)


def test_a_second_visit_after_a_first_call_on_the_last_day_before_a_holiday() -> None:
    window = on_calling_days(second_visit_window(at(2026, 9, 30, 16), RULES))  # due 1 Oct .. 7 Oct
    assert window == Window(at(2026, 10, 8, 9), at(2026, 10, 8, 20))


def test_a_window_left_without_calling_time_closes_at_the_end_of_its_first_calling_day() -> None:
    # Due from 1 Oct 10:00 by 8 Oct 08:00: the first calling moment (8 Oct 09:00) is after the end.
    window = on_calling_days(Window(at(2026, 10, 1, 10), at(2026, 10, 8, 8)))
    assert window == Window(at(2026, 10, 8, 9), at(2026, 10, 8, 20))


def test_placing_a_window_on_calling_days_twice_changes_nothing() -> None:
    once = on_calling_days(first_visit_window(at(2026, 9, 28, 10), RULES))
    assert on_calling_days(once) == once


def test_every_day_rules_call_on_holidays() -> None:
    rules = FollowUpRules(calling_days="every_day")
    days = calling_days(None, rules, WorkingCalendar.load)
    assert days is EVERY_DAY
    assert in_calling_hours(at(2026, 10, 1, 10), ZONE, rules, days)


def test_the_customers_region_selects_the_calendar(tmp_path: Path) -> None:
    # A region on another holiday calendar (no National Day week) is called on 1 Oct; the default is not.
    shutil.copytree(CALENDARS_DIR / "cn", tmp_path / "cn")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "2026.yaml").write_text("year: 2026\ncalendar: plain\nholidays: []\nworkdays: []\n")
    (tmp_path / "regions.yaml").write_text(
        "default: {calendar: cn, timezone: Asia/Shanghai, hours: [['08:30', '17:30']]}\n"
        "regions:\n  abroad: {calendar: plain}\n")

    def calendars(region: str | None) -> WorkingCalendar:
        return WorkingCalendar.load(region, regions_file=tmp_path / "regions.yaml")

    national_day = at(2026, 10, 1, 10)
    assert in_calling_hours(national_day, ZONE, RULES, calling_days("abroad", RULES, calendars))
    assert not in_calling_hours(national_day, ZONE, RULES, calling_days("east", RULES, calendars))
    assert not in_calling_hours(national_day, ZONE, RULES, calling_days(None, RULES, calendars))
    assert calling_window(Window(national_day, at(2026, 10, 3, 10)), ZONE, calling_days("abroad", RULES, calendars),
                          RULES) == Window(national_day, at(2026, 10, 5, 20)), "3 Oct is a Saturday there"


def test_scheduling_places_a_follow_up_on_the_calling_days_of_its_own_region() -> None:
    # The service's calendars come through its dependencies: the follow-up's region picks one.
    asked: list[str | None] = []

    def calendars(region: str | None) -> WorkingCalendar:
        asked.append(region)
        return CN

    plan = first_visit_window(at(2026, 9, 28, 10), RULES)
    f = NewFollowUp(followup_id="F-1", kind="first_visit", customer_id="C-1", reason_event_id="E-1",
                    due_from=plan.due_from, due_by=plan.due_by, priority=60, event_at=at(2026, 9, 28, 10),
                    region="east")
    placed = schedule_on_calling_days(FollowUpDeps(rules=RULES, calendars=calendars), f)
    assert asked == ["east"]
    assert (placed.due_from, placed.due_by) == (at(2026, 10, 8, 9), at(2026, 10, 8, 20))
    assert placed == replace(f, due_from=at(2026, 10, 8, 9), due_by=at(2026, 10, 8, 20)), "nothing else changes"
    every_day = schedule_on_calling_days(FollowUpDeps(rules=FollowUpRules(calling_days="every_day"),
                                                      calendars=calendars), f)
    assert (every_day.due_from, every_day.due_by) == (plan.due_from, plan.due_by) and asked == ["east"]
