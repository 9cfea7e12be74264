"""The monthly work summary handed to the notifier to be mailed (issue 16): a supervisor issues
the month's summary (the console assembles it from the services' figures and posts it here); the
notifier records it as MonthlyWorkSummary on its own topic, and its rule table mails it
(rules `monthly_work_summary*`, templates `monthly_work_summary.email.j2`). Issuing the same
month again with the same figures is the same event (nothing mailed twice); changed figures
are a new issue, mailed again."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.events import canonical as c
from shared.http import Principal, require, runtime_of

MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
MAX_COUNT = 10**9  # a month's calls, cases or lines: far below, and within the 64 bits the event's JSON carries
Category = Literal["product_quality", "service_attitude", "repair_quality", "parts_supply", "delay", "price", "other"]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["warranty_return_visit_rate", "reach_rate", "satisfaction_rate", "feedback_answered_in_time",
                  "complaint_sla_compliance", "parts_accuracy"]
    value: float | None = Field(None, ge=0, le=1)
    target: float | None = Field(None, ge=0, le=1)
    met: bool | None = None
    count: int | None = Field(None, ge=0, le=MAX_COUNT)
    out_of: int | None = Field(None, ge=0, le=MAX_COUNT)


class CategoryRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Category
    count: int = Field(ge=0, le=MAX_COUNT)
    before: int = Field(ge=0, le=MAX_COUNT)
    change: int = Field(ge=-MAX_COUNT, le=MAX_COUNT)
    share: float | None = Field(None, ge=0, le=1)


class MeasureRow(BaseModel):
    model_config = ConfigDict(extra="ignore")
    measure_id: str | None = Field(None, max_length=100)
    category: str | None = Field(None, max_length=100)
    alert_id: str | None = Field(None, max_length=100)
    action: str = Field("", max_length=2000)
    owner: str | None = Field(None, max_length=100)
    due_at: str | None = Field(None, max_length=40)
    status: str | None = Field(None, max_length=40)
    before: float | None = Field(None, allow_inf_nan=False)
    after: float | None = Field(None, allow_inf_nan=False)
    change: str | None = Field(None, max_length=40)


class MonthlySummaryIn(BaseModel):
    """The summary as the console assembles it (services/console/report_pages.monthly_summary)."""

    model_config = ConfigDict(extra="ignore")
    month: str = Field(pattern=MONTH, description="2026-11")
    targets: list[Target] = Field(max_length=20)
    categories: list[CategoryRow] = Field(max_length=20)
    measures: list[MeasureRow] | None = Field(None, max_length=200, description="None: complaints lists no measures")
    complaints: int = Field(ge=0, le=MAX_COUNT)
    complaints_before: int = Field(ge=0, le=MAX_COUNT)


class SummaryIssued(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "month": "2026-11", "event_id": "6d1f0c2e-9a3b-5c4d-8e7f-1a2b3c4d5e6f", "issued_by": "liu.yang"}]})
    month: str
    event_id: uuid.UUID = Field(description="the MonthlyWorkSummary: the same month with the same figures is the "
                                            "same event (mailed once)")
    issued_by: str


def summary_router() -> APIRouter:
    r = APIRouter(tags=["reports"])

    @r.post("/v1/reports/monthly-summary", status_code=202, response_model=SummaryIssued,
            summary="Issue the month's work summary: the notifier mails it to customer service and the superior "
                    "leader (MonthlyWorkSummary)")
    async def issue(request: Request, body: MonthlySummaryIn,
                    who: Principal = require("supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        figures = body.model_dump(exclude={"month"})
        # the same month with the same figures is one issue: the event id follows from them
        digest = hashlib.sha256(orjson.dumps(figures, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"aftersales:monthly-work-summary:{body.month}:{digest}")
        try:
            async with runtime.transaction() as uow:
                uow.publish("MonthlyWorkSummary", c.MonthlyWorkSummary(
                    month=body.month, issued_at=uow.now(), issued_by=who.subject, figures=figures),
                    cause=None, event_id=event_id)
        except asyncpg.UniqueViolationError:
            pass  # the same issue still waiting in the outbox: it is on its way already
        return {"month": body.month, "event_id": str(event_id), "issued_by": who.subject}

    return r


__all__ = ["MonthlySummaryIn", "SummaryIssued", "summary_router"]
