"""Who hears of a complaint (the notifier's rule table): a new case goes to the handler of the
department it is routed to and to the department in writing, a critical one also to the
superior leader at once; the weekly complaint report also goes to the superior leader."""

from __future__ import annotations

from services.complaints.config import ComplaintRules
from services.complaints.tables import load_tables
from services.notifier.config import NotifierSettings
from services.notifier.directory import load_directory
from services.notifier.rules import fill, load_rules
from services.notifier.templating import Templates

SETTINGS = NotifierSettings()
RULES = load_rules(SETTINGS.rules_file)
STAFF = load_directory(SETTINGS.staff_file)
TABLES = load_tables(*(getattr(ComplaintRules(), f) for f in ("classification_file", "routing_file", "directory_file")))


def opened(severity: str, department: str = "quality_inspection") -> dict[str, object]:
    return {"complaint_id": "C-1", "complaint_ref": "CRM-1", "customer_id": "CUST-1", "department": department,
            "severity": severity, "category": "product_quality", "channel": "hotline", "description": "电机异响",
            "handler": TABLES.person_for(department, "handler"), "ack_due_at": "2026-04-07T05:30:00+00:00",
            "resolve_due_at": "2026-04-08T09:30:00+00:00", "round": 0}


def recipients(event_type: str, data: dict[str, object]) -> dict[str, list[str]]:
    return {r.id: [pid for pid, _ in STAFF.people_for(fill(r.recipient, data) or "")]
            for r in RULES.matching(event_type, "aftersales.complaints", data)}


def test_a_new_case_goes_to_the_departments_handler_and_to_the_department() -> None:
    assert recipients("ComplaintOpened", opened("medium")) == {
        "complaint_opened_handler": ["qi-handler-01"],
        "complaint_opened_department": ["qi-supervisor-01", "qi-head-01"],
    }


def test_every_department_of_the_routing_table_has_a_handler_the_notifier_can_reach() -> None:
    for department in {*TABLES.routing.departments.values(), TABLES.routing.fallback}:
        handler = TABLES.person_for(department, "handler")
        assert handler and STAFF.people_for(f"person:{handler}"), department
        assert STAFF.people_for(f"department:{department}"), department


def test_a_critical_case_also_goes_to_the_superior_leader_at_once() -> None:
    found = recipients("ComplaintOpened", opened("critical", "after_sales_service"))
    assert found["complaint_opened_critical"] == ["aftersales-director-01"]
    assert found["complaint_opened_handler"] == ["as-handler-01"]


def test_the_weekly_complaint_report_also_goes_to_the_superior_leader() -> None:
    found = recipients("ComplaintWeeklyReport", {"week": "2026-W14"})
    assert found["complaint_weekly_report_leader"] == ["aftersales-director-01"]


def test_the_opening_notice_names_the_case_and_its_deadlines_in_both_locales() -> None:
    templates = Templates(SETTINGS.templates_dir, "zh-CN")
    context = {"data": opened("critical"), "person": {"name": "高峰"}, "timezone": "Asia/Shanghai", "contact": {}}
    zh, _ = templates.render("complaint_opened", "email", "zh-CN", context)
    en, _ = templates.render("complaint_opened", "email", "en", context)
    assert zh.subject and "CRM-1" in zh.subject and "紧急" in zh.subject
    assert "2026-04-07" in zh.text or "2026年4月7日" in zh.text
    assert "13:30" in zh.text and "电机异响" in zh.text
    assert en.subject and en.subject.startswith("[New complaint] CRM-1 (critical)") and "13:30" in en.text
