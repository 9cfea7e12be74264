"""Return-visit rules, edge by edge (pure domain, no infrastructure), on the test moment's
calendar: `make test-dates` runs them across month and year ends and public holidays."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import (
    EVERY_DAY,
    after_attempt,
    calling_window,
    campaign_window,
    confirmation_window,
    first_visit_window,
    in_calling_hours,
    is_satisfied,
    km_per_day,
    lost_after,
    loyalty_tier,
    maintenance_due,
    next_callable,
    next_weekly_report,
    priority,
    queue_order,
    second_visit_window,
    under_warranty,
)
from shared.workcal import WorkingCalendar
from tests.support import TEST_NOW, day_at

pytestmark = pytest.mark.dates

RULES = FollowUpRules()
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
CN = WorkingCalendar.load(None)  # the default region's calendar: Chinese public holidays and make-up days


def working_day_from(day: date) -> date:
    """`day` itself if calls are placed on it (a working day on the calendar), else the next one."""
    while not CN.is_working_day(day):
        day += timedelta(days=1)
    return day


def first_call(moment: datetime, zone: ZoneInfo = SHANGHAI) -> datetime:
    """The calendar's answer to "when can this customer be called first": 09:00-20:00 local on a working day."""
    local = moment.astimezone(zone)
    if CN.is_working_day(local.date()) and time(9) <= local.time() < time(20):
        return moment
    day = local.date() if local.time() < time(9) else local.date() + timedelta(days=1)
    return datetime.combine(working_day_from(day), time(9), tzinfo=zone)


def days_until(weekday: int) -> int:
    """Days from the test day to the next `weekday` (0 = Monday), 0 when it is that day."""
    return (weekday - TEST_NOW.weekday()) % 7


def months_later(moment: datetime, months: int) -> datetime:
    """The calendar's answer: the same day-of-month `months` later, or that month's last day."""
    year, month = divmod(moment.month - 1 + months, 12)
    year += moment.year
    return moment.replace(year=year, month=month + 1, day=min(moment.day, calendar.monthrange(year, month + 1)[1]))


def next_spring_forward(after: date, zone: ZoneInfo) -> date:
    """The first day after `after` on which `zone`'s clocks jump forward."""
    day = after
    while True:
        day += timedelta(days=1)
        noon_before = datetime.combine(day - timedelta(days=1), time(12), tzinfo=zone).utcoffset()
        if datetime.combine(day, time(12), tzinfo=zone).utcoffset() > noon_before:  # type: ignore[operator]
            return day


def test_the_first_return_visit_is_due_three_to_seven_days_after_pickup() -> None:
    pickup = day_at(9, 30)
    window = first_visit_window(pickup, RULES)
    assert window.due_from == day_at(9, 30, days=3)
    assert window.due_by == day_at(9, 30, days=7)


def test_a_pickup_at_23_50_on_a_saturday_is_first_callable_on_the_next_working_morning() -> None:
    saturday = days_until(5)
    window = first_visit_window(day_at(23, 50, days=saturday), RULES)
    assert window.due_from == day_at(23, 50, days=saturday + 3)  # Tuesday night: outside calling hours
    assert not in_calling_hours(window.due_from, "Asia/Shanghai", RULES, CN)
    wednesday = day_at(9, 0, days=saturday + 4)
    assert next_callable(window.due_from, "Asia/Shanghai", RULES, CN) == first_call(wednesday)
    assert window.due_by == day_at(23, 50, days=saturday + 7)  # the next Saturday night


def test_the_first_visit_window_on_calling_days_opens_and_closes_on_working_days() -> None:
    pickup = day_at(9, 30)
    window = calling_window(first_visit_window(pickup, RULES), "Asia/Shanghai", CN, RULES)
    assert window.due_from == first_call(day_at(9, 30, days=3))
    seventh = day_at(9, 30, days=7)
    if CN.is_working_day(seventh.date()):
        assert window.due_by == seventh
    else:  # the window's end on a weekend or holiday: extended to the next working day's calling hours
        assert window.due_by == datetime.combine(working_day_from(seventh.date()), time(20), tzinfo=SHANGHAI)
    assert CN.is_working_day(window.due_from.astimezone(SHANGHAI).date())
    assert CN.is_working_day(window.due_by.astimezone(SHANGHAI).date())


def test_calling_hours_are_the_customers_own_local_hours() -> None:
    ten_in_shanghai = day_at(10)  # 03:00 in Berlin (04:00 in summer)
    assert in_calling_hours(ten_in_shanghai, "Asia/Shanghai", RULES, CN) == CN.is_working_day(TEST_NOW.date())
    assert in_calling_hours(ten_in_shanghai, "Asia/Shanghai", RULES, EVERY_DAY)
    assert not in_calling_hours(ten_in_shanghai, "Europe/Berlin", RULES, EVERY_DAY)
    assert next_callable(ten_in_shanghai, "Europe/Berlin", RULES, EVERY_DAY) == datetime.combine(
        TEST_NOW.date(), time(9), tzinfo=BERLIN)
    assert next_callable(ten_in_shanghai, "Europe/Berlin", RULES, CN) == first_call(ten_in_shanghai, BERLIN)


def test_calling_hours_hold_across_a_daylight_saving_change() -> None:
    # New York's next spring-forward (02:00 -> 03:00): 09:00 local is 14:00 UTC before it, 13:00 UTC after.
    change = next_spring_forward(TEST_NOW.date(), NEW_YORK)
    night_before = datetime.combine(change - timedelta(days=1), time(21), tzinfo=NEW_YORK)
    first = next_callable(night_before, "America/New_York", RULES, EVERY_DAY)
    assert first == datetime.combine(change, time(9), tzinfo=NEW_YORK)
    assert first.astimezone(ZoneInfo("UTC")).hour == 13
    # On the working calendar the spring-forward Sunday is no calling day: the Monday after it is.
    on_calendar = next_callable(night_before, "America/New_York", RULES, CN)
    assert on_calendar == first_call(night_before, NEW_YORK) and on_calendar.astimezone(ZoneInfo("UTC")).hour == 13
    # An unreachable customer at 18:00 the day before the change is retried at 09:00 local the next day.
    decision = after_attempt("unreachable", datetime.combine(change - timedelta(days=1), time(18), tzinfo=NEW_YORK),
                             0, "America/New_York", None, RULES, EVERY_DAY)
    assert decision.next_attempt_at == datetime.combine(change, time(9), tzinfo=NEW_YORK)


def test_the_second_visit_is_due_within_seven_days_of_the_first_even_when_the_first_was_late() -> None:
    pickup = day_at(10, days=-18)
    late_first = first_visit_window(pickup, RULES).due_by + timedelta(days=3)
    assert late_first == day_at(10, days=-8)
    window = second_visit_window(late_first, RULES)
    assert window.due_from == day_at(10, days=-7)
    assert window.due_by == day_at(10, days=-1)


def test_a_resolved_complaint_is_confirmed_within_two_days() -> None:
    resolved = day_at(16)
    window = confirmation_window(resolved, RULES)
    assert (window.due_from, window.due_by) == (resolved, day_at(16, days=2))


def test_a_campaign_call_is_due_fourteen_days_before_the_start() -> None:
    starts = day_at(9, days=30)
    window = campaign_window(starts, day_at(9, days=-10), RULES)
    assert window is not None
    assert window.due_from == day_at(9, days=16)
    assert window.due_by == day_at(9, days=18)


def test_a_campaign_already_within_fourteen_days_is_called_from_the_announcement() -> None:
    starts = day_at(9, days=30)
    announced = starts - timedelta(days=5)
    window = campaign_window(starts, announced, RULES)
    assert window is not None and window.due_from == announced and window.due_by == announced + timedelta(days=2)
    tomorrow = campaign_window(starts, starts - timedelta(hours=20), RULES)
    assert tomorrow is not None and tomorrow.due_by == starts, "never due after the campaign starts"
    assert campaign_window(starts, starts + timedelta(hours=1), RULES) is None


SOLD = day_at(0, days=-200)


@pytest.mark.parametrize(("at", "mileage", "expected"), [
    (months_later(SOLD, 12), 20_000, True),
    (months_later(SOLD, 36) - timedelta(seconds=1), 20_000, True),  # the last moment of the 36 months
    (months_later(SOLD, 36), 20_000, False),
    (months_later(SOLD, 37), 20_000, False),  # past 36 months
    (months_later(SOLD, 12), 100_000, False),  # past 100,000 km
])
def test_warranty_runs_out_by_months_or_by_km_whichever_first(at: datetime, mileage: int, expected: bool) -> None:
    assert under_warranty(SOLD, 36, 100_000, at, mileage) is expected


def test_warranty_is_unknown_while_the_sale_is_not() -> None:
    assert under_warranty(None, None, None, TEST_NOW, 10) is None


def test_maintenance_is_due_by_date_when_the_car_is_driven_little() -> None:
    visit = day_at(0)
    history = [(visit - timedelta(days=151), 1_000)]  # ~9 km/day up to 2,300 km
    due = maintenance_due(visit, 2_300, None, None, history, RULES)
    assert due.basis == "date" and due.due_at == months_later(visit, 6)
    assert due.remind_at == due.estimated_due_at - timedelta(days=10)


def test_maintenance_is_due_by_km_when_the_car_is_driven_a_lot() -> None:
    visit = day_at(0)
    history = [(visit - timedelta(days=31), 1_000)]  # 6,200 km in 31 days: 200 km/day
    due = maintenance_due(visit, 7_200, None, 12_000, history, RULES)
    assert due.basis == "km"
    assert due.estimated_due_at == visit + timedelta(days=(12_000 - 7_200) / 200)
    assert due.remind_at == due.estimated_due_at - timedelta(days=10)


def test_the_daily_distance_falls_back_to_a_default_without_enough_history() -> None:
    assert km_per_day([], RULES) == RULES.default_km_per_day
    assert km_per_day([(TEST_NOW, 100), (TEST_NOW + timedelta(days=2), 900)], RULES) == RULES.default_km_per_day


def test_the_dms_plan_for_the_next_service_wins_over_the_default_cycle() -> None:
    visit = day_at(0)
    planned = day_at(0, days=92)
    due = maintenance_due(visit, 5_000, planned, 50_000, [], RULES)
    assert due.basis == "date" and due.due_at == planned


def test_a_customer_is_lost_after_twelve_months_without_a_visit() -> None:
    last_visit = day_at(0, days=-365)
    assert lost_after(last_visit, RULES) == months_later(last_visit, 12)


def test_an_unreachable_customer_is_tried_three_times_at_least_four_hours_apart_in_calling_hours() -> None:
    morning = day_at(10)
    first = after_attempt("unreachable", morning, 0, "Asia/Shanghai", None, RULES, CN)
    assert first.completes_as is None and first.next_attempt_at == first_call(day_at(14))
    second = after_attempt("unreachable", day_at(18, 30), 1, "Asia/Shanghai", None, RULES, CN)
    assert second.next_attempt_at == first_call(day_at(9, days=1)), "22:30 is outside calling hours"
    third = after_attempt("unreachable", day_at(9, days=1), 2, "Asia/Shanghai", None, RULES, CN)
    assert third.completes_as == "unreachable" and third.next_attempt_at is None


def test_reached_and_wrong_number_complete_and_call_back_later_waits() -> None:
    now = day_at(10)
    assert after_attempt("reached", now, 2, "Asia/Shanghai", None, RULES, CN).completes_as == "reached"
    assert after_attempt("wrong_number", now, 0, "Asia/Shanghai", None, RULES, CN).completes_as == "wrong_number"
    later = after_attempt("call_back_later", now, 1, "Asia/Shanghai", now + timedelta(hours=2), RULES, CN)
    assert later.completes_as is None and later.next_attempt_at == now + timedelta(hours=2)
    assert later.counts_as_unreachable is False


def test_satisfied_means_four_or_five_unless_the_customer_said_otherwise() -> None:
    assert is_satisfied(4, None, RULES) is True and is_satisfied(3, None, RULES) is False
    assert is_satisfied(5, False, RULES) is False and is_satisfied(None, None, RULES) is None


@pytest.mark.parametrize(("visits", "satisfaction", "complaints", "tier"), [
    (4, 4.5, 0, "gold"), (5, None, 0, "gold"), (3, 5.0, 0, "silver"), (2, None, 0, "silver"), (1, 5.0, 0, "standard"),
    (6, 4.8, 1, "standard"), (6, 3.2, 0, "standard"),
])
def test_loyalty_comes_from_visits_in_24_months_and_feedback(visits: int, satisfaction: float | None,
                                                             complaints: int, tier: str) -> None:
    assert loyalty_tier(visits, satisfaction, complaints, RULES) == tier


def test_the_queue_puts_overdue_first_then_loyalty_then_due_by() -> None:
    now = day_at(10)
    items = {
        "standard, due soon": queue_order(False, "standard", now + timedelta(hours=1), 60),
        "gold, due later": queue_order(False, "gold", now + timedelta(days=2), 40),
        "overdue standard": queue_order(True, "standard", now - timedelta(days=1), 60),
        "gold, due sooner": queue_order(False, "gold", now + timedelta(days=1), 40),
    }
    assert sorted(items, key=items.get) == [  # type: ignore[arg-type]
        "overdue standard", "gold, due sooner", "gold, due later", "standard, due soon"]
    assert priority("campaign_call", "gold", RULES) > priority("campaign_call", "standard", RULES)


def test_the_weekly_report_is_made_on_monday_at_eight_in_shanghai() -> None:
    wednesday = days_until(2)
    assert next_weekly_report(day_at(15, days=wednesday), RULES) == day_at(8, days=wednesday + 5)
    monday_eight = day_at(8, days=wednesday + 5)
    assert next_weekly_report(monday_eight, RULES) == day_at(8, days=wednesday + 12)
    assert next_weekly_report(monday_eight - timedelta(minutes=1), RULES) == monday_eight
    # 00:30 on Monday in Shanghai is still Sunday in UTC: the report is that Monday's, 08:00 local
    assert next_weekly_report(day_at(0, 30, days=wednesday + 5), RULES) == monday_eight


def test_the_store_reads_back_every_column_it_writes() -> None:
    """The follow-up store's column lists are written out for the SQL check; they are the
    columns its tables and rows declare, in order."""
    from services.followup import store

    assert store._CUSTOMER_COLUMNS.split(", ") == list(store.CUSTOMERS.columns)
    assert store._VEHICLE_COLUMNS.split(", ") == list(store.VEHICLES.columns)
    assert store._OPEN_COLUMNS.split(", ") == list(store.OpenFollowUp.__dataclass_fields__)
