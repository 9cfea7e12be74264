"""Lost customers, pure rules (no infrastructure): the reason recorded on a lost-customer call is
one of a fixed list (anything else is refused with a message naming the list), and who is at
risk of being lost before the 12-month mark. Fixed dates: they hold on any test moment."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.followup.commands import AttemptIn
from services.followup.config import FollowUpRules
from services.followup.domain import LOST_REASONS, at_risk, lost_after

RULES = FollowUpRules()
NOW = datetime(2026, 11, 20, 10, tzinfo=ZoneInfo("Asia/Shanghai"))


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


# -- the reason ------------------------------------------------------------------------------------
def test_the_reasons_are_the_fixed_list() -> None:
    assert LOST_REASONS == ("moved_away", "switched_dealer", "sold_the_car", "price", "service_quality", "other")


@pytest.mark.parametrize("reason", LOST_REASONS[:-1])
def test_a_known_reason_is_accepted_on_a_reached_call(reason: str) -> None:
    call = AttemptIn.model_validate({"outcome": "reached", "lost_reason": reason})
    assert call.lost_reason == reason


def test_an_unknown_reason_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValidationError) as refused:
        AttemptIn.model_validate({"outcome": "reached", "lost_reason": "aliens"})
    message = str(refused.value)
    assert "lost_reason" in message and "'switched_dealer'" in message and "'moved_away'" in message


def test_other_needs_the_customers_words() -> None:
    with pytest.raises(ValidationError, match="lost_reason_note"):
        AttemptIn.model_validate({"outcome": "reached", "lost_reason": "other", "lost_reason_note": "  "})
    call = AttemptIn.model_validate({"outcome": "reached", "lost_reason": "other",
                                     "lost_reason_note": "只在春节回老家时用车"})
    assert call.lost_reason_note == "只在春节回老家时用车"


def test_a_reason_needs_the_customer_reached() -> None:
    with pytest.raises(ValidationError, match="lost_reason can only be recorded when the customer was reached"):
        AttemptIn.model_validate({"outcome": "unreachable", "lost_reason": "price"})


# -- at risk -----------------------------------------------------------------------------------------
def test_a_regular_customer_is_not_at_risk() -> None:
    visits = [days_ago(d) for d in (300, 200, 100, 10)]
    assert at_risk("C1", visits[-1], visits, [NOW + timedelta(days=80)], NOW, RULES) is None


def test_falling_visit_frequency_is_a_gap_longer_than_one_and_a_half_average_intervals() -> None:
    visits = [days_ago(d) for d in (330, 270, 210, 150)]  # every 60 days, then 150 days without
    risk = at_risk("C2", visits[-1], visits, [], NOW, RULES)
    assert risk is not None and risk.signs == ["falling_visit_frequency"]
    assert risk.average_interval_days == 60.0 and risk.days_since_last_visit == 150.0
    assert risk.lost_at == lost_after(visits[-1], RULES)
    # 89 days since the last of visits 60 days apart: within 1.5 x 60
    near = [days_ago(d) for d in (269, 209, 149, 89)]
    assert at_risk("C2", near[-1], near, [], NOW, RULES) is None
    # 91 days: beyond
    beyond = at_risk("C2", days_ago(91), [days_ago(d) for d in (271, 211, 151, 91)], [], NOW, RULES)
    assert beyond is not None and beyond.signs == ["falling_visit_frequency"]


def test_two_visits_are_too_few_to_speak_of_a_frequency() -> None:
    visits = [days_ago(300), days_ago(290)]
    assert at_risk("C3", visits[-1], visits, [], NOW, RULES) is None


def test_overdue_maintenance_is_a_service_due_thirty_days_ago_or_more() -> None:
    visits = [days_ago(200)]
    risk = at_risk("C4", visits[-1], visits, [days_ago(30), days_ago(5)], NOW, RULES)
    assert risk is not None and risk.signs == ["overdue_maintenance"] and risk.maintenance_due_at == days_ago(30)
    assert at_risk("C4", visits[-1], visits, [days_ago(29)], NOW, RULES) is None, "not overdue long enough"


def test_both_signs_together() -> None:
    visits = [days_ago(d) for d in (340, 300, 260, 200)]
    risk = at_risk("C5", visits[-1], visits, [days_ago(60)], NOW, RULES)
    assert risk is not None and risk.signs == ["overdue_maintenance", "falling_visit_frequency"]


def test_a_customer_past_the_twelve_month_mark_is_lost_not_at_risk() -> None:
    visits = [days_ago(d) for d in (700, 600, 500, 400)]
    assert at_risk("C6", visits[-1], visits, [days_ago(200)], NOW, RULES) is None
    # a recent sale counts as contact: the mark is 12 months after it, so the customer is still at risk
    risk = at_risk("C6", days_ago(100), visits, [days_ago(200)], NOW, RULES)
    assert risk is not None and risk.lost_at == lost_after(days_ago(100), RULES)
