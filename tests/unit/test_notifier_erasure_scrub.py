"""What an erased customer's event data keeps in the notifier (issue 19): ids, times, codes,
numbers and flags; every other text is gone, at any depth."""

from __future__ import annotations

from services.notifier.domain import customer_ids_in, scrub


def test_scrub_keeps_ids_times_codes_and_numbers_and_drops_every_other_text() -> None:
    data = {
        "complaint_id": "CASE-1", "customer_id": "C-1", "at": "2026-11-18T14:05:00+08:00", "severity": "medium",
        "description": "赵雪梅来电（+8613900139077）", "lost_reason_note": "白天不方便", "attempts": 2, "in_time": True,
        "report_ids": ["DR-1", "DR-2"], "vins": ["LJ1EEAUU5N0123456"], "phones": ["+8613900139077"],
        "customer": {"customer_id": "C-1", "name": "赵雪梅", "address": "南京市鼓楼区中山北路288号", "region": "east"},
        "contact_flags": {"phone": {"value": "1381234", "reason": "not a mobile number", "flagged_at": "2026-11-01"}},
        "reason": None,
    }
    assert scrub(data) == {
        "complaint_id": "CASE-1", "customer_id": "C-1", "at": "2026-11-18T14:05:00+08:00", "severity": "medium",
        "description": None, "lost_reason_note": None, "attempts": 2, "in_time": True,
        "report_ids": ["DR-1", "DR-2"], "vins": ["LJ1EEAUU5N0123456"], "phones": [None],
        "customer": {"customer_id": "C-1", "name": None, "address": None, "region": "east"},
        "contact_flags": {"phone": {"value": None, "reason": None, "flagged_at": "2026-11-01"}},
        "reason": None,
    }
    assert scrub(None) is None and scrub([]) == []


def test_the_customers_an_event_names_are_found_at_any_depth() -> None:
    assert customer_ids_in({"customer_id": "C-1", "customer": {"customer_id": "C-2"},
                            "items": [{"customer_id": "C-3"}, {"vin": "X"}], "customer_ids": ["C-9"]}) == {
        "C-1", "C-2", "C-3"}
    assert customer_ids_in({"department": "after_sales_service"}) == set()
