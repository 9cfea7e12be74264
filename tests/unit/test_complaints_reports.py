"""The weekly report (when, which week, the figures by category and department), the KPI
ratios, and the complaint form filed at closing; on the test moment's calendar."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest

from services.complaints.config import ComplaintRules
from services.complaints.domain import Case, Document, Intake
from services.complaints.reports import (
    CaseRow,
    FactRow,
    RoundRow,
    complaint_form,
    kpi_figures,
    next_report_at,
    reported_week,
    weekly_figures,
)
from services.complaints.tables import load_tables
from tests.complaints_fixtures import AROUND_THE_CLOCK
from tests.support import TEST_NOW, in_test_week, iso_week

pytestmark = pytest.mark.dates

SH = "Asia/Shanghai"
H = timedelta(hours=1)
NEXT_MONDAY_EIGHT = in_test_week(0, 8) + timedelta(days=7)  # the report after the test moment's week


def test_the_report_is_due_every_monday_at_eight_shanghai_time() -> None:
    monday = next_report_at(in_test_week(4, 10), 0, time(8), SH)  # from Friday
    assert monday == NEXT_MONDAY_EIGHT
    assert next_report_at(monday, 0, time(8), SH) == monday + timedelta(days=7)  # strictly after
    assert next_report_at(monday - timedelta(seconds=1), 0, time(8), SH) == monday
    # 23:30 UTC on Sunday is already Monday 07:30 in Shanghai.
    sunday_night_utc = (monday - timedelta(minutes=30)).astimezone(UTC)
    assert sunday_night_utc.weekday() == 6 and next_report_at(sunday_night_utc, 0, time(8), SH) == monday


def test_the_report_covers_the_last_full_week_before_it() -> None:
    week = reported_week(NEXT_MONDAY_EIGHT, SH)
    assert (week.week, week.week_start) == (iso_week(TEST_NOW), in_test_week(0, 0).date())
    assert week.starts_at == in_test_week(0, 0)
    assert week.ends_at == in_test_week(0, 0) + timedelta(days=7)
    # Across a year boundary the ISO week year is used (a calendar fact: 2026 has 53 weeks).
    assert reported_week(datetime.fromisoformat("2027-01-04T08:00:00+08:00"), SH).week == "2026-W53"


def test_weekly_figures_count_by_category_and_department_within_the_week_only() -> None:
    week = reported_week(NEXT_MONDAY_EIGHT, SH)
    mon = week.starts_at
    cases = [
        CaseRow("a", "product_quality", "quality_inspection", "closed", mon + 2 * H),
        CaseRow("b", "price", "sales", "assigned", mon + 30 * H),
        CaseRow("c", "price", "sales", "reopened", mon - 3 * 24 * H),  # filed the week before
    ]
    facts = [
        FactRow("a", "acknowledged", mon + 3 * H, {}), FactRow("a", "resolved", mon + 20 * H, {}),
        FactRow("a", "closed", mon + 40 * H, {"satisfied": True}),
        FactRow("b", "escalated", mon + 34 * H, {"level": 1}),
        FactRow("c", "reopened", mon + 10 * H, {}), FactRow("c", "closed", mon - H, {"satisfied": None}),
    ]
    rounds = [
        RoundRow("a", 0, mon + 6 * H, mon + 50 * H, mon + 3 * H, mon + 20 * H, False, False, 3600.0, 18 * 3600.0),
        RoundRow("b", 0, mon + 34 * H, mon + 78 * H, None, None, True, False, None, None),
        RoundRow("c", 0, mon - 60 * H, mon - 20 * H, mon - 70 * H, mon - 10 * H, False, True, 100.0, 200.0),
        RoundRow("c", 1, mon + 14 * H, mon + 58 * H, None, None, False, False, None, None),
    ]
    figures = weekly_figures(week, cases, facts, rounds)
    totals = figures["totals"]
    assert {k: totals[k] for k in ("filed", "acknowledged", "resolved", "closed", "closed_confirmed", "reopened",
                                   "escalations", "ack_breaches", "resolve_breaches", "open_at_report")} == {
        "filed": 2, "acknowledged": 1, "resolved": 1, "closed": 1, "closed_confirmed": 1, "reopened": 1,
        "escalations": 1, "ack_breaches": 1, "resolve_breaches": 0, "open_at_report": 2,
    }
    assert totals["sla_compliance"] == 1.0
    assert totals["mean_hours_to_acknowledge"] == 1.0 and totals["mean_hours_to_resolve"] == 18.0
    assert figures["by_category"]["price"]["filed"] == 1 and figures["by_category"]["price"]["ack_breaches"] == 1
    assert figures["by_category"]["delay"]["filed"] == 0 and figures["by_category"]["delay"]["sla_compliance"] is None
    assert set(figures["by_department"]) == {"quality_inspection", "sales"}
    assert figures["by_department"]["sales"]["reopened"] == 1


def test_kpis_are_ratios_of_the_counts_and_none_without_data() -> None:
    figures = kpi_figures({
        "cases": 10, "open_handler": 3, "open_supervisor": 2, "open_department_head": 1, "open_superior_leader": 0,
        "ack_breaches": 4, "resolve_breaches": 2, "resolved_rounds": 8, "resolved_within_sla": 6,
        "mean_ack_seconds": 7200.04, "mean_resolve_seconds": 90000, "reopened_cases": 1, "resolved_cases": 5,
        "escalations": 7,
    })
    assert figures["open_by_level"] == {"handler": 3, "supervisor": 2, "department_head": 1, "superior_leader": 0}
    assert figures["open"] == 6 and figures["sla_breaches"] == {"acknowledge": 4, "resolve": 2}
    assert figures["sla_compliance"] == 0.75 and figures["sla_compliance_percent"] == 75.0
    assert figures["reopen_rate"] == 0.2 and figures["mean_seconds_to_acknowledge"] == 7200.0
    empty = kpi_figures({})
    assert empty["sla_compliance"] is None and empty["reopen_rate"] is None and empty["open"] == 0


def test_the_complaint_form_records_the_case_its_timeline_escalations_and_documents() -> None:
    # the form, not the clock: on the 24/7 clock the acknowledgement is overdue at +5 h on any
    # test day (on the working calendar a holiday such as 2026-10-01 stops it)
    rules = ComplaintRules(sla=AROUND_THE_CLOCK)
    tables = load_tables(rules.classification_file, rules.routing_file, rules.directory_file)
    t0 = TEST_NOW
    filing = Intake("CRM-77", "CUST-7", None, None, "letter", "后桥漏油，已经第三次了", t0, None, "aftersales.intake")
    c = tables.classify(filing.description)
    case = Case.open(filing, c, rules.sla.for_severity(c.severity), now=t0, correlation_id=uuid.uuid4())
    case.announce_due(t0 + 5 * H, tables.person_for)
    for action, detail in (("acknowledge", {}), ("assign", {"assignee": "agent-01"}),
                           ("resolve", {"resolution": "后桥油封更换，试车无渗漏"})):
        case.act(action, at=t0 + 6 * H, now=t0 + 6 * H, actor="agent-01", **detail)
    case.attach(Document("d1", "inspection_report", "Inspection", None, "text/plain", 42, "ab" * 32, "x/d1.txt",
                         "agent-01", t0 + 6 * H), t0 + 6 * H)
    case.act("close", at=t0 + 2 * 24 * H, now=t0 + 2 * 24 * H, actor="followup", satisfied=True,
             confirmation="confirmed")
    form = complaint_form(case, SH)
    assert form.startswith("# Complaint form CRM-77")
    for expected in ("后桥漏油", "product_quality", "part: rear_axle", "severity: high (keywords)",
                     "quality_inspection", "agent-01", "后桥油封更换", f"{t0:%Y-%m-%d %H:%M} CST — filed",
                     "level 1 supervisor (qi-supervisor-01)", "Inspection (inspection_report, 42 bytes",
                     "confirmation: confirmed; satisfied: yes"):
        assert expected in form, expected
    assert form == complaint_form(case, SH)  # the same case, the same form
