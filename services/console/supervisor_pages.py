"""Supervisors' pages: the department's targets by week with the trend against the weeks before
(warranty return-visit rate, satisfaction, complaint SLA compliance, parts-shipment accuracy),
for all or one region or dealer; the agents' workload (calls due in the next 7 days against what
the agents can make); the weekly and monthly reports, each also as CSV and XLSX with the same
figures as on the screen (one list of rows makes all three)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from shared.db import acquire
from shared.http import runtime_of

from services.console.clients import Person, ServiceError
from services.console.i18n import DISPLAY_ZONE, N_
from services.console.pages import Refused, audit, render, role, services
from services.console.quality_pages import iso_week, last_weeks, translator

TARGETS = {"warranty_return_visit_rate": 1.0, "satisfaction_rate": 0.98, "complaint_sla_compliance": None,
           "parts_accuracy": 0.98}
FORMATS = ("html", "csv", "xlsx")


def week_bounds(week: str) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00 in Shanghai; ValueError for a malformed week."""
    year, number = week.split("-W")
    start = datetime.combine(date.fromisocalendar(int(year), int(number), 1), time(0), DISPLAY_ZONE)
    return start, start + timedelta(days=7)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    year, number = (int(p) for p in month.split("-"))
    start = datetime(year, number, 1, tzinfo=DISPLAY_ZONE)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=DISPLAY_ZONE)
    return start, end


def trend(values: list[float | None]) -> float | None:
    """The last figure against the one before it (None when either is missing)."""
    if len(values) < 2 or values[-1] is None or values[-2] is None:
        return None
    return values[-1] - values[-2]


def to_csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM lets Excel read the Chinese


def to_xlsx(title: str, header: list[str], rows: list[list[Any]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    for column in sheet.columns:
        sheet.column_dimensions[column[0].column_letter].width = max(10, min(40, max(
            len(str(c.value or "")) for c in column) + 2))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def exported(name: str, fmt: str, header: list[str], rows: list[list[Any]]) -> Response:
    if fmt == "csv":
        return Response(to_csv(header, rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return Response(to_xlsx(name, header, rows),
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    async def followup_kpis(request: Request, person: Person, start: datetime, end: datetime, region: str,
                            dealer: str) -> dict[str, Any]:
        params = {"from": start.isoformat(), "to": end.isoformat()}
        if region:
            params["region"] = region
        if dealer:
            params["dealer"] = dealer
        answer: dict[str, Any] = await services(request).call(person, "GET", "followup", "/v1/kpis", params=params)
        return answer

    async def parts_week(request: Request, person: Person, week: str) -> dict[str, Any]:
        answer = await services(request).call(person, "GET", "quality", "/v1/reports/weekly", params={"week": week})
        return dict(answer["parts_accuracy"])

    @r.get("/supervisor/dashboard")
    async def dashboard(request: Request, region: str = "", dealer: str = "", format: str = "html",
                        person: Person = Depends(role("supervisor"))) -> Response:
        region, dealer = region.strip()[:60], dealer.strip()[:60]
        now = runtime_of(request).clock.now()
        weeks = [*last_weeks(now, 4), iso_week(now)]
        figures: dict[str, list[float | None]] = {k: [] for k in TARGETS}
        problem = None
        by_dealer: dict[str, list[float | None]] = {}  # parts accuracy per dealer and week
        try:
            for index, week in enumerate(weeks):
                start, end = week_bounds(week)
                k = await followup_kpis(request, person, start, end, region, dealer)
                figures["warranty_return_visit_rate"].append(k["warranty_return_visit_rate"])
                figures["satisfaction_rate"].append(k["satisfaction_rate"])
                parts = await parts_week(request, person, week)
                for d in parts["by_dealer"]:
                    by_dealer.setdefault(d["dealer_id"], [None] * len(weeks))[index] = d["accuracy"]
                if dealer:
                    row = next((d for d in parts["by_dealer"] if d["dealer_id"] == dealer), None)
                    figures["parts_accuracy"].append(row["accuracy"] if row else None)
                else:
                    figures["parts_accuracy"].append(parts["accuracy"])
            complaints = await services(request).call(person, "GET", "complaints", "/v1/kpis")
            compliance = _compliance(complaints)
            figures["complaint_sla_compliance"] = [None] * (len(weeks) - 1) + [compliance]
        except ServiceError as exc:
            problem = exc.message
        rows = [{"name": name, "values": values, "target": TARGETS[name], "trend": trend(values)}
                for name, values in figures.items()]
        workload = await _workload(request, now)
        dealers = [{"dealer_id": d, "values": v, "trend": trend(v)} for d, v in sorted(by_dealer.items())
                   if not dealer or d == dealer]
        if format in ("csv", "xlsx"):
            gettext = translator(request, person)
            label = {"warranty_return_visit_rate": gettext("warranty return-visit rate"),
                     "satisfaction_rate": gettext("satisfaction"),
                     "complaint_sla_compliance": gettext("complaint SLA compliance"),
                     "parts_accuracy": gettext("parts-shipment accuracy")}
            table = [[label[r["name"]], r["target"], *r["values"]] for r in rows]
            table += [[f'{gettext("parts-shipment accuracy")} · {d["dealer_id"]}', TARGETS["parts_accuracy"],
                       *d["values"]] for d in dealers]
            table += [[gettext("Calls due"), d["day"].isoformat(), d["due"], d["load"], d["capacity"], d["short"]]
                      for d in workload["days"]]
            await audit(request, person, "read_report", subject="dashboard", format=format)
            return exported("aftersales-targets", format, [gettext("Figure"), gettext("Target"), *weeks], table)
        return render(request, "dashboard.html", person, weeks=weeks, rows=rows, region=region, dealer=dealer,
                      problem=problem, workload=workload, dealers=dealers)

    async def _workload(request: Request, now: datetime) -> dict[str, Any]:
        """Calls due each of the next 7 days (the console's read model of the follow-ups) against
        what the agents can make (agents x calls per agent per day)."""
        runtime = runtime_of(request)
        assert runtime.pool is not None
        per_agent = runtime.deps.rules.calls_per_agent_per_day
        today = now.astimezone(DISPLAY_ZONE).date()
        async with acquire(runtime.pool) as conn:
            agents = int(await conn.fetchval("SELECT count(*) FROM accounts WHERE role = 'agent'"))
            backlog = int(await conn.fetchval(
                "SELECT count(*) FROM followups WHERE status IN ('due', 'overdue', 'escalated') AND due_by < $1",
                datetime.combine(today, time(0), DISPLAY_ZONE)))
            rows = await conn.fetch(
                """SELECT (due_by AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*) AS calls FROM followups
                    WHERE status IN ('scheduled', 'due', 'overdue', 'escalated') AND due_by >= $1 AND due_by < $2
                    GROUP BY 1""",
                datetime.combine(today, time(0), DISPLAY_ZONE),
                datetime.combine(today + timedelta(days=7), time(0), DISPLAY_ZONE))
        due = {r["day"]: int(r["calls"]) for r in rows}
        capacity = agents * per_agent
        days, carried = [], backlog
        for offset in range(7):
            day = today + timedelta(days=offset)
            load = due.get(day, 0) + carried
            carried = max(0, load - capacity)
            days.append({"day": day, "due": due.get(day, 0), "load": load, "capacity": capacity,
                         "short": carried})
        return {"agents": agents, "per_agent": per_agent, "backlog": backlog, "days": days}

    @r.get("/supervisor/calls")
    async def calls_behind(request: Request, week: str = "", region: str = "", dealer: str = "",
                           format: str = "html", person: Person = Depends(role("supervisor"))) -> Response:
        """The calls behind a week's return-visit figures (the console's read model), for a region
        or dealer: who was called, by whom, what came of it."""
        now = runtime_of(request).clock.now()
        week = week or iso_week(now)
        try:
            start, end = week_bounds(week)
        except (ValueError, TypeError):
            raise Refused(N_("Write the week like 2026-W47 and the month like 2026-11."), status=422) from None
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await conn.fetch(
                """SELECT c.attempted_at, c.customer_id, cu.name, c.kind, c.outcome, c.satisfaction, c.agent_id,
                          f.dealer_id, f.region, f.vin
                     FROM calls c JOIN followups f ON f.followup_id = c.followup_id
                     LEFT JOIN customers cu ON cu.customer_id = c.customer_id
                    WHERE c.attempted_at >= $1 AND c.attempted_at < $2
                      AND ($3 = '' OR f.region = $3) AND ($4 = '' OR f.dealer_id = $4)
                    ORDER BY c.attempted_at DESC LIMIT 1000""", start, end, region.strip(), dealer.strip())
        calls = [dict(r) for r in rows]
        await audit(request, person, "read_report", subject=f"calls:{week}", format=format)
        if format in ("csv", "xlsx"):
            gettext = translator(request, person)
            header = [gettext("When"), gettext("Customer"), gettext("Kind"), gettext("Outcome"), gettext("Score"),
                      gettext("Agent"), gettext("Dealer"), gettext("Region"), "VIN"]
            table = [[c["attempted_at"].isoformat(), c["name"] or c["customer_id"], c["kind"], c["outcome"],
                      c["satisfaction"], c["agent_id"], c["dealer_id"], c["region"], c["vin"]] for c in calls]
            return exported(f"aftersales-calls-{week}", format, header, table)
        return render(request, "calls.html", person, calls=calls, week=week, region=region, dealer=dealer)

    async def report_rows(request: Request, person: Person, kind: str, period: str
                          ) -> tuple[list[str], list[list[Any]]]:
        """The report's rows: what the page, the CSV and the XLSX all show."""
        gettext = translator(request, person)
        try:
            start, end = week_bounds(period) if kind == "weekly" else month_bounds(period)
        except (ValueError, TypeError):
            raise Refused(N_("Write the week like 2026-W47 and the month like 2026-11."), status=422) from None
        header = [gettext("Section"), gettext("Group"), gettext("Figure"), gettext("Count"), gettext("Out of"), gettext("Rate")]
        rows: list[list[Any]] = []
        try:
            k = await followup_kpis(request, person, start, end, "", "")
            rows.append([gettext("Return visits"), gettext("all"), gettext("warranty return-visit rate"), k["warranty_visited"],
                         k["warranty_pickups"], k["warranty_return_visit_rate"]])
            rows.append([gettext("Return visits"), gettext("all"), gettext("satisfaction"), k["satisfied_calls"], k["scored_calls"],
                         k["satisfaction_rate"]])
            for agent, calls in sorted(k.get("calls_per_agent", {}).items()):
                rows.append([gettext("Agents"), agent, gettext("calls reached"), calls["reached"], calls["calls"],
                             calls["reached"] / calls["calls"] if calls["calls"] else None])
            complaints = await services(request).call(person, "GET", "complaints", "/v1/kpis")
            rows.append([gettext("Complaints"), gettext("all"), gettext("complaint SLA compliance"),
                         complaints.get("resolved_within_sla"), complaints.get("resolved_rounds"),
                         _compliance(complaints)])
            if kind == "weekly":
                parts = await parts_week(request, person, period)
                rows.append([gettext("Parts"), gettext("all"), gettext("parts-shipment accuracy"),
                             parts["lines"] - parts["discrepant_lines"], parts["lines"], parts["accuracy"]])
                for d in parts["by_dealer"]:
                    rows.append([gettext("Parts"), d["dealer_id"], gettext("parts-shipment accuracy"),
                                 d["lines"] - d["discrepant_lines"], d["lines"], d["accuracy"]])
        except ServiceError as exc:
            raise Refused(exc.message, status=502) from None
        return header, rows

    @r.get("/supervisor/reports/{kind}")
    async def report(request: Request, kind: str, period: str = "", format: str = "html",
                     person: Person = Depends(role("supervisor"))) -> Response:
        if kind not in ("weekly", "monthly") or format not in FORMATS:
            raise Refused(N_("No such report."), status=404)
        now = runtime_of(request).clock.now()
        if not period:
            period = last_weeks(now, 1)[0] if kind == "weekly" else \
                (now.astimezone(DISPLAY_ZONE).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        header, rows = await report_rows(request, person, kind, period)
        await audit(request, person, "read_report", subject=f"{kind}:{period}", format=format)
        if format != "html":
            return exported(f"aftersales-{kind}-{period}", format, header, rows)
        return render(request, "report.html", person, kind=kind, period=period, header=header, rows=rows)

    return r


def _compliance(kpis: dict[str, Any]) -> float | None:
    for key in ("sla_compliance", "resolve_sla_compliance", "compliance"):
        if isinstance(kpis.get(key), int | float):
            return float(kpis[key])
    resolved, within = kpis.get("resolved_rounds"), kpis.get("resolved_within_sla")
    return within / resolved if resolved else None
