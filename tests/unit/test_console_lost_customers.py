"""The console's side of lost customers and recalls: the call form passes a lost customer's
reason (and words) to the follow-up service as chosen, the at-risk list's rows and export, the
lost reasons' period and order, the recalls list's rows; and the words for each reason."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.console.i18n import environment
from services.console.pages import LOST_REASONS, attempt_body
from services.console.quality_pages import recall_rows
from services.console.retention_pages import at_risk_entries, export_rows, period, reason_counts
from services.followup.domain import LOST_REASONS as FOLLOWUP_LOST_REASONS

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def test_the_console_offers_the_follow_up_services_reasons_each_in_both_languages() -> None:
    assert LOST_REASONS == FOLLOWUP_LOST_REASONS
    zh, en = environment("zh-CN").filters["label"], environment("en").filters["label"]
    for reason in (*LOST_REASONS, "not_given"):
        assert zh(reason, "lost_reason") != reason and en(reason, "lost_reason") != reason
        assert zh(reason, "lost_reason") != en(reason, "lost_reason")
    assert zh("switched_dealer", "lost_reason") == "改去其他经销商或维修店"
    assert en("falling_visit_frequency", "risk_sign") == "visits falling off"


def test_a_reached_lost_customer_call_carries_the_reason_and_the_customers_words() -> None:
    body = attempt_body({"outcome": "reached", "lost_reason": "other", "lost_reason_note": "  孩子出国了 "}, NOW)
    assert body == {"outcome": "reached", "lost_reason": "other", "lost_reason_note": "孩子出国了"}
    # `other` without words goes as chosen: the follow-up service refuses it and the form shows why
    assert attempt_body({"outcome": "reached", "lost_reason": "other", "lost_reason_note": " "}, NOW) == {
        "outcome": "reached", "lost_reason": "other"}
    assert "lost_reason" not in attempt_body({"outcome": "reached", "lost_reason": ""}, NOW)


def test_an_unanswered_call_carries_no_reason() -> None:
    body = attempt_body({"outcome": "unreachable", "lost_reason": "price", "lost_reason_note": "太贵"}, NOW)
    assert body == {"outcome": "unreachable"}


def test_the_lost_reasons_period_is_whole_days_in_shanghai_default_the_last_30() -> None:
    start, end = period("", "", NOW)
    assert (start.isoformat(), end.isoformat()) == ("2026-10-22T00:00:00+08:00", "2026-11-21T00:00:00+08:00")
    start, end = period("2026-11-01", "2026-11-01", NOW)
    assert end - start == timedelta(days=1) and start.isoformat() == "2026-11-01T00:00:00+08:00"
    with pytest.raises(ValueError, match="2026-11-01"):
        period("1.11.2026", "", NOW)
    with pytest.raises(ValueError, match="first day"):
        period("2026-11-10", "2026-11-09", NOW)


def test_every_reason_is_counted_in_the_lists_order_then_not_given_then_unknown_ones() -> None:
    rows = reason_counts({"not_given": 2, "price": 3, "weather": 1})
    assert rows == [("moved_away", 0), ("switched_dealer", 0), ("sold_the_car", 0), ("price", 3),
                    ("service_quality", 0), ("other", 0), ("not_given", 2), ("weather", 1)]


def test_an_at_risk_entry_gets_its_owner_dealers_and_plates_and_exports_as_shown() -> None:
    customers = [{"customer_id": "C1", "region": "east", "signs": ["overdue_maintenance", "falling_visit_frequency"],
                  "last_visit_at": "2026-06-01T10:00:00+08:00", "lost_at": "2027-06-01T10:00:00+08:00",
                  "days_since_last_visit": 172.0, "average_interval_days": 60.0,
                  "maintenance_due_at": "2026-09-01T10:00:00+08:00", "vehicles": ["VIN1", "VIN2"]},
                 {"customer_id": "C2", "region": None, "signs": ["falling_visit_frequency"],
                  "last_visit_at": "2026-07-01T10:00:00+08:00", "lost_at": "2027-07-01T10:00:00+08:00",
                  "days_since_last_visit": 142.0, "average_interval_days": 80.0, "maintenance_due_at": None,
                  "vehicles": ["VIN3"]}]
    entries = at_risk_entries(customers, {"C1": {"customer_id": "C1", "name": "吴秀英"}},
                              {"VIN1": {"vin": "VIN1", "plate": "沪A12345", "dealer_id": "DLR-2"},
                               "VIN2": {"vin": "VIN2", "plate": None, "dealer_id": "DLR-1"}})
    first, second = entries
    assert first["owner"]["name"] == "吴秀英" and first["dealers"] == ["DLR-1", "DLR-2"]
    assert [v.get("plate") for v in first["vehicle_rows"]] == ["沪A12345", None]
    assert first["last_visit_at"] == datetime.fromisoformat("2026-06-01T10:00:00+08:00")
    assert second["owner"] is None and second["dealers"] == [] and second["maintenance_due_at"] is None
    rows = export_rows(entries, environment("zh-CN").filters["label"])
    assert rows[0][:5] == ["C1", "吴秀英", "east", "DLR-1, DLR-2", "保养逾期, 到店频率下降"]
    assert rows[0][6:8] == [172.0, 60.0] and rows[0][-1] == "VIN1, VIN2"
    assert rows[1][1:4] == ["", "", ""] and rows[1][8] == ""


def test_recalls_are_listed_latest_first_with_every_count() -> None:
    recalls = [{"campaign_id": "RC-a", "confirmed_at": "2026-10-01T09:00:00+08:00", "starts_at": None,
                "ends_at": None, "progress": {"vehicles": 12, "reached": 3, "booked": 2, "inspected": 1,
                                              "replaced": 1, "rates": {}}},
               {"campaign_id": "RC-b", "confirmed_at": "2026-11-01T09:00:00+08:00", "starts_at": None,
                "ends_at": None, "progress": {"vehicles": 4}}]
    rows = recall_rows(recalls)
    assert [r["campaign_id"] for r in rows] == ["RC-b", "RC-a"]
    assert rows[0]["progress"] == {"vehicles": 4, "reached": 0, "booked": 0, "inspected": 0, "replaced": 0}
    assert rows[1]["progress"]["replaced"] == 1 and isinstance(rows[1]["confirmed_at"], datetime)
