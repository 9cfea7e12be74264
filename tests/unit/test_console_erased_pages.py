"""A customer whose personal data were erased (issue 19) on the desk's queue and the cases'
worklist: the rows render, with the customer's id where the name was, and no empty value shown
as 'None' (the console's templates as the pages render them, in zh-CN)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from services.console import desk
from services.console.i18n import environment

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))
ERASED = {"customer_id": "CUS-ERASED", "name": None, "name_pinyin": None, "phone": None, "region": "华南",
          "timezone": "Asia/Shanghai"}
KEPT = {"customer_id": "CUS-KEPT", "name": "诸葛文", "name_pinyin": "zhugewen", "phone": "+8613700001111",
        "region": "华南", "timezone": "Asia/Shanghai"}


def _call(customer: Mapping[str, object]) -> dict[str, object]:
    return {"followup_id": f"FU-{customer['customer_id']}", "customer_id": customer["customer_id"],
            "customer": customer, "kind": "first_visit", "attempts": 0, "vin": "LSVER00000000C001",
            "vehicle": {"plate": "粤B·12345", "model": "Aurora"}, "due_from": NOW - timedelta(days=1),
            "due_by": NOW + timedelta(days=1), "lateness": desk.lateness(NOW + timedelta(days=1), NOW),
            "followups": [], "mine": False, "dealer_id": "D-1"}


def test_the_desk_queue_shows_an_erased_customer_by_id() -> None:
    html = environment("zh-CN").get_template("_queue.html").render(
        items=[_call(ERASED), _call(KEPT)], problem=None, csrf_token="t")
    assert 'href="/customers/CUS-ERASED">CUS-ERASED</a>' in html, "the id where the name was"
    assert "诸葛文" in html and "137****1111" in html, "the other customer as before"
    assert "None" not in html


def test_the_cases_worklist_shows_an_erased_customer_by_id() -> None:
    case = {"complaint_id": "CMP-1", "complaint_ref": "REF-1", "filed_at": NOW, "customer_id": "CUS-ERASED",
            "customer": ERASED, "category": "delay", "severity": "low", "state": "opened", "level": 0,
            "department": "after_sales", "assignee": None, "vehicle": None,
            "clock": {"due_at": NOW + timedelta(hours=4), "breached": False, "by": timedelta(hours=4)},
            "breached": False}
    html = environment("zh-CN").get_template("_worklist.html").render(items=[case], problem=None, more=False)
    assert "<td>CUS-ERASED</td>" in html and "None" not in html
