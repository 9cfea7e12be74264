"""Return-visit rules, edge by edge (pure domain, no infrastructure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import (
    after_attempt,
    campaign_window,
    confirmation_window,
    first_visit_window,
    in_calling_hours,
    is_satisfied,
    km_per_day,
    loyalty_tier,
    lost_after,
    maintenance_due,
    next_callable,
    next_weekly_report,
    priority,
    queue_order,
    second_visit_window,
    under_warranty,
)

RULES = FollowUpRules()
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def test_the_first_return_visit_is_due_three_to_seven_days_after_pickup() -> None:
    pickup = datetime(2026, 11, 20, 9, 30, tzinfo=SHANGHAI)
    window = first_visit_window(pickup, RULES)
    assert window.due_from == datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)
    assert window.due_by == datetime(2026, 11, 27, 9, 30, tzinfo=SHANGHAI)


def test_a_pickup_at_23_50_on_a_saturday_is_first_callable_on_wednesday_morning() -> None:
    saturday = datetime(2026, 11, 21, 23, 50, tzinfo=SHANGHAI)
    assert saturday.weekday() == 5
    window = first_visit_window(saturday, RULES)
    assert window.due_from == datetime(2026, 11, 24, 23, 50, tzinfo=SHANGHAI)  # Tuesday night: outside calling hours
    assert not in_calling_hours(window.due_from, "Asia/Shanghai", RULES)
    assert next_callable(window.due_from, "Asia/Shanghai", RULES) == datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI)
    assert window.due_by == datetime(2026, 11, 28, 23, 50, tzinfo=SHANGHAI)  # the next Saturday night


def test_calling_hours_are_the_customers_own_local_hours() -> None:
    ten_in_shanghai = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)  # 03:00 in Berlin
    assert in_calling_hours(ten_in_shanghai, "Asia/Shanghai", RULES)
    assert not in_calling_hours(ten_in_shanghai, "Europe/Berlin", RULES)
    assert next_callable(ten_in_shanghai, "Europe/Berlin", RULES) == datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)


def test_calling_hours_hold_across_a_daylight_saving_change() -> None:
    # New York springs forward on 2026-03-08 (02:00 -> 03:00); 09:00 local is 14:00 UTC before, 13:00 UTC after.
    saturday_night = datetime(2026, 3, 7, 21, 0, tzinfo=NEW_YORK)
    first = next_callable(saturday_night, "America/New_York", RULES)
    assert first == datetime(2026, 3, 8, 9, 0, tzinfo=NEW_YORK)
    assert first.astimezone(ZoneInfo("UTC")).hour == 13
    # An unreachable customer at 18:00 the day before the change is retried at 09:00 local the next day.
    decision = after_attempt("unreachable", datetime(2026, 3, 7, 18, 0, tzinfo=NEW_YORK), 0, "America/New_York",
                             None, RULES)
    assert decision.next_attempt_at == datetime(2026, 3, 8, 9, 0, tzinfo=NEW_YORK)


def test_the_second_visit_is_due_within_seven_days_of_the_first_even_when_the_first_was_late() -> None:
    pickup = datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI)
    late_first = first_visit_window(pickup, RULES).due_by + timedelta(days=3)
    window = second_visit_window(late_first, RULES)
    assert window.due_from == late_first + timedelta(days=1)
    assert window.due_by == late_first + timedelta(days=7)


def test_a_resolved_complaint_is_confirmed_within_two_days() -> None:
    resolved = datetime(2026, 11, 20, 16, 0, tzinfo=SHANGHAI)
    window = confirmation_window(resolved, RULES)
    assert (window.due_from, window.due_by) == (resolved, resolved + timedelta(days=2))


def test_a_campaign_call_is_due_fourteen_days_before_the_start() -> None:
    starts = datetime(2026, 12, 20, 9, 0, tzinfo=SHANGHAI)
    window = campaign_window(starts, starts - timedelta(days=40), RULES)
    assert window is not None
    assert window.due_from == starts - timedelta(days=14)
    assert window.due_by == starts - timedelta(days=12)


def test_a_campaign_already_within_fourteen_days_is_called_from_the_announcement() -> None:
    starts = datetime(2026, 12, 20, 9, 0, tzinfo=SHANGHAI)
    announced = starts - timedelta(days=5)
    window = campaign_window(starts, announced, RULES)
    assert window is not None and window.due_from == announced and window.due_by == announced + timedelta(days=2)
    tomorrow = campaign_window(starts, starts - timedelta(hours=20), RULES)
    assert tomorrow is not None and tomorrow.due_by == starts, "never due after the campaign starts"
    assert campaign_window(starts, starts + timedelta(hours=1), RULES) is None


@pytest.mark.parametrize(("at", "mileage", "expected"), [
    (datetime(2027, 5, 1, tzinfo=SHANGHAI), 20_000, True),
    (datetime(2029, 6, 1, tzinfo=SHANGHAI), 20_000, False),  # past 36 months
    (datetime(2027, 5, 1, tzinfo=SHANGHAI), 100_000, False),  # past 100,000 km
])
def test_warranty_runs_out_by_months_or_by_km_whichever_first(at: datetime, mileage: int, expected: bool) -> None:
    sold = datetime(2026, 5, 1, tzinfo=SHANGHAI)
    assert under_warranty(sold, 36, 100_000, at, mileage) is expected


def test_warranty_is_unknown_while_the_sale_is_not() -> None:
    assert under_warranty(None, None, None, datetime(2026, 5, 1, tzinfo=SHANGHAI), 10) is None


def test_maintenance_is_due_by_date_when_the_car_is_driven_little() -> None:
    visit = datetime(2026, 6, 1, tzinfo=SHANGHAI)
    history = [(datetime(2026, 1, 1, tzinfo=SHANGHAI), 1_000)]  # ~9 km/day up to 2,300 km
    due = maintenance_due(visit, 2_300, None, None, history, RULES)
    assert due.basis == "date" and due.due_at == datetime(2026, 12, 1, tzinfo=SHANGHAI)
    assert due.remind_at == due.estimated_due_at - timedelta(days=10)


def test_maintenance_is_due_by_km_when_the_car_is_driven_a_lot() -> None:
    visit = datetime(2026, 6, 1, tzinfo=SHANGHAI)
    history = [(datetime(2026, 5, 1, tzinfo=SHANGHAI), 1_000)]  # 6,200 km in 31 days: 200 km/day
    due = maintenance_due(visit, 7_200, None, 12_000, history, RULES)
    assert due.basis == "km"
    assert due.estimated_due_at == visit + timedelta(days=(12_000 - 7_200) / 200)
    assert due.remind_at == due.estimated_due_at - timedelta(days=10)


def test_the_daily_distance_falls_back_to_a_default_without_enough_history() -> None:
    assert km_per_day([], RULES) == RULES.default_km_per_day
    at = datetime(2026, 6, 1, tzinfo=SHANGHAI)
    assert km_per_day([(at, 100), (at + timedelta(days=2), 900)], RULES) == RULES.default_km_per_day


def test_the_dms_plan_for_the_next_service_wins_over_the_default_cycle() -> None:
    visit = datetime(2026, 6, 1, tzinfo=SHANGHAI)
    due = maintenance_due(visit, 5_000, datetime(2026, 9, 1, tzinfo=SHANGHAI), 50_000, [], RULES)
    assert due.basis == "date" and due.due_at == datetime(2026, 9, 1, tzinfo=SHANGHAI)


def test_a_customer_is_lost_after_twelve_months_without_a_visit() -> None:
    assert lost_after(datetime(2025, 11, 30, tzinfo=SHANGHAI), RULES) == datetime(2026, 11, 30, tzinfo=SHANGHAI)


def test_an_unreachable_customer_is_tried_three_times_at_least_four_hours_apart_in_calling_hours() -> None:
    morning = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
    first = after_attempt("unreachable", morning, 0, "Asia/Shanghai", None, RULES)
    assert first.completes_as is None and first.next_attempt_at == morning + timedelta(hours=4)
    evening = datetime(2026, 11, 25, 18, 30, tzinfo=SHANGHAI)
    second = after_attempt("unreachable", evening, 1, "Asia/Shanghai", None, RULES)
    assert second.next_attempt_at == datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI), "22:30 is outside calling hours"
    third = after_attempt("unreachable", datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI), 2, "Asia/Shanghai", None, RULES)
    assert third.completes_as == "unreachable" and third.next_attempt_at is None


def test_reached_and_wrong_number_complete_and_call_back_later_waits() -> None:
    now = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
    assert after_attempt("reached", now, 2, "Asia/Shanghai", None, RULES).completes_as == "reached"
    assert after_attempt("wrong_number", now, 0, "Asia/Shanghai", None, RULES).completes_as == "wrong_number"
    later = after_attempt("call_back_later", now, 1, "Asia/Shanghai", now + timedelta(hours=2), RULES)
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
    now = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
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
    wednesday = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
    assert next_weekly_report(wednesday, RULES) == datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)
    monday_eight = datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)
    assert next_weekly_report(monday_eight, RULES) == datetime(2026, 12, 7, 8, 0, tzinfo=SHANGHAI)
    assert next_weekly_report(monday_eight - timedelta(minutes=1), RULES) == monday_eight
