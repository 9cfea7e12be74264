"""The console's measure form: what it sends the complaints service and what it asks to fix."""

from __future__ import annotations

from datetime import date, datetime

from services.console.i18n import DISPLAY_ZONE
from services.console.measure_pages import measure_body

TODAY = date(2026, 11, 20)
FILLED = {"target_kind": "category", "category": "repair_quality", "title": "完工质检", "action": "试车并签字",
          "owner": "as-supervisor-01", "due_date": "2026-12-04"}


def test_a_filled_form_is_a_category_measure_due_at_nine_on_its_day_in_shanghai() -> None:
    body, problems = measure_body(FILLED, TODAY)
    assert problems == {}
    assert body == {"target_kind": "category", "category": "repair_quality", "title": "完工质检",
                    "action": "试车并签字", "owner": "as-supervisor-01",
                    "due_at": datetime(2026, 12, 4, 9, 0, tzinfo=DISPLAY_ZONE).isoformat()}


def test_an_alert_measure_sends_the_alert_and_no_category() -> None:
    body, problems = measure_body(FILLED | {"target_kind": "alert", "alert_id": " A-7 "}, TODAY)
    assert problems == {} and body["alert_id"] == "A-7" and "category" not in body


def test_every_missing_or_wrong_field_is_named() -> None:
    _, problems = measure_body({"target_kind": "category", "due_date": "4/12/2026"}, TODAY)
    assert set(problems) == {"category", "title", "action", "owner", "due_date"}
    _, problems = measure_body(FILLED | {"due_date": TODAY.isoformat()}, TODAY)
    assert set(problems) == {"due_date"}, "due today is not ahead"
    _, problems = measure_body(FILLED | {"target_kind": ""}, TODAY)
    assert set(problems) == {"target_kind"}
    _, problems = measure_body(FILLED | {"target_kind": "alert", "alert_id": "  "}, TODAY)
    assert set(problems) == {"alert_id"}
