"""Supervisors' pages: the department's targets by week with the trend against the weeks before
(warranty return-visit rate, satisfaction, complaint SLA compliance, parts-shipment accuracy),
for all or one region or dealer; the agents' workload (calls due in the next 7 days against what
the agents can make); the weekly and monthly reports, each also as CSV and XLSX with the same
figures as on the screen (one list of rows makes all three)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.console import charts
from services.console.clients import Person, ServiceError
from services.console.i18n import DISPLAY_ZONE, N_
from services.console.pages import Refused, audit, render, role, services
from services.console.quality_pages import iso_week, last_weeks, translator
from shared.db import acquire
from shared.http import runtime_of
from shared.timeutil import month_span

TARGETS = {"warranty_return_visit_rate": 1.0, "satisfaction_rate": 0.98, "complaint_sla_compliance": None,
           "parts_accuracy": 0.98}
FORMATS = ("html", "csv", "xlsx")


def week_bounds(week: str) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00 in Shanghai; ValueError for a malformed week."""
    year, number = week.split("-W")
    start = datetime.combine(date.fromisocalendar(int(year), int(number), 1), time(0), DISPLAY_ZONE)
    return start, start + timedelta(days=7)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's in Shanghai; ValueError for a malformed month."""
    return month_span(month, DISPLAY_ZONE.key)


def week_before(week: str) -> str:
    start, _ = week_bounds(week)
    return iso_week(start - timedelta(days=7))


def link(path: str, **params: Any) -> str:
    """A page's address with the non-empty parameters."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def target_labels(gettext: Any) -> dict[str, str]:
    return {"warranty_return_visit_rate": gettext("warranty return-visit rate"),
            "satisfaction_rate": gettext("satisfaction"),
            "complaint_sla_compliance": gettext("complaint SLA compliance"),
            "parts_accuracy": gettext("parts-shipment accuracy")}


def drill_down(name: str, week: str, region: str, dealer: str) -> str:
    """Where a target's figure of a week leads: the calls, the scored calls, the complaint cases
    whose SLA steps fell due that week, or the week's shipments by dealer."""
    if name == "warranty_return_visit_rate":
        return link("/supervisor/calls", week=week, region=region, dealer=dealer)
    if name == "satisfaction_rate":
        return link("/supervisor/calls", week=week, region=region, dealer=dealer, scored=1)
    if name == "complaint_sla_compliance":
        return link("/supervisor/sla-cases", week=week, region=region, dealer=dealer)
    return link("/supervisor/parts", week=week, region=region, dealer=dealer)


def region_of_dealers(rows: list[Any]) -> dict[str, str]:
    """Each dealer's region: the one most of its vehicles are in (the console's read model)."""
    best: dict[str, tuple[int, str]] = {}
    for r in rows:
        if r["dealer_id"] and r["region"] and (r["dealer_id"] not in best or r["n"] > best[r["dealer_id"]][0]):
            best[r["dealer_id"]] = (int(r["n"]), r["region"])
    return {dealer: region for dealer, (_, region) in best.items()}


def parts_by_region(parts: dict[str, Any], regions: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A week's shipped and discrepant lines summed over each region's dealers."""
    out: dict[str, dict[str, Any]] = {}
    for d in parts["by_dealer"]:
        t = out.setdefault(regions.get(d["dealer_id"], ""), {"lines": 0, "discrepant_lines": 0})
        t["lines"] += d["lines"]
        t["discrepant_lines"] += d["discrepant_lines"]
    for t in out.values():
        t["accuracy"] = (t["lines"] - t["discrepant_lines"]) / t["lines"] if t["lines"] else None
    return out


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

    async def sla_weeks(request: Request, person: Person, until: str, count: int, region: str = "",
                        dealer: str = "", month: str = "") -> dict[str, Any]:
        """The complaints service's SLA compliance per ISO week (the steps due in each week)."""
        params: dict[str, Any] = {"until": until, "weeks": count}
        for key, value in (("region", region), ("dealer", dealer), ("month", month)):
            if value:
                params[key] = value
        answer: dict[str, Any] = await services(request).call(
            person, "GET", "complaints", "/v1/reports/sla-compliance", params=params)
        return answer

    async def dealer_regions(request: Request) -> dict[str, str]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await conn.fetch("""SELECT dealer_id, region, count(*) AS n FROM vehicles
                                        WHERE dealer_id IS NOT NULL AND region IS NOT NULL GROUP BY 1, 2""")
        return region_of_dealers(list(rows))

    @r.get("/supervisor/dashboard")
    async def dashboard(request: Request, region: str = "", dealer: str = "", format: str = "html",
                        person: Person = Depends(role("supervisor"))) -> Response:
        region, dealer = region.strip()[:60], dealer.strip()[:60]
        now = runtime_of(request).clock.now()
        weeks = [*last_weeks(now, 4), iso_week(now)]
        figures: dict[str, list[float | None]] = {k: [] for k in TARGETS}
        problem = None
        by_dealer: dict[str, list[float | None]] = {}  # parts accuracy per dealer and week
        regions = await dealer_regions(request) if region and not dealer else {}
        try:
            # The services' figures of every week at once (the services answer in parallel).
            kpis, weekly_parts, sla = await asyncio.gather(
                asyncio.gather(*(followup_kpis(request, person, *week_bounds(w), region, dealer) for w in weeks)),
                asyncio.gather(*(parts_week(request, person, w) for w in weeks)),
                sla_weeks(request, person, weeks[-1], len(weeks), region, dealer))
            for index, (k, parts) in enumerate(zip(kpis, weekly_parts, strict=True)):
                figures["warranty_return_visit_rate"].append(k["warranty_return_visit_rate"])
                figures["satisfaction_rate"].append(k["satisfaction_rate"])
                for d in parts["by_dealer"]:
                    by_dealer.setdefault(d["dealer_id"], [None] * len(weeks))[index] = d["accuracy"]
                if dealer:
                    row = next((d for d in parts["by_dealer"] if d["dealer_id"] == dealer), None)
                    figures["parts_accuracy"].append(row["accuracy"] if row else None)
                elif region:  # the region's dealers
                    figures["parts_accuracy"].append(parts_by_region(parts, regions).get(region, {}).get("accuracy"))
                else:
                    figures["parts_accuracy"].append(parts["accuracy"])
            figures["complaint_sla_compliance"] = [w["compliance"] for w in sla["weeks"]]
        except ServiceError as exc:
            problem = exc.message
        for values in figures.values():  # a service that did not answer: no figure, not a short row
            values.extend([None] * (len(weeks) - len(values)))
        rows = [{"name": name, "values": values, "target": TARGETS[name], "trend": trend(values),
                 "links": [drill_down(name, w, region, dealer) for w in weeks]}
                for name, values in figures.items()]
        workload = await _workload(request, now)
        dealers = [{"dealer_id": d, "values": v, "trend": trend(v)} for d, v in sorted(by_dealer.items())
                   if not dealer or d == dealer]
        gettext = translator(request, person)
        label = target_labels(gettext)
        if format in ("csv", "xlsx"):
            table = [[label[r["name"]], r["target"], *r["values"]] for r in rows]
            table += [[f'{gettext("parts-shipment accuracy")} · {d["dealer_id"]}', TARGETS["parts_accuracy"],
                       *d["values"]] for d in dealers]
            table += [[gettext("Calls due"), d["day"].isoformat(), d["due"], d["load"], d["capacity"], d["short"]]
                      for d in workload["days"]]
            await audit(request, person, "read_report", subject="dashboard", format=format)
            return exported("aftersales-targets", format, [gettext("Figure"), gettext("Target"), *weeks], table)
        chart = charts.lines(gettext("The department's targets by week"), weeks,
                             [(label[r["name"]], r["values"]) for r in rows], percent=True)
        return render(request, "dashboard.html", person, weeks=weeks, rows=rows, region=region, dealer=dealer,
                      problem=problem, workload=workload, dealers=dealers, chart=chart)

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
                           scored: bool = False, format: str = "html",
                           person: Person = Depends(role("supervisor"))) -> Response:
        """The calls behind a week's return-visit figures (the console's read model), for a region
        or dealer: who was called, by whom, what came of it; `scored`: only the calls with a
        satisfaction score (the ones behind the satisfaction figure)."""
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
                      AND (NOT $5 OR c.satisfaction IS NOT NULL)
                    ORDER BY c.attempted_at DESC LIMIT 1000""", start, end, region.strip(), dealer.strip(), scored)
        calls = [dict(r) for r in rows]
        await audit(request, person, "read_report", subject=f"calls:{week}", format=format)
        if format in ("csv", "xlsx"):
            gettext = translator(request, person)
            header = [gettext("When"), gettext("Customer"), gettext("Kind"), gettext("Outcome"), gettext("Score"),
                      gettext("Agent"), gettext("Dealer"), gettext("Region"), "VIN"]
            table = [[c["attempted_at"].isoformat(), c["name"] or c["customer_id"], c["kind"], c["outcome"],
                      c["satisfaction"], c["agent_id"], c["dealer_id"], c["region"], c["vin"]] for c in calls]
            return exported(f"aftersales-calls-{week}", format, header, table)
        return render(request, "calls.html", person, calls=calls, week=week, region=region, dealer=dealer,
                      scored=scored)

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
            rows.append([gettext("Return visits"), gettext("all"), gettext("satisfaction"), k["satisfied_calls"],
                         k["scored_calls"], k["satisfaction_rate"]])
            for agent, calls in sorted(k.get("calls_per_agent", {}).items()):
                rows.append([gettext("Agents"), agent, gettext("calls reached"), calls["reached"], calls["calls"],
                             calls["reached"] / calls["calls"] if calls["calls"] else None])
            # The SLA steps that fell due in the period, met against all decided.
            if kind == "weekly":
                sla = (await sla_weeks(request, person, period, 1))["weeks"][0]
            else:
                sla = (await sla_weeks(request, person, iso_week(start), 1, month=period))["month"]
            rows.append([gettext("Complaints"), gettext("all"), gettext("complaint SLA compliance"),
                         sla["met"], sla["due"], sla["compliance"]])
            if kind == "weekly":
                parts = await parts_week(request, person, period)
            else:
                parts = (await services(request).call(person, "GET", "quality", "/v1/reports/monthly",
                                                      params={"month": period}))["parts_accuracy"]
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

    def chosen_week(request: Request, week: str) -> str:
        week = week.strip() or iso_week(runtime_of(request).clock.now())
        try:
            start, _ = week_bounds(week)
        except (ValueError, TypeError):
            raise Refused(N_("Write the week like 2026-W47 and the month like 2026-11."), status=422) from None
        return iso_week(start)  # 2026-W5 is 2026-W05, as the services name it

    @r.get("/supervisor/sla-cases")
    async def sla_cases(request: Request, week: str = "", outcome: str = "", region: str = "", dealer: str = "",
                        format: str = "html", person: Person = Depends(role("supervisor"))) -> Response:
        """The complaint cases behind a week's SLA compliance: each SLA step that fell due that
        week, met or breached (the complaints service's figures)."""
        week, region, dealer = chosen_week(request, week), region.strip()[:60], dealer.strip()[:60]
        outcome = outcome if outcome in ("met", "breached") else ""
        params = {k: v for k, v in (("week", week), ("region", region), ("dealer", dealer)) if v}
        try:  # every step of the week (its counts), those of the outcome asked for shown
            found, _ = await services(request).every(person, "complaints", "/v1/reports/sla-compliance/cases",
                                                     params, limit=500)
        except ServiceError as exc:
            raise Refused(exc.message, status=502) from None
        await audit(request, person, "read_report", subject=f"sla-cases:{week}", format=format)
        met, breached = (sum(c["outcome"] == o for c in found) for o in ("met", "breached"))
        steps = [{**c, "due_at": datetime.fromisoformat(c["due_at"]),
                  "done_at": datetime.fromisoformat(c["done_at"]) if c["done_at"] else None} for c in found
                 if outcome in ("", c["outcome"])]
        if format in ("csv", "xlsx"):
            gettext = translator(request, person)
            header = [gettext("Case"), gettext("Round"), gettext("SLA step"), gettext("Deadline"), gettext("Done"),
                      gettext("Outcome"), gettext("Department"), gettext("Severity"), gettext("Dealer"),
                      gettext("Region")]
            words = {key: gettext(text) for key, text in (*STEPS.items(), *OUTCOMES.items())}
            table = [[c["complaint_ref"], c["round"] + 1, words[c["step"]], c["due_at"].isoformat(),
                      c["done_at"].isoformat() if c["done_at"] else None,
                      words[c["outcome"]], c["department"], c["severity"], c["dealer_id"], c["region"]]
                     for c in steps]
            return exported(f"aftersales-sla-cases-{week}", format, header, table)
        return render(request, "sla_cases.html", person, steps=steps, week=week, outcome=outcome, region=region,
                      dealer=dealer, met=met, breached=breached, link=link, names=STEPS,
                      outcomes=OUTCOMES)

    @r.get("/supervisor/parts")
    async def parts_behind(request: Request, week: str = "", region: str = "", dealer: str = "",
                           format: str = "html", person: Person = Depends(role("supervisor"))) -> Response:
        """The shipments behind a week's parts-shipment accuracy: lines shipped and discrepant per
        dealer (the quality service's week), each dealer linked to its own targets."""
        week, region, dealer = chosen_week(request, week), region.strip()[:60], dealer.strip()[:60]
        try:
            parts = await parts_week(request, person, week)
        except ServiceError as exc:
            raise Refused(exc.message, status=502) from None
        regions = await dealer_regions(request)
        dealers = [{**d, "region": regions.get(d["dealer_id"])} for d in parts["by_dealer"]
                   if dealer in ("", d["dealer_id"]) and region in ("", regions.get(d["dealer_id"]))]
        await audit(request, person, "read_report", subject=f"parts:{week}", format=format)
        if format in ("csv", "xlsx"):
            gettext = translator(request, person)
            header = [gettext("Dealer"), gettext("Region"), gettext("Lines shipped"), gettext("Discrepant lines"),
                      gettext("Rate")]
            table = [[d["dealer_id"], d["region"], d["lines"], d["discrepant_lines"], d["accuracy"]] for d in dealers]
            return exported(f"aftersales-parts-{week}", format, header, table)
        return render(request, "parts_week.html", person, week=week, region=region, dealer=dealer, parts=parts,
                      dealers=dealers)

    async def region_table(request: Request, person: Person, week: str) -> list[dict[str, Any]]:
        """Each region's four targets in `week` and the change from the week before."""
        before = week_before(week)
        regions = await dealer_regions(request)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            names = {r[0] for r in await conn.fetch(
                """SELECT DISTINCT region FROM followups WHERE region IS NOT NULL
                   UNION SELECT DISTINCT region FROM vehicles WHERE region IS NOT NULL""")}
        sla, *shipped = await asyncio.gather(sla_weeks(request, person, week, 2), parts_week(request, person, before),
                                             parts_week(request, person, week))
        parts = {w: parts_by_region(p, regions) for w, p in zip((before, week), shipped, strict=True)}
        names |= {r for w in sla["weeks"] for r in w["by_region"] if r} | {r for p in parts.values() for r in p if r}
        ordered = sorted(names)
        # Each region's return visits in both weeks, asked of followup all at once.
        answers = iter(await asyncio.gather(*(followup_kpis(request, person, *week_bounds(w), name, "")
                                              for name in ordered for w in (before, week))))
        table = []
        for name in ordered:
            values: dict[str, list[float | None]] = {}
            for w in (before, week):
                k = next(answers)
                values.setdefault("warranty_return_visit_rate", []).append(k["warranty_return_visit_rate"])
                values.setdefault("satisfaction_rate", []).append(k["satisfaction_rate"])
                sla_week = next(x for x in sla["weeks"] if x["week"] == w)
                values.setdefault("complaint_sla_compliance", []).append(
                    sla_week["by_region"].get(name, {}).get("compliance"))
                values.setdefault("parts_accuracy", []).append(parts[w].get(name, {}).get("accuracy"))
            table.append({"region": name, "figures": [
                {"name": target, "value": v[1], "change": trend(v), "link": drill_down(target, week, name, "")}
                for target, v in values.items()]})
        return table

    @r.get("/supervisor/regions")
    async def by_region(request: Request, week: str = "", format: str = "html",
                        person: Person = Depends(role("supervisor"))) -> Response:
        week = chosen_week(request, week)
        try:
            table = await region_table(request, person, week)
        except ServiceError as exc:
            raise Refused(exc.message, status=502) from None
        await audit(request, person, "read_report", subject=f"regions:{week}", format=format)
        gettext = translator(request, person)
        label = target_labels(gettext)
        if format in ("csv", "xlsx"):
            header = [gettext("Region")]
            for name in TARGETS:
                header += [f"{label[name]} {week}", f"{label[name]} · {gettext('Against the week before')}"]
            rows = [[r["region"], *(x for f in r["figures"] for x in (f["value"], f["change"]))] for r in table]
            return exported(f"aftersales-regions-{week}", format, header, rows)
        return render(request, "regions.html", person, week=week, before=week_before(week), table=table,
                      targets=TARGETS)

    return r


STEPS = {"acknowledge": N_("acknowledge"), "resolve": N_("resolve")}
OUTCOMES = {"met": N_("met"), "breached": N_("breached")}

