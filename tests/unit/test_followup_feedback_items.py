"""Feedback items (customer concerns), pure rules: which call opens one, how serious it is, where
it goes, and the states it moves through (no infrastructure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import priority
from services.followup.feedback import (
    FeedbackRefused,
    Item,
    answer_call_window,
    confirmation_window,
    escalate_at,
    item_id,
    opening,
    responsible_department,
)
from shared.workcal import WorkingCalendar
from tests.support import day_at

pytestmark = pytest.mark.dates

RULES = FollowUpRules()
T0 = day_at(10)
CN = WorkingCalendar.load(None)


# -- thresholds ----------------------------------------------------------------------------------
@pytest.mark.parametrize("score", [1, 2, 3])
def test_a_score_at_or_below_the_threshold_opens_an_item(score: int) -> None:
    found = opening("first_visit", score, None, rules=RULES)
    assert found is not None and found.reasons == ["low_score"]


@pytest.mark.parametrize("score", [4, 5])
def test_a_score_above_the_threshold_without_a_request_opens_nothing(score: int) -> None:
    assert opening("first_visit", score, None, rules=RULES) is None
    assert opening("second_visit", score, "   ", rules=RULES) is None, "a blank request is no request"


def test_a_request_opens_an_item_whatever_the_score() -> None:
    found = opening("second_visit", 5, "please send the invoice again", rules=RULES)
    assert found is not None and found.reasons == ["request"] and not found.serious
    both = opening("first_visit", 2, "a loaner car next time", rules=RULES)
    assert both is not None and both.reasons == ["low_score", "request"]


def test_the_threshold_is_a_setting() -> None:
    strict = FollowUpRules(feedback_score_threshold=4)
    assert opening("first_visit", 4, None, rules=strict) is not None
    lenient = FollowUpRules(feedback_score_threshold=2)
    assert opening("first_visit", 3, None, rules=lenient) is None


def test_a_score_of_one_or_the_agents_flag_is_serious() -> None:
    one = opening("first_visit", 1, None, rules=RULES)
    assert one is not None and one.serious
    flagged = opening("first_visit", 3, "the dealer was rude", serious_flag=True, rules=RULES)
    assert flagged is not None and flagged.serious
    flagged_alone = opening("first_visit", 4, None, serious_flag=True, rules=RULES)
    assert flagged_alone is not None and flagged_alone.serious, "the agent's flag opens an item by itself"
    two = opening("first_visit", 2, None, rules=RULES)
    assert two is not None and not two.serious


def test_a_serious_item_is_never_answered_on_the_call() -> None:
    found = opening("first_visit", 1, None, answered_on_call=True, rules=RULES)
    assert found is not None and found.serious and not found.answered_on_call


@pytest.mark.parametrize("kind", ["complaint_confirmation", "feedback_answer", "feedback_confirmation"])
def test_calls_about_a_complaint_or_an_item_open_no_item_of_their_own(kind: str) -> None:
    assert opening(kind, 1, "still unhappy", rules=RULES) is None


def test_the_department_follows_the_category_or_the_agents_choice() -> None:
    assert responsible_department("product_quality", RULES) == "quality_inspection"
    assert responsible_department("price", RULES) == "sales"
    assert responsible_department(None, RULES) == RULES.feedback_department_fallback == "after_sales_service"
    chosen = opening("first_visit", 2, None, category="price", department="parts_warehouse", rules=RULES)
    assert chosen is not None and chosen.department == "parts_warehouse"


def test_one_item_per_call() -> None:
    assert item_id("F-1:1") == item_id("F-1:1") != item_id("F-1:2")


# -- when things are due -----------------------------------------------------------------------------
def test_an_unanswered_item_goes_to_the_supervisor_two_days_after_the_call() -> None:
    assert escalate_at(T0, RULES) == T0 + timedelta(days=2)


def test_the_confirmation_call_follows_a_few_days_after_the_answer() -> None:
    window = confirmation_window(T0, RULES)
    assert window.due_from == T0 + timedelta(days=3) and window.due_by == T0 + timedelta(days=7)


def _calling_day(days: int) -> int:
    """Days from the test day to the first working day at or after `days` from it."""
    while not CN.is_working_day((T0 + timedelta(days=days)).date()):
        days += 1
    return days


def test_an_answer_call_is_due_the_same_day_inside_calling_hours() -> None:
    window = answer_call_window(T0, "Asia/Shanghai", RULES, CN)
    assert window.due_from == T0
    assert window.due_by == day_at(20, days=_calling_day(0)), "by the end of the calling hours of the first working day"


def test_an_answer_found_after_calling_hours_is_called_the_next_calling_day() -> None:
    late = day_at(21, 30)
    window = answer_call_window(late, "Asia/Shanghai", RULES, CN)
    assert window.due_by == day_at(20, days=_calling_day(1))


def test_the_items_calls_rank_just_below_a_complaint_confirmation() -> None:
    assert priority("complaint_confirmation", "standard", RULES) > priority("feedback_answer", "standard", RULES) \
        > priority("feedback_confirmation", "standard", RULES) > priority("first_visit", "standard", RULES)


# -- the state machine ---------------------------------------------------------------------------------
def _item() -> Item:
    return Item("I-1", "open", "agent-01", T0, escalate_at(T0, RULES))


def test_answered_before_the_deadline_is_in_time() -> None:
    item = _item()
    assert item.answer(T0 + timedelta(days=1), "agent-01", supervisor=False) is True
    assert item.state == "answered" and item.due_at is None and item.answered_at == T0 + timedelta(days=1)


def test_only_the_owner_or_a_supervisor_answers() -> None:
    item = _item()
    with pytest.raises(FeedbackRefused) as refused:
        item.answer(T0, "agent-02", supervisor=False)
    assert refused.value.status == 403 and "agent-01" in refused.value.message
    assert item.state == "open", "a refused step changes nothing"
    assert item.answer(T0, "supervisor-01", supervisor=True) is True


def test_the_deadline_escalates_an_open_item_once() -> None:
    item = _item()
    assert item.escalate(T0 + timedelta(days=1), "supervisor") is False, "not due yet"
    assert item.escalate(T0 + timedelta(days=2), "supervisor") is True
    assert item.state == "escalated"
    assert item.escalate(T0 + timedelta(days=3), "supervisor") is False, "escalated once"


def test_an_escalated_item_answered_is_late() -> None:
    item = _item()
    item.escalate(T0 + timedelta(days=2), "supervisor")
    assert item.answer(T0 + timedelta(days=2, hours=3), "supervisor-01", supervisor=True) is False
    assert item.state == "answered"


def test_an_answered_item_is_not_escalated_nor_answered_again() -> None:
    item = _item()
    item.answer(T0, "agent-01", supervisor=False)
    assert item.escalate(T0 + timedelta(days=3), "supervisor") is False
    with pytest.raises(FeedbackRefused) as refused:
        item.answer(T0 + timedelta(hours=1), "agent-01", supervisor=False)
    assert refused.value.status == 409


def test_a_satisfied_confirmation_closes_the_item() -> None:
    item = _item()
    item.answer(T0, "agent-01", supervisor=False)
    assert item.confirm(T0 + timedelta(days=3), "agent-02", True, True, RULES) == "confirmed"
    assert item.state == "closed"


def test_an_unreachable_confirmation_closes_it_unconfirmed() -> None:
    item = _item()
    item.answer(T0, "agent-01", supervisor=False)
    assert item.confirm(T0 + timedelta(days=4), "agent-02", None, False, RULES) == "unconfirmed"


def test_an_unsatisfied_confirmation_reopens_it_with_a_new_deadline() -> None:
    item = _item()
    item.answer(T0, "agent-01", supervisor=False)
    at = T0 + timedelta(days=3)
    assert item.confirm(at, "agent-02", False, True, RULES) is None
    assert item.state == "open" and item.due_at == at + timedelta(days=2)
    assert [h["action"] for h in item.history] == ["answered", "reopened"]
    assert item.answer(at + timedelta(hours=1), "agent-01", supervisor=False) is True, "answered again"


def test_only_an_answered_item_is_confirmed() -> None:
    with pytest.raises(FeedbackRefused):
        _item().confirm(T0, "agent-02", True, True, RULES)


def test_closed_at_once_takes_no_more_steps() -> None:
    item = _item()
    item.close_at_once(T0, "agent-01", "answered_on_call")
    assert item.state == "closed" and item.due_at is None
    assert item.escalate(T0 + timedelta(days=5), "supervisor") is False
    with pytest.raises(FeedbackRefused) as refused:
        item.answer(T0, "agent-01", supervisor=False)
    assert "answered_on_call" in refused.value.message


# -- the 2 days on the working calendar -----------------------------------------------------------------
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_two_working_days_from_a_friday_afternoon_end_on_tuesday_afternoon() -> None:
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=SHANGHAI)
    assert escalate_at(friday, RULES, CN) == datetime(2026, 11, 24, 15, 0, tzinfo=SHANGHAI)


def test_the_national_day_holidays_stop_the_clock() -> None:
    eve = datetime(2026, 9, 30, 15, 0, tzinfo=SHANGHAI)  # 1-7 October are public holidays
    assert escalate_at(eve, RULES, CN) == datetime(2026, 10, 9, 15, 0, tzinfo=SHANGHAI)


def test_a_call_in_the_evening_starts_its_clock_next_morning() -> None:
    evening = datetime(2026, 11, 18, 19, 0, tzinfo=SHANGHAI)  # a Wednesday, after business hours
    assert escalate_at(evening, RULES, CN) == datetime(2026, 11, 20, 17, 30, tzinfo=SHANGHAI)


def test_around_the_clock_when_the_setting_says_so() -> None:
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=SHANGHAI)
    assert escalate_at(friday, FollowUpRules(feedback_deadline_clock="calendar"), None) == friday + timedelta(days=2)


def test_a_reopened_item_gets_two_working_days_again() -> None:
    item = _item()
    item.answer(T0, "agent-01", supervisor=False)
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=SHANGHAI)
    item.confirm(friday, "agent-02", False, True, RULES, CN)
    assert item.due_at == datetime(2026, 11, 24, 15, 0, tzinfo=SHANGHAI)
