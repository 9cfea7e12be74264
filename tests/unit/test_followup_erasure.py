"""Follow-up's erasure rules without a database (services/followup/erasure.py): which fields of a
stored document are blanked (only in the objects about an erased customer, and all of theirs),
and which events the replay guard keeps personal values from."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.followup.erasure import blank_about, scrubbed

AT = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_only_the_erased_customers_objects_lose_their_personal_fields() -> None:
    report: dict[str, Any] = {
        "headline": {"calls_due": 4, "reached": 3},
        "voices": {"service": {"total": 2, "items": [
            {"customer_id": "C-1", "requests": "后备箱漏水", "answer": "已检修", "satisfaction": 2, "low_score": True},
            {"customer_id": "D-1", "requests": "空调异味", "answer": None, "satisfaction": 3, "low_score": True},
        ]}},
    }
    cleaned, touched = blank_about(report, {"C-1"}, None)
    assert touched
    assert cleaned["headline"] == report["headline"]
    c, d = cleaned["voices"]["service"]["items"]
    assert c == {"customer_id": "C-1", "requests": None, "answer": None, "satisfaction": 2, "low_score": True}
    assert d == report["voices"]["service"]["items"][1], "another customer's words stay"
    assert cleaned["voices"]["service"]["total"] == 2


def test_an_envelope_keeps_its_shape_with_blank_text() -> None:
    """An outbox row: the event still fits its schema (text stays text), numbers and flags stay."""
    envelope = {"event_type": "InboundCallRecorded", "key": "C-1", "data": {
        "customer_id": "C-1", "summary": "电话+8613912345678", "kind": "request", "handled_by": "agent-01",
        "contact_flags": {"phone": {"value": "+8613912345678", "reason": "wrong_number"}}, "phones": ["+86139"],
        "notes": None}}
    cleaned, touched = blank_about(envelope, {"C-1"}, "")
    assert touched
    assert cleaned["data"]["summary"] == "" and cleaned["data"]["phones"] == [] and cleaned["data"]["notes"] is None
    assert cleaned["data"]["contact_flags"] == {"phone": {"value": "", "reason": ""}}
    assert (cleaned["data"]["kind"], cleaned["data"]["handled_by"], cleaned["key"]) == ("request", "agent-01", "C-1")


def test_a_document_about_nobody_erased_is_left_alone() -> None:
    document = {"customer_id": "D-1", "summary": "空调异味", "items": [{"notes": "x"}]}
    assert blank_about(document, {"C-1"}, "") == (document, False)
    assert blank_about({"customer_id": "C-1", "summary": "", "kind": "x"}, {"C-1"}, "")[1] is False, \
        "already blank: nothing to write"


def test_the_replay_guard_holds_events_up_to_the_erasure_only() -> None:
    erased = {"C-1": AT}
    assert scrubbed(erased, "C-1", AT - timedelta(days=30)), "a replay of an old event"
    assert scrubbed(erased, "C-1", AT), "at the erasure's moment"
    assert not scrubbed(erased, "C-1", AT + timedelta(seconds=1)), "the customer's new data"
    assert not scrubbed(erased, "D-1", AT - timedelta(days=30)), "not erased"
