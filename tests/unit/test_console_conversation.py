"""The console's side of one conversation per customer: the desk's rows (one per conversation)
and the call form read into one record with each follow-up's outcome."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.console import desk
from services.console.conversation_pages import call_record

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))
CALL = [{"followup_id": "fv", "kind": "first_visit"}, {"followup_id": "mr", "kind": "maintenance_reminder"},
        {"followup_id": "lc", "kind": "lost_customer"}]


def test_the_desk_lists_one_row_per_conversation() -> None:
    one = {"followup_id": "a", "customer_id": "C1", "kind": "first_visit", "claimed_by": None}
    two = [{"followup_id": "b", "customer_id": "C2", "kind": "campaign_call", "claimed_by": "wang.fang"},
           {"followup_id": "c", "customer_id": "C2", "kind": "maintenance_reminder", "claimed_by": "wang.fang"}]
    rows = desk.conversation_rows({"items": [  # a page of GET /v1/queue/conversations
        {"customer_id": "C2", "claimed_by": "wang.fang", "call_id": "k", "overdue": False, "followups": two},
        {"customer_id": "C1", "claimed_by": None, "call_id": None, "overdue": True, "followups": [one]}],
        "next_cursor": None, "limit": 30})
    assert [(r["customer_id"], [f["followup_id"] for f in r["followups"]]) for r in rows] == [
        ("C2", ["b", "c"]), ("C1", ["a"])]
    assert desk.call_url(rows[0]) == "/desk/customers/C2/call" and desk.call_url(rows[1]) == "/desk/calls/a"
    assert [r["customer_id"] for r in desk.desk_order(rows, "wang.fang")] == ["C2", "C1"]


def test_one_submission_gives_each_follow_up_its_outcome_and_the_calls_words_once() -> None:
    form = {"outcome__0": "reached", "satisfaction__0": "3", "talking_points__0": "noise gone",
            "outcome__1": "reached", "talking_points__1": "books the service",
            "outcome__2": "reached", "lost_reason__2": "other", "lost_reason_note__2": "moved to Hangzhou",
            "requests": "a courtesy car", "notes": "friendly", "answered_on_call": "yes"}
    body = call_record(form, CALL, NOW)
    fv, mr, lc = body["outcomes"]
    assert fv == {"followup_id": "fv", "outcome": "reached", "satisfaction": 3, "talking_points": "noise gone",
                  "requests": "a courtesy car", "notes": "friendly", "feedback": {"answered_on_call": True}}
    assert mr == {"followup_id": "mr", "outcome": "reached", "talking_points": "books the service"}
    assert lc == {"followup_id": "lc", "outcome": "reached", "lost_reason": "other",
                  "lost_reason_note": "moved to Hangzhou"}


def test_the_calls_words_go_on_the_first_follow_up_that_reached_the_customer() -> None:
    form = {"outcome__0": "call_back_later", "call_back_at": "2026-11-20T15:00", "outcome__1": "reached",
            "outcome__2": "unreachable", "requests": "a courtesy car"}
    fv, mr, lc = call_record(form, CALL, NOW)["outcomes"]
    assert fv["outcome"] == "call_back_later" and fv["call_back_at"] == "2026-11-20T15:00:00+08:00"
    assert "requests" not in fv and mr["requests"] == "a courtesy car" and "requests" not in lc


def test_a_follow_up_without_an_outcome_or_a_call_back_without_a_time_is_refused() -> None:
    with pytest.raises(ValueError, match="each follow-up"):
        call_record({"outcome__0": "reached", "outcome__2": "reached"}, CALL, NOW)
    with pytest.raises(ValueError, match="time to call back"):
        call_record({"outcome__0": "call_back_later", "outcome__1": "reached", "outcome__2": "reached"}, CALL, NOW)
