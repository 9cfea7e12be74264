"""What the complaints API answers (docs/api/complaints.openapi.json): a case with its SLA figures,
timeline, escalations and documents; a case in a list; a document; a rectification measure; the
KPIs and reports. Each model carries a realistic example (zh-CN where people's words appear)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.api import Page


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# ---------------------------------------------------------------------------------------
# A case

DOCUMENT_EXAMPLE: dict[str, Any] = {
    "document_id": "6b1f7c1e-2b7d-4c51-9d3e-0f6a5d2c8e11", "kind": "photo", "title": "刹车盘照片",
    "filename": "brake-disc.jpg", "content_type": "image/jpeg", "size_bytes": 48213,
    "sha256": "9f2c4e0b7a1d3c5e8f6a2b4d6c8e0a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f", "added_by": "wang.fang",
    "added_at": "2026-11-20T10:05:00+08:00", "filed_at": None, "erased_at": None,
}


class DocumentView(BaseModel):
    model_config = _examples(DOCUMENT_EXAMPLE)
    document_id: str
    kind: str = Field(description="handling_report, complaint_form, correspondence, inspection_report, "
                                  "customer_statement, photo, recording or other")
    title: str
    filename: str | None = None
    content_type: str
    size_bytes: int
    sha256: str
    added_by: str | None = None
    added_at: datetime
    filed_at: datetime | None = Field(None, description="when it was filed with the closed case")
    erased_at: datetime | None = Field(None, description="when it was erased with the customer's personal data "
                                                         "(its file, file name, title and checksum are gone)")


class DocumentContent(DocumentView):
    model_config = _examples(
        {**DOCUMENT_EXAMPLE, "kind": "handling_report", "title": "处理报告", "filename": "report.txt",
         "content_type": "text/plain", "size_bytes": 66, "content": "已更换左前刹车盘，客户试车确认异响消失。",
         "content_url": None},
        {**DOCUMENT_EXAMPLE, "content": None,
         "content_url": "/v1/complaints/0b8e4c1a-6f0e-5d7b-9a3c-2e1f4d6b8a90/documents/"
                        "6b1f7c1e-2b7d-4c51-9d3e-0f6a5d2c8e11/content"})
    content: str | None = Field(None, description="the text of a text document (null for photos, PDFs, recordings)")
    content_url: str | None = Field(None, description="where the bytes of a non-text document are")


class Breach(BaseModel):
    round: int
    breach: str = Field(description="acknowledge or resolve")
    deadline: datetime


class RoundView(BaseModel):
    round: int
    started_at: datetime
    ack_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    paused_seconds: float
    ack_breached: bool
    resolve_breached: bool
    level: int


class ScheduleStep(BaseModel):
    level: int
    level_name: str
    due_at: datetime
    breach: str


class SlaView(BaseModel):
    round: int = Field(description="0 for the first handling; +1 at each reopening")
    clock: str = Field(description="calendar (24 h a day) or working (the case's working calendar)")
    clock_started_at: datetime
    ack_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    paused: bool = Field(description="waiting for the customer: the clock is stopped")
    level: int = Field(description="the escalation level reached: 0 handler, 1 supervisor, 2 department head, 3 superior leader")
    level_name: str
    ack_breached: bool
    resolve_breached: bool
    next_due_at: datetime | None = None
    breaches: list[Breach]
    rounds: list[RoundView]
    escalation_schedule: list[ScheduleStep]


class TimelineEntry(BaseModel):
    seq: int
    kind: str = Field(description="filed, acknowledged, assigned, comment, pended, resumed, escalated, resolved, …")
    at: datetime = Field(description="when it happened (a step may be back-dated)")
    recorded_at: datetime
    actor: str | None = None
    detail: dict[str, Any]


class EscalationView(BaseModel):
    round: int
    level: int
    level_name: str
    role: str
    person: str | None = None
    breach: str
    deadline: datetime
    announced_at: datetime | None = None
    still_due: bool = Field(description="false when a back-dated step has since withdrawn it")


CASE_EXAMPLE: dict[str, Any] = {
    "complaint_id": "0b8e4c1a-6f0e-5d7b-9a3c-2e1f4d6b8a90", "complaint_ref": "CS-20261120-0042",
    "customer_id": "CUST-100234", "vin": "LSVNV2182E2100001", "channel": "hotline",
    "description": "保养后刹车异响，要求到店检查并说明原因", "category": "repair_quality", "category_source": "keywords",
    "severity": "medium", "severity_source": "keywords", "department": "after_sales_service", "part_category": None,
    "followup_id": None, "source": "http", "dealer_id": "D-GZ-001", "region": "华南", "state": "assigned",
    "assignee": "li.na", "resolution": None, "satisfied": None, "confirmation": None,
    "sla": {
        "round": 0, "clock": "calendar", "clock_started_at": "2026-11-20T09:30:00+08:00",
        "ack_due_at": "2026-11-20T13:30:00+08:00", "resolve_due_at": "2026-11-23T09:30:00+08:00", "paused": False,
        "level": 0, "level_name": "handler", "ack_breached": False, "resolve_breached": False,
        "next_due_at": "2026-11-23T09:30:00+08:00", "breaches": [],
        "rounds": [{"round": 0, "started_at": "2026-11-20T09:30:00+08:00", "ack_due_at": "2026-11-20T13:30:00+08:00",
                    "resolve_due_at": "2026-11-23T09:30:00+08:00", "acknowledged_at": "2026-11-20T09:41:00+08:00",
                    "resolved_at": None, "paused_seconds": 0.0, "ack_breached": False, "resolve_breached": False,
                    "level": 0}],
        "escalation_schedule": [{"level": 1, "level_name": "supervisor", "due_at": "2026-11-23T09:30:00+08:00",
                                 "breach": "resolve"}],
    },
    "timeline": [
        {"seq": 1, "kind": "filed", "at": "2026-11-20T09:30:00+08:00", "recorded_at": "2026-11-20T09:31:12+08:00",
         "actor": "wang.fang", "detail": {"channel": "hotline"}},
        {"seq": 2, "kind": "acknowledged", "at": "2026-11-20T09:41:00+08:00",
         "recorded_at": "2026-11-20T09:41:03+08:00", "actor": "wang.fang", "detail": {}},
        {"seq": 3, "kind": "assigned", "at": "2026-11-20T09:45:00+08:00", "recorded_at": "2026-11-20T09:45:02+08:00",
         "actor": "wang.fang", "detail": {"assignee": "li.na", "note": "请售后服务部跟进"}},
    ],
    "escalations": [],
    "documents": [DOCUMENT_EXAMPLE],
}


class CaseView(BaseModel):
    """A complaint case: its fields, the current SLA figures, the full timeline, escalations and
    documents. Its ETag (on GET and after each action) covers what is stored, not the SLA figures
    that move with the clock."""

    model_config = _examples(CASE_EXAMPLE)
    complaint_id: str
    complaint_ref: str
    customer_id: str | None = None
    vin: str | None = None
    channel: str
    description: str
    category: str
    category_source: str = Field(description="given (by the handler or the filing), keywords (classified from the "
                                             "description) or fallback")
    severity: str
    severity_source: str
    department: str = Field(description="the department the case is routed to")
    part_category: str | None = None
    followup_id: str | None = Field(None, description="the return-visit call it came from, if any")
    source: str = Field(description="http (filed here) or the topic of the event it came from")
    dealer_id: str | None = None
    region: str | None = None
    state: str = Field(description="opened, acknowledged, assigned, pending_customer, resolved, closed or reopened")
    assignee: str | None = None
    resolution: str | None = None
    satisfied: bool | None = None
    confirmation: str | None = None
    sla: SlaView
    timeline: list[TimelineEntry]
    escalations: list[EscalationView]
    documents: list[DocumentView]


CASE_ITEM_EXAMPLE: dict[str, Any] = {
    "complaint_id": "0b8e4c1a-6f0e-5d7b-9a3c-2e1f4d6b8a90", "complaint_ref": "CS-20261120-0042",
    "customer_id": "CUST-100234", "vin": "LSVNV2182E2100001", "channel": "hotline", "category": "repair_quality",
    "severity": "medium", "department": "after_sales_service", "state": "assigned", "round": 0, "assignee": "li.na",
    "level": 0, "filed_at": "2026-11-20T09:30:00+08:00", "ack_due_at": "2026-11-20T13:30:00+08:00",
    "resolve_due_at": "2026-11-23T09:30:00+08:00", "next_due_at": "2026-11-23T09:30:00+08:00", "breached": False,
    "part_category": None, "satisfied": None, "confirmation": None, "dealer_id": "D-GZ-001", "region": "华南",
    "updated_at": "2026-11-20T09:45:02+08:00", "due_at": "2026-11-23T09:30:00+08:00",
}


class CaseItem(BaseModel):
    """A case in a list (GET /v1/complaints/{complaint_id} has the rest)."""

    model_config = _examples(CASE_ITEM_EXAMPLE)
    complaint_id: str
    complaint_ref: str
    customer_id: str | None = None
    vin: str | None = None
    channel: str
    category: str
    severity: str
    department: str
    state: str
    round: int
    assignee: str | None = None
    level: int
    filed_at: datetime
    ack_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    next_due_at: datetime | None = None
    breached: bool
    part_category: str | None = None
    satisfied: bool | None = None
    confirmation: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    updated_at: datetime
    due_at: datetime | None = Field(None, description="the deadline the case waits on now (acknowledge while opened "
                                                      "or reopened, resolve while in hand; none once resolved)")


class CasePage(Page[CaseItem]):
    """A page of cases; follow `next_cursor` for the next."""

    model_config = _examples({"items": [CASE_ITEM_EXAMPLE], "next_cursor": "eyJzIjoiLWZpbGVkX2F0IiwiayI6WyIyMDI2LTEx"
                                                                          "LTIwVDAxOjMwOjAwKzAwOjAwIiwiMGI4ZSJdfQ",
                              "limit": 50})


# ---------------------------------------------------------------------------------------
# KPIs and reports


class OpenByLevel(BaseModel):
    handler: int
    supervisor: int
    department_head: int
    superior_leader: int


class BreachCounts(BaseModel):
    acknowledge: int
    resolve: int


class Kpis(BaseModel):
    model_config = _examples({
        "open_by_level": {"handler": 12, "supervisor": 3, "department_head": 1, "superior_leader": 0},
        "open": 16, "sla_breaches": {"acknowledge": 2, "resolve": 5}, "sla_compliance": 0.9412,
        "sla_compliance_percent": 94.12, "mean_seconds_to_acknowledge": 2710.5, "mean_seconds_to_resolve": 151200.0,
        "mean_working_seconds_to_acknowledge": 1980.0, "mean_working_seconds_to_resolve": 86400.0,
        "mean_working_hours_to_acknowledge": 0.55, "mean_working_hours_to_resolve": 24.0, "reopen_rate": 0.031,
        "escalations": 9, "cases": 214, "as_of": "2026-11-20T18:00:00+08:00"})
    open_by_level: OpenByLevel
    open: int
    sla_breaches: BreachCounts
    sla_compliance: float | None = None
    sla_compliance_percent: float | None = None
    mean_seconds_to_acknowledge: float | None = None
    mean_seconds_to_resolve: float | None = None
    mean_working_seconds_to_acknowledge: float | None = None
    mean_working_seconds_to_resolve: float | None = None
    mean_working_hours_to_acknowledge: float | None = None
    mean_working_hours_to_resolve: float | None = None
    reopen_rate: float | None = None
    escalations: int
    cases: int
    as_of: datetime


class StepCompliance(BaseModel):
    met: int
    breached: int
    compliance: float | None = None


class Compliance(BaseModel):
    due: int
    met: int
    breached: int
    compliance: float | None = Field(None, description="met / (met + breached); null when no step fell due")
    by_step: dict[str, StepCompliance]
    by_region: dict[str, StepCompliance]


class WeekCompliance(Compliance):
    week: str
    from_: datetime = Field(alias="from")
    to: datetime


class MonthCompliance(Compliance):
    month: str
    from_: datetime = Field(alias="from")
    to: datetime


_COMPLIANCE = {"due": 34, "met": 32, "breached": 2, "compliance": 0.9412,
               "by_step": {"acknowledge": {"met": 17, "breached": 0, "compliance": 1.0},
                           "resolve": {"met": 15, "breached": 2, "compliance": 0.8824}},
               "by_region": {"华南": {"met": 20, "breached": 1, "compliance": 0.9524},
                             "华东": {"met": 12, "breached": 1, "compliance": 0.9231}}}


class SlaComplianceReport(BaseModel):
    model_config = _examples({
        "timezone": "Asia/Shanghai", "region": None, "dealer": None, "department": None,
        "weeks": [{"week": "2026-W47", "from": "2026-11-16T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00",
                   **_COMPLIANCE}],
        "month": {"month": "2026-11", "from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00",
                  **_COMPLIANCE},
        "as_of": "2026-11-20T18:00:00+08:00"})
    timezone: str
    region: str | None = None
    dealer: str | None = None
    department: str | None = None
    weeks: list[WeekCompliance]
    month: MonthCompliance | None = None
    as_of: datetime


class StepOutcomeView(BaseModel):
    """An SLA step (acknowledge or resolve) of a case's round that fell due: met or breached."""

    model_config = _examples({
        "complaint_id": "0b8e4c1a-6f0e-5d7b-9a3c-2e1f4d6b8a90", "complaint_ref": "CS-20261120-0042", "round": 0,
        "step": "acknowledge", "due_at": "2026-11-20T13:30:00+08:00", "done_at": "2026-11-20T09:41:00+08:00",
        "outcome": "met", "department": "after_sales_service", "severity": "medium", "state": "assigned",
        "dealer_id": "D-GZ-001", "region": "华南"})
    complaint_id: str
    complaint_ref: str
    round: int
    step: str
    due_at: datetime
    done_at: datetime | None = None
    outcome: str
    department: str
    severity: str
    state: str
    dealer_id: str | None = None
    region: str | None = None


class StepPage(Page[StepOutcomeView]):
    model_config = _examples({"items": [{
        "complaint_id": "0b8e4c1a-6f0e-5d7b-9a3c-2e1f4d6b8a90", "complaint_ref": "CS-20261120-0042", "round": 0,
        "step": "resolve", "due_at": "2026-11-23T09:30:00+08:00", "done_at": None, "outcome": "breached",
        "department": "after_sales_service", "severity": "medium", "state": "assigned", "dealer_id": "D-GZ-001",
        "region": "华南"}], "next_cursor": None, "limit": 100})


class CategoryCounts(BaseModel):
    """How many complaints were filed in each category in a span (the monthly summary's comparison)."""

    model_config = _examples({
        "from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00",
        "counts": {"product_quality": 41, "service_attitude": 9, "repair_quality": 27, "parts_supply": 6,
                   "delay": 12, "price": 4, "other": 3}})
    from_: datetime = Field(alias="from")
    to: datetime
    counts: dict[str, int] = Field(description="every complaint category, 0 when none was filed")


# ---------------------------------------------------------------------------------------
# Rectification measures


class PeriodView(BaseModel):
    starts_at: datetime
    ends_at: datetime
    events: int
    visits: int
    rate_per_100_visits: float | None = None


class EffectView(BaseModel):
    before: PeriodView
    after: PeriodView
    confidence: float
    rate_ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    change: str = Field(description="decreased, increased, no_significant_change, not_enough_data or "
                                    "after_not_started")
    note: str


class Verification(BaseModel):
    verdict: str
    verified_by: str | None = None
    verified_at: datetime
    note: str | None = None


MEASURE_EXAMPLE: dict[str, Any] = {
    "measure_id": "3d6f1a2b-8c4e-5f70-9a1b-2c3d4e5f6a7b", "target_kind": "category", "category": "repair_quality",
    "alert_id": None, "title": "保养后刹车复检", "action": "每次保养后由班组长复检刹车系统并签字",
    "owner": "zhao.lei", "due_at": "2026-12-01T09:00:00+08:00", "recorded_at": "2026-11-10T15:20:00+08:00",
    "recorded_by": "chen.jing", "reminded_at": None, "status": "open", "verification": None,
    "effect": {"before": {"starts_at": "2026-10-11T15:20:00+08:00", "ends_at": "2026-11-10T15:20:00+08:00",
                          "events": 14, "visits": 1210, "rate_per_100_visits": 1.157},
               "after": {"starts_at": "2026-12-01T09:00:00+08:00", "ends_at": "2026-12-01T09:00:00+08:00",
                         "events": 0, "visits": 0, "rate_per_100_visits": None},
               "confidence": 0.95, "rate_ratio": None, "ci_low": None, "ci_high": None, "p_value": None,
               "change": "after_not_started",
               "note": "the after window starts at the due date; no figures after the measure yet"},
}


class MeasureView(BaseModel):
    """A rectification measure with its status and its measured effect. Its ETag covers the
    stored measure (not the effect, which grows with the after window)."""

    model_config = _examples(MEASURE_EXAMPLE)
    measure_id: str
    target_kind: str = Field(description="category (a complaint category) or alert (a quality alert)")
    category: str
    alert_id: str | None = None
    title: str
    action: str
    owner: str
    due_at: datetime
    recorded_at: datetime
    recorded_by: str
    reminded_at: datetime | None = None
    status: str = Field(description="open, due (within the reminder period), overdue or verified")
    verification: Verification | None = None
    effect: EffectView


class MeasurePage(Page[MeasureView]):
    model_config = _examples({"items": [MEASURE_EXAMPLE], "next_cursor": None, "limit": 50})


class MeasureCounts(BaseModel):
    open: int
    due: int
    overdue: int
    verified: int


class MeasureReport(BaseModel):
    """The measures' figures for a month (or all): how many in each status, and the rules their
    effect is measured with."""

    model_config = _examples({
        "month": "2026-11", "from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00",
        "as_of": "2026-11-20T18:00:00+08:00", "window_days": 30, "confidence": 0.95,
        "counts": {"open": 3, "due": 1, "overdue": 1, "verified": 4}})
    month: str | None = None
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    as_of: datetime
    window_days: int
    confidence: float
    counts: MeasureCounts
