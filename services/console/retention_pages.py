"""Lost customers, before and after: the customers at risk of being lost (overdue maintenance or
visits falling off, before their 12-month mark) for agents and supervisors, linking to each
customer's page, and, for supervisors, why the lost customers called in a period said they left.
Read from the follow-up service's API under the person's name; the owner's name, plates and
dealers come from the console's read model. The list also as CSV and XLSX (the same rows)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.console import store
from services.console.clients import Person, ServiceError
from services.console.i18n import DISPLAY_ZONE, N_
from services.console.pages import DESK, LOST_REASONS, audit, locale_of, render, role, services
from shared.db import acquire
from shared.http import runtime_of

REPORT_DAYS = 30  # the lost reasons' default period: the 30 days up to today


AT_RISK_SHOWN = 500  # the most customers at risk the page (and its export) shows

def period(since: str, until: str, now: datetime) -> tuple[datetime, datetime]:
    """The days from `since` to `until` (both included, Shanghai) as [start, end); empty: the 30
    days up to today. ValueError says what to fix."""
    today = now.astimezone(DISPLAY_ZONE).date()
    try:
        last = date.fromisoformat(until) if until else today
        first = date.fromisoformat(since) if since else last - timedelta(days=REPORT_DAYS - 1)
    except ValueError:
        raise ValueError(N_("Write the period's days as 2026-11-01.")) from None
    if first > last:
        raise ValueError(N_("The period's first day must not be after its last day."))
    return (datetime.combine(first, time(0), DISPLAY_ZONE),
            datetime.combine(last + timedelta(days=1), time(0), DISPLAY_ZONE))


def reason_counts(reasons: dict[str, int]) -> list[tuple[str, int]]:
    """Every reason of the list in its order (0 when no call gave it), then the calls with no
    reason, then any reason the service names that the console does not know yet."""
    known = [*LOST_REASONS, "not_given"]
    return [(r, int(reasons.get(r, 0))) for r in known] + sorted(
        (r, int(n)) for r, n in reasons.items() if r not in known)


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def at_risk_entries(customers: list[dict[str, Any]], owners: dict[str, dict[str, Any]],
                    vehicles: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's entries with their moments read, the owner's file (name, phone) and each
    vehicle's plate and dealer from the console's read model (None where it has not arrived)."""
    out = []
    for c in customers:
        vins = list(c.get("vehicles") or [])
        dealers = sorted({d for v in vins if (d := (vehicles.get(v) or {}).get("dealer_id"))})
        out.append({**c, "owner": owners.get(c["customer_id"]), "dealers": dealers,
                    "vehicle_rows": [{"vin": v, **(vehicles.get(v) or {})} for v in vins],
                    **{k: _moment(c.get(k)) for k in ("last_visit_at", "lost_at", "maintenance_due_at")}})
    return out


def export_rows(entries: list[dict[str, Any]], label: Any) -> list[list[Any]]:
    """One row per customer, as on the screen (signs in the reader's words)."""
    return [[e["customer_id"], (e["owner"] or {}).get("name") or "", e.get("region") or "", ", ".join(e["dealers"]),
             ", ".join(label(s, "risk_sign") for s in e["signs"]),
             e["last_visit_at"].isoformat() if e["last_visit_at"] else "", e["days_since_last_visit"],
             e["average_interval_days"], e["maintenance_due_at"].isoformat() if e["maintenance_due_at"] else "",
             e["lost_at"].isoformat() if e["lost_at"] else "", ", ".join(e.get("vehicles") or [])]
            for e in entries]


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/at-risk")
    async def at_risk_page(request: Request, region: str = "", dealer: str = "", since: str = "", until: str = "",
                           format: str = "html", person: Person = Depends(role(*DESK))) -> Response:
        region, dealer = region.strip(), dealer.strip()
        params = {k: v for k, v in (("region", region), ("dealer", dealer)) if v}
        try:
            customers, problem, cursor = [], None, None
            if person.role == "agent" and not person.scoped and not params:  # the service asks for a filter
                problem = N_("Choose a region or a dealer: an agent of the whole group sees the customers at risk of "
                             "one region or dealer at a time.")
            while problem is None and len(customers) < AT_RISK_SHOWN:  # pages of the service's list (200 at most each)
                answer = await services(request).call(person, "GET", "followup", "/v1/customers/at-risk",
                                                      params={**params, "limit": 200} | ({"cursor": cursor}
                                                                                         if cursor else {}))
                customers += answer["items"]
                if not (cursor := answer["next_cursor"]):
                    break
            customers = customers[:AT_RISK_SHOWN]
        except ServiceError as exc:
            customers, problem = [], exc.message
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            owners = await store.customers_brief(conn, [c["customer_id"] for c in customers])
            vehicles = await store.vehicles_dealers(conn, [v for c in customers for v in c.get("vehicles") or []])
        entries = at_risk_entries(customers, owners, vehicles)
        env = runtime.deps.templates[locale_of(request, person)]
        if format in ("csv", "xlsx"):
            from services.console.supervisor_pages import exported

            gettext = env.filters["message"]
            header = [gettext("Customer id"), gettext("Owner"), gettext("Region"), gettext("Dealer"),
                      gettext("Why at risk"), gettext("Last visit"), gettext("Days since the last visit"),
                      gettext("Average days between visits"), gettext("Service due since"),
                      gettext("Lost from"), gettext("Vehicles")]
            await audit(request, person, "read_report", subject="at-risk", format=format, region=region or None,
                        dealer=dealer or None)
            return exported("aftersales-customers-at-risk", format, header, export_rows(entries, env.filters["label"]))
        # why lost customers left, for supervisors (the follow-up service's report is theirs)
        reasons, reasons_problem, bounds = None, None, None
        if person.role == "supervisor":
            try:
                bounds = period(since, until, runtime.clock.now())
            except ValueError as exc:
                reasons_problem = str(exc)
            if bounds is not None:
                try:
                    report = await services(request).call(person, "GET", "followup", "/v1/reports/lost-reasons",
                                                          params={**params, "from": bounds[0].isoformat(),
                                                                  "to": bounds[1].isoformat()})
                    reasons = {"rows": reason_counts(report["reasons"]), "total": report["total"]}
                except ServiceError as exc:
                    reasons_problem = exc.message
        await audit(request, person, "read_report", subject="at-risk", region=region or None, dealer=dealer or None)
        days = (bounds[0].date().isoformat(), (bounds[1] - timedelta(days=1)).date().isoformat()) if bounds \
            else (since, until)
        return render(request, "at_risk.html", person, entries=entries, problem=problem, region=region,
                      dealer=dealer, since=days[0], until=days[1], reasons=reasons, reasons_problem=reasons_problem,
                      query=urlencode(params))

    return r
