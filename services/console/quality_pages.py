"""The quality inspectors' pages: the early-warning alerts with their evidence (observed against
expected reports per month in service, drawn as a chart with its table), the reports and VINs
behind them, acknowledging and closing with the containment, confirming a batch problem (its
recall: progress per dealer, the reports since, inspected vehicles apart); parts-shipment
accuracy per dealer and week. Read from and done through the quality service's API under the person's name."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.console import charts
from services.console.clients import Person, ServiceError
from services.console.i18n import DISPLAY_ZONE, N_
from services.console.pages import Refused, _with, audit, form_of, locale_of, render, role, services
from shared.http import runtime_of

INSPECTORS = ("quality", "supervisor")
ALERT_STATES = ("open", "raised", "acknowledged", "closed")
WEEKS = 8


def iso_week(moment: datetime) -> str:
    year, week, _ = moment.astimezone(DISPLAY_ZONE).isocalendar()
    return f"{year}-W{week:02d}"


def last_weeks(now: datetime, count: int) -> list[str]:
    """The `count` complete ISO weeks before now's, oldest first."""
    return [iso_week(now - timedelta(weeks=k)) for k in range(count, 0, -1)]


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


RECALL_PROGRESS = ("vehicles", "reached", "booked", "inspected", "replaced")


def recall_rows(recalls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The quality service's recalls with their moments read and every progress count present,
    the latest confirmed first."""
    rows = [{**x, **{k: _moment(x.get(k)) for k in ("confirmed_at", "starts_at", "ends_at")},
             "progress": {k: int((x.get("progress") or {}).get(k) or 0) for k in RECALL_PROGRESS}}
            for x in recalls]
    return sorted(rows, key=lambda x: (x["confirmed_at"], x["campaign_id"]), reverse=True)


def translator(request: Request, person: Person) -> Any:
    """The reader's catalogue, for texts drawn inside a chart."""
    return runtime_of(request).deps.templates[locale_of(request, person)].filters["message"]


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/quality/alerts")
    async def alerts_page(request: Request, state: str = "open", format: str = "html",
                          person: Person = Depends(role(*INSPECTORS))) -> Response:
        state = state if state in ALERT_STATES else "open"
        try:
            answer = await services(request).call(person, "GET", "quality", "/v1/alerts",
                                                  params={"state": state, "limit": 200, "sort": "-raised_at"})
            alerts, problem = answer["items"], None
        except ServiceError as exc:
            alerts, problem = [], exc.message
        for a in alerts:
            a["raised_at"], a["updated_at"] = _moment(a["raised_at"]), _moment(a["updated_at"])
        if format in ("csv", "xlsx"):
            from services.console.supervisor_pages import exported

            gettext = translator(request, person)
            header = [gettext("Alert"), gettext("Part category"), gettext("Batch or supplier and model"),
                      gettext("Observed"), gettext("Expected"), gettext("Rule"), gettext("State"), gettext("Raised")]
            rows = [[a["alert_id"], a["cell"]["category"],
                     a["cell"].get("batch") or f"{a['cell'].get('supplier_id')} {a['cell'].get('model')}",
                     a["observed"], a["expected"], a["rule"], a["state"], a["raised_at"].isoformat()] for a in alerts]
            await audit(request, person, "read_report", subject=f"alerts:{state}", format=format)
            return exported(f"aftersales-alerts-{state}", format, header, rows)
        return render(request, "alerts.html", person, alerts=alerts, state=state, states=ALERT_STATES,
                      problem=problem)

    async def alert_of(request: Request, person: Person, alert_id: str) -> dict[str, Any]:
        """The alert, with its ETag under `etag` (the page's action forms send it back as If-Match)."""
        try:
            response = await services(request).fetch(person, "quality", f"/v1/alerts/{quote(alert_id)}")
        except ServiceError as exc:
            raise Refused(N_("No alert with this id. The alerts page lists them.") if exc.status == 404 else exc.message,
                          status=404 if exc.status == 404 else 502) from None
        alert: dict[str, Any] = response.json()
        alert["etag"] = response.headers.get("etag") or ""
        return alert

    @r.get("/quality/alerts/{alert_id}")
    async def alert_page(request: Request, alert_id: str, person: Person = Depends(role(*INSPECTORS))) -> HTMLResponse:
        alert = await alert_of(request, person, alert_id)
        for key in ("raised_at", "updated_at", "acknowledged_at", "closed_at", "as_of", "since"):
            alert[key] = _moment(alert.get(key))
        for report in alert["reports"]:
            report["reported_at"] = _moment(report["reported_at"])
        gettext = translator(request, person)
        months = alert.get("by_month_in_service") or []
        chart = charts.bars_and_line(
            gettext("Reports per month in service: observed against expected"),
            [gettext("month %(num)d") % {"num": m["month"] + 1} for m in months], [m["observed"] for m in months],
            [m["expected"] for m in months], gettext("observed"), gettext("expected"))
        suppliers = sorted({(r.get("supplier_id") or "—", r.get("batch") or "—") for r in alert["reports"]})
        await audit(request, person, "read_alert", subject=alert_id)
        return render(request, "alert.html", person, alert=alert, chart=chart, months=months, suppliers=suppliers,
                      done=request.query_params.get("done"), error=request.query_params.get("error"))

    @r.post("/quality/alerts/{alert_id}/{action}")
    async def alert_action(request: Request, alert_id: str, action: str,
                           person: Person = Depends(role("quality"))) -> Response:
        form = await form_of(request, person)
        here = f"/quality/alerts/{quote(alert_id)}"
        if action not in ("acknowledge", "close", "confirm"):
            return _with(here, error=N_("This step is not open to you in the alert's state; reload the page."))
        note = (form.get("note") or "").strip()
        if action in ("close", "confirm") and not note:
            return _with(here, error=N_("Write the containment: what was done so the defect goes no further."))
        body = {"containment": note[:4000]} if action == "confirm" else {"note": note[:4000]} if note else {}
        # the alert as the inspector saw it: another inspector's step since is refused (412), not overridden
        seen = (form.get("etag") or "").strip()[:200]
        try:
            await services(request).call(person, "POST", "quality", f"/v1/alerts/{quote(alert_id)}/{action}",
                                         json=body, headers={"If-Match": seen} if seen else None)
        except ServiceError as exc:
            if exc.status == 412:
                return _with(here, error=N_("Someone changed this alert after you opened it: nothing was done. "
                                            "Check it again below and take the step again."))
            return _with(here, error=exc.message)
        await audit(request, person, f"alert_{action}", subject=alert_id, note=note or None)
        return _with(here, done=action)

    @r.get("/quality/recalls")
    async def recalls_page(request: Request, format: str = "html",
                           person: Person = Depends(role(*INSPECTORS))) -> Response:
        """Every recall from a confirmed batch problem with its progress (all dealers), newest first."""
        try:
            answer = await services(request).call(person, "GET", "quality", "/v1/recalls",
                                                  params={"limit": 200, "sort": "-confirmed_at"})
            recalls, problem = recall_rows(answer["items"]), None
        except ServiceError as exc:
            recalls, problem = [], exc.message
        if format in ("csv", "xlsx"):
            from services.console.supervisor_pages import exported

            gettext = translator(request, person)
            header = [gettext("Recall"), gettext("Title"), gettext("Part category"), gettext("batch"),
                      gettext("Supplier"), gettext("Confirmed"), gettext("Vehicles"), gettext("Owners reached"),
                      gettext("Visits booked"), gettext("Inspected"), gettext("Parts replaced")]
            rows = [[x["campaign_id"], x["title"] or "", x["category"], x["batch"] or "", x["supplier_id"] or "",
                     x["confirmed_at"].isoformat(), *(x["progress"][k] for k in RECALL_PROGRESS)] for x in recalls]
            await audit(request, person, "read_report", subject="recalls", format=format)
            return exported("aftersales-recalls", format, header, rows)
        return render(request, "recalls.html", person, recalls=recalls, problem=problem)

    @r.get("/quality/recalls/{campaign_id}")
    async def recall_page(request: Request, campaign_id: str,
                          person: Person = Depends(role(*INSPECTORS))) -> HTMLResponse:
        try:
            recall: dict[str, Any] = await services(request).call(person, "GET", "quality",
                                                                  f"/v1/recalls/{quote(campaign_id)}")
        except ServiceError as exc:
            raise Refused(N_("No recall with this id. Its alert's page links to it.") if exc.status == 404
                          else exc.message, status=404 if exc.status == 404 else 502) from None
        for key in ("confirmed_at", "starts_at", "ends_at"):
            recall[key] = _moment(recall[key])
        for v in recall["vehicles"]:
            for key in ("reached_at", "booked_at", "inspected_at", "replaced_at"):
                v[key] = _moment(v[key])
        seen = recall["reports_since_confirmation"]
        for r in seen["inspected_reports"] + seen["not_inspected_reports"]:
            r["reported_at"] = _moment(r["reported_at"])
        await audit(request, person, "read_recall", subject=campaign_id)
        return render(request, "recall.html", person, recall=recall)

    @r.get("/quality/parts-accuracy")
    async def parts_accuracy(request: Request, format: str = "html",
                             person: Person = Depends(role(*INSPECTORS))) -> Response:
        weeks = last_weeks(runtime_of(request).clock.now(), WEEKS)
        reports, problem = [], None
        for week in weeks:
            try:
                answer = await services(request).call(person, "GET", "quality", "/v1/reports/weekly",
                                                      params={"week": week})
            except ServiceError as exc:
                problem = exc.message
                break
            reports.append(answer["parts_accuracy"])
        dealers = sorted({d["dealer_id"] for rep in reports for d in rep["by_dealer"]})
        table = {dealer: [next((d["accuracy"] for d in rep["by_dealer"] if d["dealer_id"] == dealer), None)
                          for rep in reports] for dealer in dealers}
        overall = [rep["accuracy"] for rep in reports]
        target = reports[0]["target"] if reports else 0.98
        gettext = translator(request, person)
        if format in ("csv", "xlsx"):
            from services.console.supervisor_pages import exported

            rows = [[gettext("all dealers"), *overall], *([dealer, *values] for dealer, values in table.items())]
            await audit(request, person, "read_report", subject="parts-accuracy", format=format)
            return exported("aftersales-parts-accuracy", format, [gettext("Dealer"), *weeks[:len(reports)]], rows)
        chart = charts.lines(gettext("Parts-shipment accuracy per dealer and week"), weeks[:len(reports)],
                             [(gettext("all dealers"), overall), *table.items()], target=target,
                             target_name=gettext("target"), percent=True)
        return render(request, "parts_accuracy.html", person, weeks=weeks[:len(reports)], reports=reports,
                      table=table, overall=overall, target=target, chart=chart, problem=problem)

    return r
