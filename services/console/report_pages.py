"""Reports people read (issue 16), for supervisors, each as a page (zh-CN first, en), CSV and XLSX
built from one list of rows:

- the weekly return-visit report (/reports/return-visits): the follow-up service's weekly report
  (headline rates, the change from last week and from the 4 weeks before, the customers' own
  words with what was done, by department), all departments or one;
- the monthly work summary (/reports/monthly-summary; POST …/send issues it to the notifier, which
  mails it to customer service and the superior leader): the targets against the month's results
  (followup, complaints, quality), the complaint categories of the month against the month before
  (most first), and the rectification measures with their effect (complaints'
  `GET /v1/measures?month=`; a service without it leaves the section saying so).

Months and weeks are Asia/Shanghai's, from the project's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from services.console.clients import Person, ServiceError
from services.console.i18n import DISPLAY_ZONE, LABELS, N_
from services.console.pages import Refused, audit, form_of, render, role, services
from services.console.quality_pages import iso_week, last_weeks, translator
from services.console.supervisor_pages import FORMATS, TARGETS, exported, month_bounds, week_bounds
from shared.events.types import ComplaintCategory
from shared.http import runtime_of

CATEGORIES: tuple[str, ...] = ComplaintCategory.__args__  # type: ignore[attr-defined]
HEADLINE = {"calls_due": N_("calls due"), "reached": N_("reached"), "reach_rate": N_("reach rate"),
            "satisfaction_rate": N_("satisfaction"), "average_score": N_("average score"),
            "dissatisfied": N_("dissatisfied customers")}
RATES = ("reach_rate", "satisfaction_rate")
DONE = {"answered_on_call": N_("answered on the call"), "answered": N_("solution told to the customer"),
        "confirmed": N_("the customer confirmed it was solved"), "complaint": N_("handled as a complaint case"),
        "escalated": N_("not answered in time, escalated to the supervisor"), "open": N_("in hand")}
MEASURE_STATUS = {"open": N_("in progress"), "due": N_("due soon"), "overdue": N_("overdue"),
                  "verified": N_("verified")}
MEASURE_CHANGE = {"decreased": N_("rate decreased"), "increased": N_("rate increased"),
                  "no_significant_change": N_("no significant change"), "not_enough_data": N_("not enough data"),
                  "after_not_started": N_("not in place yet")}
# The month's targets (the console's configured targets) and the figures measured against them.
MONTHLY = {"warranty_return_visit_rate": N_("warranty return-visit rate"), "reach_rate": N_("return-visit reach rate"),
           "satisfaction_rate": N_("satisfaction"), "feedback_answered_in_time": N_("concerns answered in time"),
           "complaint_sla_compliance": N_("complaint SLA compliance"),
           "parts_accuracy": N_("parts-shipment accuracy")}
MONTHLY_TARGETS: dict[str, float | None] = {**TARGETS, "reach_rate": None, "feedback_answered_in_time": None}


def previous_month(month: str) -> str:
    start, _ = month_bounds(month)
    return (start - timedelta(days=1)).strftime("%Y-%m")


def met(value: float | None, target: float | None) -> bool | None:
    return None if value is None or target is None else value >= target - 1e-9


def category_rows(this: dict[str, int], before: dict[str, int]) -> list[dict[str, Any]]:
    """The categories with complaints this month or last, most this month first: count, last
    month's, the change and the share of the month's complaints."""
    total = sum(this.values())
    rows = [{"category": c, "count": this.get(c, 0), "before": before.get(c, 0),
             "change": this.get(c, 0) - before.get(c, 0), "share": this.get(c, 0) / total if total else None}
            for c in CATEGORIES if this.get(c) or before.get(c)]
    return sorted(rows, key=lambda r: (-r["count"], -r["before"], r["category"]))


def measure_view(m: dict[str, Any]) -> dict[str, Any]:
    """A measure as complaints' API gives it, reduced to what the summary shows."""
    effect = m.get("effect") or {}

    def rate(side: str) -> float | None:
        found = (effect.get(side) or {}).get("rate_per_100_visits")
        return float(found) if found is not None else None

    return {"measure_id": m.get("measure_id"), "category": m.get("category"), "alert_id": m.get("alert_id"),
            "action": next((m[k] for k in ("action", "title", "description", "measure") if m.get(k)), ""),
            "owner": m.get("owner"), "due_at": m.get("due_at"), "status": m.get("status"),
            "before": rate("before"), "after": rate("after"), "change": effect.get("change")}


def measure_item(say: Any, m: dict[str, Any]) -> str:
    """What a measure answers (the category's word, or the alert) and what it does."""
    answers = say(LABELS["category"][m["category"]]) if m["category"] in LABELS["category"] else \
        (m["category"] or m["alert_id"] or "")
    return f'{answers} · {m["action"]}' if answers else str(m["action"])


# GET service path params -> the answer's JSON; `missing_ok`: None when the service has no such route.
MEASURE_PAGES = 10  # the month's measures: at most this many pages of 200
Fetch = Callable[..., Awaitable[Any]]


async def monthly_summary(fetch: Fetch, month: str) -> dict[str, Any]:
    """The month's work summary from the services' APIs (the console's pages, the demo): targets
    against results, the complaint categories against the month before, the measures (None when
    complaints lists none)."""
    start, end = month_bounds(month)
    before_start, before_end = month_bounds(previous_month(month))
    span = {"from": start.isoformat(), "to": end.isoformat()}

    async def complaints_by_category(since: datetime, until: datetime) -> dict[str, int]:
        answer = await fetch("complaints", "/v1/reports/categories", {"from": since.isoformat(),
                                                                      "to": until.isoformat()})
        return {c: int(answer["counts"].get(c, 0)) for c in CATEGORIES}

    async def month_measures() -> list[dict[str, Any]] | None:
        """The month's measures, page by page (None when complaints has no measures)."""
        found: list[dict[str, Any]] = []
        cursor = None
        for _ in range(MEASURE_PAGES):
            answer = await fetch("complaints", "/v1/measures", {"month": month, "limit": 200,
                                                                **({"cursor": cursor} if cursor else {})},
                                 missing_ok=True)
            if answer is None:
                return None
            found += answer["items"]
            cursor = answer.get("next_cursor")
            if not cursor:
                break
        return found

    kpis, visits, concerns, sla, quality, this, before, listed = await asyncio.gather(
        fetch("followup", "/v1/kpis", span),
        fetch("followup", "/v1/reports/return-visits", span),
        fetch("followup", "/v1/feedback-items/figures", span),
        fetch("complaints", "/v1/reports/sla-compliance",
              {"until": iso_week(end - timedelta(seconds=1)), "weeks": 1, "month": month}),
        fetch("quality", "/v1/reports/monthly", {"month": month}),
        complaints_by_category(start, end),
        complaints_by_category(before_start, before_end),
        month_measures())
    parts = quality["parts_accuracy"]
    results = {
        "warranty_return_visit_rate": (kpis["warranty_return_visit_rate"], kpis["warranty_visited"],
                                       kpis["warranty_pickups"]),
        "reach_rate": (visits["reach_rate"], visits["reached"], visits["calls_due"]),
        "satisfaction_rate": (kpis["satisfaction_rate"], kpis["satisfied_calls"], kpis["scored_calls"]),
        "feedback_answered_in_time": (concerns["answered_in_time_rate"], concerns["answered_in_time"],
                                      concerns["answered_in_time"] + concerns["answered_late"]),
        "complaint_sla_compliance": (sla["month"]["compliance"], sla["month"]["met"], sla["month"]["due"]),
        "parts_accuracy": (parts["accuracy"], parts["lines"] - parts["discrepant_lines"], parts["lines"]),
    }
    targets = [{"name": n, "value": v, "count": k, "out_of": o, "target": MONTHLY_TARGETS.get(n),
                "met": met(v, MONTHLY_TARGETS.get(n))} for n, (v, k, o) in results.items()]
    measures = None if listed is None else [measure_view(m) for m in listed]
    return {"month": month, "targets": targets, "categories": category_rows(this, before), "measures": measures,
            "complaints": sum(this.values()), "complaints_before": sum(before.values())}


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    def chosen_week(request: Request, week: str) -> str:
        week = week.strip() or last_weeks(runtime_of(request).clock.now(), 1)[0]
        try:
            start, _ = week_bounds(week)
        except (ValueError, TypeError):
            raise Refused(N_("Write the week like 2026-W47 and the month like 2026-11."), status=422) from None
        return iso_week(start)

    def chosen_month(request: Request, month: str) -> str:
        month = month.strip() or (runtime_of(request).clock.now().astimezone(DISPLAY_ZONE).replace(day=1)
                                  - timedelta(days=1)).strftime("%Y-%m")
        try:
            start, _ = month_bounds(month)
        except (ValueError, TypeError):
            raise Refused(N_("Write the week like 2026-W47 and the month like 2026-11."), status=422) from None
        return start.strftime("%Y-%m")

    @r.get("/reports/return-visits")
    async def return_visits(request: Request, week: str = "", department: str = "", format: str = "html",
                            person: Person = Depends(role("supervisor", "department"))) -> Response:
        """A supervisor reads all departments or one; a department person its own part only
        (followup gives it nothing else)."""
        if format not in FORMATS:
            raise Refused(N_("No such report."), status=404)
        if person.role == "department":
            if department not in ("", person.department):
                raise Refused(N_("A department reads its own part of the report only."))
            department = person.department or ""
        week = chosen_week(request, week)
        try:
            report = await services(request).call(person, "GET", "followup", "/v1/reports/weekly",
                                                  params={"week": week})
        except ServiceError as exc:
            if exc.status == 404:
                raise Refused(N_("There is no return-visit report for %(week)s: reports are made on Mondays for "
                                 "the week before."), status=404, week=week) from None
            raise Refused(exc.message, status=502) from None
        figures = report["figures"]
        if "headline" not in figures:
            raise Refused(N_("There is no return-visit report for %(week)s: reports are made on Mondays for "
                             "the week before."), status=404, week=week)
        voices = figures["voices"]
        if department and department not in voices:
            raise Refused(N_("No such department."), status=422)
        shown = {department: voices[department]} if department else voices
        gettext = say = translator(request, person)  # say: a text looked up, not written here
        headline = [{"name": n, "label": say(HEADLINE[n]), "value": figures["headline"][n], "rate": n in RATES,
                     "week": figures["trend"][n]["change_from_last_week"],
                     "average": figures["trend"][n]["change_from_average"]} for n in HEADLINE]
        await audit(request, person, "read_report", subject=f"return-visits:{week}", format=format)
        if format != "html":
            section, words = gettext("Headline"), gettext("The customers' own words")
            dept = {d: say(LABELS["department"].get(d, d)) for d in voices}
            header = [gettext("Section"), gettext("Department"), gettext("Figure"), gettext("This week"),
                      gettext("Change from last week"), gettext("Change from the 4 weeks' average"),
                      gettext("Customer"), gettext("Dealer"), gettext("Category"), gettext("Score"),
                      gettext("In the customer's words"), gettext("What was done"), gettext("Answer"),
                      gettext("Complaint")]
            rows: list[list[Any]] = [[section, gettext("all"), h["label"], h["value"], h["week"], h["average"],
                                      *[None] * 8] for h in headline]
            for d, part in shown.items():
                rows += [[words, dept[d], None, None, None, None, i["customer_id"], i["dealer_id"],
                          say(LABELS["category"].get(i["category"] or "", "")) if i["category"] else None,
                          i["satisfaction"], i["requests"], say(DONE[i["done"]]), i["answer"], i["complaint_ref"]]
                         for i in part["items"]]
            name = f"aftersales-return-visits-{week}" + (f"-{department}" if department else "")
            return exported(name, format, header, rows)
        return render(request, "return_visits.html", person, week=week, department=department, headline=headline,
                      own_part=person.role == "department",
                      previous=figures["trend"]["previous_weeks"], voices=shown, departments=list(voices),
                      done={k: say(v) for k, v in DONE.items()})

    async def summary(request: Request, person: Person, month: str) -> dict[str, Any]:
        async def fetch(service: str, path: str, params: dict[str, Any], missing_ok: bool = False) -> Any:
            try:
                return await services(request).call(person, "GET", service, path, params=params)
            except ServiceError as exc:
                if missing_ok and exc.status in (404, 405):
                    return None
                raise
        try:
            return await monthly_summary(fetch, month)
        except ServiceError as exc:
            raise Refused(exc.message, status=502) from None

    @r.post("/reports/monthly-summary/send")
    async def send_monthly_summary(request: Request, person: Person = Depends(role("supervisor"))) -> Response:
        """Issue the month's summary to the notifier, which mails it to customer service and the
        superior leader (the same figures issued twice are mailed once)."""
        form = await form_of(request, person)
        month = chosen_month(request, form.get("month", ""))
        found = await summary(request, person, month)
        try:
            await services(request).call(person, "POST", "notifier", "/v1/reports/monthly-summary", json=found,
                                         ok=(202,))
        except ServiceError as exc:
            raise Refused(exc.message, status=502) from None
        await audit(request, person, "send_report", subject=f"monthly-summary:{month}")
        return RedirectResponse(f"/reports/monthly-summary?month={month}&sent=1", status_code=303)

    @r.get("/reports/monthly-summary")
    async def monthly_summary_page(request: Request, month: str = "", format: str = "html", sent: str = "",
                                   person: Person = Depends(role("supervisor"))) -> Response:
        if format not in FORMATS:
            raise Refused(N_("No such report."), status=404)
        month = chosen_month(request, month)
        found = await summary(request, person, month)
        gettext = say = translator(request, person)  # say: a text looked up, not written here
        await audit(request, person, "read_report", subject=f"monthly-summary:{month}", format=format)
        yes_no = {True: gettext("met"), False: gettext("missed"), None: None}
        if format != "html":
            header = [gettext("Section"), gettext("Item"), gettext("Result"), gettext("Target"), gettext("Met"),
                      gettext("Count"), gettext("Out of"), gettext("Last month"), gettext("Change"),
                      gettext("Responsible person"), gettext("Due"), gettext("Status"), gettext("Rate before (per 100 visits)"),
                      gettext("Rate after (per 100 visits)")]
            rows: list[list[Any]] = [
                [gettext("Targets against results"), say(MONTHLY[t["name"]]), t["value"], t["target"],
                 yes_no[t["met"]], t["count"], t["out_of"], None, None, None, None, None, None, None]
                for t in found["targets"]]
            rows += [[gettext("Complaint categories"), say(LABELS["category"][c["category"]]), c["share"], None,
                      None, c["count"], found["complaints"], c["before"], c["change"], None, None, None, None, None]
                     for c in found["categories"]]
            rows += [[gettext("Measures and their effect"), measure_item(gettext, m),
                      say(MEASURE_CHANGE[m["change"]]) if m["change"] in MEASURE_CHANGE else None,
                      None, None, None, None, None, None, m["owner"], (m["due_at"] or "")[:10] or None,
                      say(MEASURE_STATUS[m["status"]]) if m["status"] in MEASURE_STATUS else m["status"],
                      m["before"], m["after"]]
                     for m in found["measures"] or []]
            return exported(f"aftersales-monthly-summary-{month}", format, header, rows)
        return render(request, "monthly_summary.html", person, **found, sent=bool(sent),
                      labels={k: say(v) for k, v in MONTHLY.items()}, yes_no=yes_no,
                      change_labels={k: say(v) for k, v in MEASURE_CHANGE.items()},
                      status_labels={k: say(v) for k, v in MEASURE_STATUS.items()})

    return r


__all__ = ["category_rows", "measure_view", "met", "monthly_summary", "previous_month", "router"]
