"""The console's feedback items and consultation form, their rules without a browser: which items
the filters keep and in what order, how late an item is, what the solution and consultation
forms send, and a service's refusal turned into the form's fields."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from services.console.clients import ServiceError, _fields
from services.console.feedback_pages import (
    FIELD_PROBLEMS,
    Filters,
    consultation_body,
    deadline,
    field_problems,
    national_digits,
    refusal,
    shown,
    solution_body,
)

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def _item(ident: str, state: str, **more: object) -> dict[str, object]:
    return {"item_id": ident, "state": state, "due_at": None, "escalated_at": None} | more


def test_an_open_item_has_its_time_left_or_is_overdue_and_an_escalated_one_is_overdue_since_it_went_up() -> None:
    left = deadline(_item("a", "open", due_at=(NOW + timedelta(hours=5)).isoformat()), NOW)
    assert (left.overdue, left.by) == (False, timedelta(hours=5))
    late = deadline(_item("b", "open", due_at=(NOW - timedelta(days=1)).isoformat()), NOW)
    assert (late.overdue, late.by) == (True, timedelta(days=1))
    up = deadline(_item("c", "escalated", escalated_at=(NOW - timedelta(days=2)).isoformat()), NOW)
    assert (up.overdue, up.by, up.due_at) == (True, timedelta(days=2), NOW - timedelta(days=2))
    assert deadline(_item("d", "answered"), NOW).due_at is None
    assert not deadline(_item("e", "closed"), NOW).overdue


def test_the_items_waiting_come_first_the_most_urgent_first_and_the_overdue_filter_keeps_the_late_ones() -> None:
    items = [_item("answered", "answered"),
             _item("later", "open", due_at=(NOW + timedelta(days=1)).isoformat()),
             _item("up", "escalated", escalated_at=(NOW - timedelta(days=2)).isoformat()),
             _item("sooner", "open", due_at=(NOW - timedelta(hours=1)).isoformat())]
    assert [i["item_id"] for i in shown([dict(i) for i in items], Filters(), NOW)] == [
        "up", "sooner", "later", "answered"]
    assert [i["item_id"] for i in shown([dict(i) for i in items], Filters(overdue=True), NOW)] == ["up", "sooner"]


def test_the_filters_take_only_known_values() -> None:
    assert Filters.of({"state": "escalated", "mine": "1", "overdue": "on"}) == Filters("escalated", True, True)
    assert Filters.of({"state": "'; drop table", "mine": "no"}) == Filters()


def test_the_solution_is_required_and_how_the_customer_is_told_is_one_of_the_apis() -> None:
    assert solution_body({"solution": "  免费四轮定位 ", "tell_by": "call"}) == {"solution": "免费四轮定位",
                                                                                "tell_by": "call"}
    assert solution_body({"solution": "x", "tell_by": "pigeon"}) == {"solution": "x"}
    with pytest.raises(ValueError, match="Write the solution"):
        solution_body({"solution": "   "})
    with pytest.raises(ValueError, match="too long"):
        solution_body({"solution": "x" * 4001})


def test_a_refused_solution_says_why_in_the_readers_words() -> None:
    assert "owner" in refusal(ServiceError("followup", 403, "feedback item x belongs to li.qiang"))
    assert "answer already" in refusal(ServiceError("followup", 409, "feedback item x is answered"))
    assert "try again" in refusal(ServiceError("followup", 503, "cannot be reached"))


def test_the_consultation_form_becomes_intakes_consultation_with_the_model_leading_the_notes() -> None:
    body, problems = consultation_body({"name": " 周建国 ", "phone": "139 8765 4321", "topic": "保养费用",
                                        "model": "EV-200", "notes": "首保是否免费", "vin": "", "dealer_id": "DLR-7",
                                        "region": "east", "channel": "showroom"})
    assert problems == {}
    assert body == {"name": "周建国", "phone": "139 8765 4321", "topic": "保养费用", "channel": "showroom",
                    "dealer_id": "DLR-7", "region": "east", "summary": "[EV-200]\n首保是否免费"}
    bare, _ = consultation_body({"name": "a", "phone": "1", "topic": "t", "channel": "fax"})
    assert bare == {"name": "a", "phone": "1", "topic": "t", "channel": "hotline"}


def test_a_consultation_without_name_phone_or_topic_is_not_sent() -> None:
    _, problems = consultation_body({"notes": "只留了备注", "model": "m" * 101})
    assert set(problems) == {"name", "phone", "topic", "model"}


def test_intakes_validation_errors_become_the_forms_fields() -> None:
    response = httpx.Response(422, json={"type": "urn:aftersales:problem:invalid-request", "status": 422,
                                         "detail": "3 invalid fields: …", "errors": [
        {"field": "body.phone", "message": "Value error, phone '12345' is not a valid number", "type": "value_error"},
        {"field": "body.summary", "message": "String should have at most 4000 characters", "type": "string_too_long"},
        {"field": "query.page", "message": "bad", "type": "x"}]})
    fields = _fields(response)
    assert fields == {"phone": "Value error, phone '12345' is not a valid number",
                      "summary": "String should have at most 4000 characters"}
    problems = field_problems(ServiceError("intake", 422, "…", fields))
    assert problems == {"phone": FIELD_PROBLEMS["phone"], "notes": FIELD_PROBLEMS["summary"]}
    assert _fields(httpx.Response(422, json={"detail": "name the caller"})) == {}
    assert _fields(httpx.Response(500, text="boom")) == {}


@pytest.mark.parametrize(("phone", "digits"), [("+8613987654321", "13987654321"), ("139 8765 4321", "13987654321"),
                                               ("+1 650 253 0000", "16502530000")])
def test_the_file_is_searched_by_the_national_number(phone: str, digits: str) -> None:
    assert national_digits(phone) == digits
