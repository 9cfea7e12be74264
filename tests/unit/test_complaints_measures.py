"""Rectification measures' rules: target, owner and due date checks, the status, the windows
and the effect's exact test (services/complaints/measures.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.complaints.measures import (
    MeasureRefused,
    Period,
    check_due,
    check_owner,
    check_target,
    effect,
    status,
    windows,
)

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
WEEKS8 = timedelta(weeks=8)
CATEGORIES = ("product_quality", "service_attitude", "repair_quality")


def periods(before: tuple[int, int], after: tuple[int, int]) -> tuple[Period, Period]:
    return (Period(T0 - WEEKS8, T0, *before), Period(T0 + timedelta(days=7), T0 + timedelta(days=63), *after))


def test_before_window_ends_at_the_recording_and_after_window_starts_at_the_due_date() -> None:
    due = T0 + timedelta(days=14)
    before, after = windows(T0, due, as_of=due + timedelta(days=10), length=WEEKS8)
    assert (before.starts_at, before.ends_at) == (T0 - WEEKS8, T0)
    assert (after.starts_at, after.ends_at) == (due, due + timedelta(days=10))  # cut at as_of while it runs


def test_after_window_is_empty_until_the_due_date_and_stops_at_its_length() -> None:
    due = T0 + timedelta(days=14)
    assert windows(T0, due, as_of=T0 + timedelta(days=3), length=WEEKS8)[1].empty
    assert windows(T0, due, as_of=due + timedelta(days=400), length=WEEKS8)[1].ends_at == due + WEEKS8


def test_status_runs_open_due_overdue_and_verified_ends_it() -> None:
    due = T0 + timedelta(days=30)
    soon = timedelta(days=7)
    assert status(due_at=due, verified=False, now=T0, due_soon=soon) == "open"
    assert status(due_at=due, verified=False, now=due - timedelta(days=6), due_soon=soon) == "due"
    assert status(due_at=due, verified=False, now=due, due_soon=soon) == "overdue"
    assert status(due_at=due, verified=True, now=due + timedelta(days=9), due_soon=soon) == "verified"


def test_three_complaints_becoming_two_is_no_significant_change() -> None:
    e = effect(*periods((3, 400), (2, 400)), confidence=0.95)
    assert e.change == "no_significant_change"
    assert e.rate_ratio == pytest.approx(2 / 3)
    assert e.ci_low is not None and e.ci_high is not None and e.ci_low < 1 < e.ci_high
    assert e.p_value == pytest.approx(1.0)
    assert "no significant change" in e.as_dict()["note"]  # type: ignore[operator]


def test_forty_complaints_becoming_ten_on_the_same_visits_is_a_decrease() -> None:
    e = effect(*periods((40, 1000), (10, 1000)), confidence=0.95)
    assert e.change == "decreased"
    assert e.rate_ratio == pytest.approx(0.25)
    assert e.ci_high is not None and e.ci_high < 1
    assert e.p_value is not None and e.p_value < 0.001


def test_the_rate_is_per_visit_so_fewer_complaints_on_fewer_visits_is_no_change() -> None:
    # half the complaints on half the visits: the rate stayed 4 per 100 visits
    e = effect(*periods((40, 1000), (20, 500)), confidence=0.95)
    assert e.before.rate_per_100_visits == pytest.approx(4.0) == e.after.rate_per_100_visits
    assert e.rate_ratio == pytest.approx(1.0)
    assert e.change == "no_significant_change"


def test_a_rise_is_called_an_increase() -> None:
    assert effect(*periods((5, 1000), (25, 1000)), confidence=0.95).change == "increased"


def test_the_confidence_decides_a_borderline_change() -> None:
    # 20 -> 9 on equal visits: p is about 0.06
    before_after = periods((20, 1000), (9, 1000))
    assert effect(*before_after, confidence=0.95).change == "no_significant_change"
    assert effect(*before_after, confidence=0.90).change == "decreased"


def test_no_visits_or_no_events_is_not_enough_data_and_no_after_window_is_said_so() -> None:
    assert effect(*periods((3, 0), (2, 400)), confidence=0.95).change == "not_enough_data"
    assert effect(*periods((0, 400), (0, 400)), confidence=0.95).change == "not_enough_data"
    before = Period(T0 - WEEKS8, T0, 3, 400)
    not_yet = Period(T0 + timedelta(days=14), T0 + timedelta(days=14), 0, 0)
    found = effect(before, not_yet, confidence=0.95)
    assert found.change == "after_not_started" and found.as_dict()["rate_ratio"] is None


def test_a_category_measure_names_a_known_category_and_an_alert_measure_an_alert() -> None:
    check_target("category", "repair_quality", None, CATEGORIES)
    check_target("alert", None, "alert-1", CATEGORIES)
    with pytest.raises(MeasureRefused, match="use one of product_quality"):
        check_target("category", "paint", None, CATEGORIES)
    with pytest.raises(MeasureRefused, match="names no alert_id"):
        check_target("category", "repair_quality", "alert-1", CATEGORIES)
    with pytest.raises(MeasureRefused, match="names its alert_id"):
        check_target("alert", None, None, CATEGORIES)


def test_the_owner_is_a_person_of_the_directory_and_the_due_date_is_ahead() -> None:
    check_owner("as-supervisor-01", frozenset({"as-supervisor-01"}))
    with pytest.raises(MeasureRefused, match="use one of as-supervisor-01"):
        check_owner("nobody", frozenset({"as-supervisor-01"}))
    check_due(T0, T0 + timedelta(days=1))
    with pytest.raises(MeasureRefused, match="is not after the recording"):
        check_due(T0, T0)
