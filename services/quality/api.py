"""The quality inspection department's HTTP API: early-warning alerts (list, inspect,
acknowledge, close with a containment note), defect statistics, the weekly reports, KPIs.

Roles: `quality` reads and acts; `ops` reads."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.quality import figures, recall_store, store
from services.quality.api_models import (
    ALERT_SORTS,
    Alert,
    AlertDetail,
    Kpis,
    Monthly,
    Stats,
    Weekly,
    alert_etag,
    alert_json,
)
from services.quality.config import QualityRules
from services.quality.domain import (
    ALERT_STATES,
    OPEN_STATES,
    Cell,
    IllegalTransition,
    previous_week,
    transition,
    week_bounds,
)
from services.quality.monitor import EventRef, alert_title
from services.quality.recall_api import recall_json, recall_router, split_reports
from shared.api import (
    IfMatch,
    Page,
    PageParams,
    Sort,
    check_if_match,
    make_page,
    page_doc,
    page_params,
    problems,
    sort_param,
)
from shared.events import canonical as c
from shared.http import Principal, check_moments, require, runtime_of
from shared.timeutil import month_span

READ = ("quality", "supervisor", "ops")  # supervisors read the alerts and the weekly figures
ACT = ("quality",)
NOT_FOUND = "no alert 'QA-404'; list the alerts with GET /v1/alerts"
CONFLICT = "alert QA-2026-0042 is closed; it cannot acknowledge. Allowed now: nothing (it is closed)"


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=4000, description="what is being checked, who is on it")


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=4000,
                      description="the containment: what was done about the parts (quarantine, recall, supplier 8D …)")


def _rules(request: Request) -> QualityRules:
    rules: QualityRules = runtime_of(request).deps.rules
    return rules


def by_month_in_service(ages: list[float], reported: list[float], rate: float) -> list[dict[str, Any]]:
    """Observed against expected reports per month in service: a unit aged 2.5 months adds one
    unit-month to months 0 and 1 and half of one to month 2; expected = baseline rate x the
    month's unit-months; observed = the reports made in that month of their vehicle's service."""
    months = int(max([*ages, *reported, 0.0])) + 1
    exposure = [0.0] * months
    for age in ages:
        for m in range(int(age) + 1):
            exposure[m] += min(max(age - m, 0.0), 1.0)
    observed = [0] * months
    for age in reported:
        observed[min(int(age), months - 1)] += 1
    return [{"month": m, "unit_months": round(exposure[m], 3), "expected": round(rate * exposure[m], 4),
             "observed": observed[m]} for m in range(months)]


def _moment(value: str | None, name: str, zone: str, default: datetime) -> datetime:
    """An ISO date (local midnight in the rules' zone) or an ISO date-time with an offset."""
    if value is None:
        return default
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time(0), tzinfo=ZoneInfo(zone))
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name} {value!r} is not an ISO date (2026-11-01) or date-time "
                                 f"(2026-11-01T08:00:00+08:00)") from None
    if moment.tzinfo is None:
        raise HTTPException(422, f"{name} {value!r} has no timezone; add an offset such as +08:00, or give a date")
    check_moments(**{name: moment})
    return moment


# The paging and sort parameters of each list (module level: one dependency each)
AlertPaging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=200))]
AlertSort = Annotated[Sort, Depends(sort_param(ALERT_SORTS, default="-raised_at"))]


def router() -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["quality"])
    api.include_router(recall_router())

    @api.get("/alerts", summary="Early-warning alerts, newest first", response_model=Page[Alert],
             responses=page_doc(Alert, 50))
    async def list_alerts(
        request: Request,
        sort: AlertSort,
        paging: AlertPaging,
        state: str | None = Query(None, description="raised, acknowledged, closed, or open (= raised + acknowledged)"),
        category: str | None = Query(None, max_length=64, description="part category, e.g. controller"),
        _: Principal = require(*READ),
    ) -> Page[Alert]:
        if state is None:
            states: tuple[str, ...] = ALERT_STATES
        elif state == "open":
            states = OPEN_STATES
        elif state in ALERT_STATES:
            states = (state,)
        else:
            raise HTTPException(422, f"state {state!r} is not one of: {', '.join((*ALERT_STATES, 'open'))}")
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            rows = await store.list_alerts(conn, states, category, paging.limit + 1, sort, paging.cursor)
        return make_page([Alert(**alert_json(r)) for r in rows], paging.limit, sort,
                         lambda a: (getattr(a, sort.key), a.alert_id))

    @api.get("/alerts/{alert_id}", summary="One alert with the reports and vehicles behind it (and its ETag)",
             response_model=AlertDetail, responses=problems(404, examples={404: NOT_FOUND}))
    async def get_alert(request: Request, response: Response, alert_id: str,
                        _: Principal = require(*READ)) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            row = await store.alert(conn, alert_id)
            if row is None:
                raise HTTPException(404, f"no alert {alert_id!r}; list the alerts with GET /v1/alerts")
            reports = await store.alert_reports(conn, row["report_ids"])
            rates = runtime.deps.rates
            cell = Cell.from_key(row["cell_key"])
            ages, reported = await store.months_in_service(conn, cell, row["report_ids"], row["as_of"],
                                                           rates.unit_month_days)
            # Reports from vehicles a recall already inspected are flagged and counted apart.
            inspections = await recall_store.inspections(conn, [r["vin"] for r in reports])
            recall = await recall_store.recall_of_alert(conn, alert_id)
        response.headers["ETag"] = alert_etag(row)
        return {**alert_json(row), "reports": reports, "reports_by_inspection": split_reports(reports, inspections),
                "recall": recall_json(recall) if recall else None,
                "by_month_in_service": by_month_in_service(ages, reported, rates.rate(cell.category))}

    async def act(request: Request, response: Response, alert_id: str, action: str, note: str | None,
                  who: Principal, if_match: str | None) -> dict[str, Any]:
        runtime = runtime_of(request)
        async with runtime.transaction() as uow:
            found = await store.alert(uow.conn, alert_id)
            if found is None:
                raise HTTPException(404, f"no alert {alert_id!r}; list the alerts with GET /v1/alerts")
            await store.locked_cells(uow.conn, [found["cell_key"]])  # lock order: cell, then alert
            row = await store.alert(uow.conn, alert_id, lock=True)
            assert row is not None
            check_if_match(if_match, alert_etag(row))  # 412: someone changed the alert since it was read
            try:
                state = transition(alert_id, row["state"], action)
            except IllegalTransition as exc:
                raise HTTPException(409, {"message": str(exc), "state": row["state"], "allowed": exc.allowed}) from None
            now = uow.now()
            envelope = uow.publish(
                "QualityAlertAcknowledged" if state == "acknowledged" else "QualityAlertClosed",
                c.QualityAlertStateChanged(alert_id=alert_id, at=now, actor=who.subject, note=note, cell=row["cell"],
                                           rule=row["rule"], state=state, title=alert_title(row)),
                cause=EventRef(row["last_event_id"], row["correlation_id"]), occurred_at=now,
            )
            await store.set_alert_state(uow.conn, alert_id, state, now, who.subject, note, envelope.event_id)
            if state == "closed":
                # Contained: monitoring of the cell starts afresh from now.
                await store.restart_cell(uow.conn, row["cell_key"], now)
            updated = await store.alert(uow.conn, alert_id)
            uow.log.info(f"quality alert {state}", alert_id=alert_id, actor=who.subject,
                         cell=Cell.from_key(row["cell_key"]).label)
        assert updated is not None
        response.headers["ETag"] = alert_etag(updated)
        return alert_json(updated)

    @api.post("/alerts/{alert_id}/acknowledge", summary="The quality department takes the alert on",
              response_model=Alert, responses=problems(404, 409, 412, examples={404: NOT_FOUND, 409: CONFLICT}))
    async def acknowledge(request: Request, response: Response, alert_id: str, body: AcknowledgeBody | None = None,
                          if_match: IfMatch = None, who: Principal = require(*ACT)) -> dict[str, Any]:
        return await act(request, response, alert_id, "acknowledge", body.note if body else None, who, if_match)

    @api.post("/alerts/{alert_id}/close", summary="Close an acknowledged alert with its containment note",
              response_model=Alert, responses=problems(404, 409, 412, examples={404: NOT_FOUND, 409: CONFLICT}))
    async def close(request: Request, response: Response, alert_id: str, body: CloseBody, if_match: IfMatch = None,
                    who: Principal = require(*ACT)) -> dict[str, Any]:
        return await act(request, response, alert_id, "close", body.note, who, if_match)

    @api.get("/stats", summary="Defects by category, batch, supplier; units in service and rates for a category",
             response_model=Stats, response_model_by_alias=True)
    async def stats(
        request: Request,
        category: str | None = Query(None, description="a part category; adds units in service and rates per cell"),
        from_: str | None = Query(None, alias="from", description="ISO date or date-time; default: `to` - 30 days"),
        to: str | None = Query(None, description="ISO date or date-time (exclusive); default: now"),
        _: Principal = require(*READ),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        rules = _rules(request)
        end = _moment(to, "to", rules.timezone, runtime.clock.now())
        start = _moment(from_, "from", rules.timezone, end - timedelta(days=30))
        if start >= end:
            raise HTTPException(422, f"from {start.isoformat()} must be before to {end.isoformat()}")
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            return await figures.stats(conn, category, start, end, rules, runtime.deps.rates)

    @api.get("/reports/weekly", summary="The quality and parts-accuracy figures of an ISO week", response_model=Weekly)
    async def weekly(
        request: Request,
        week: str | None = Query(None, description="ISO week such as 2026-W47; default: the last complete week"),
        _: Principal = require(*READ),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        rules = _rules(request)
        week = week or previous_week(runtime.clock.now(), rules.timezone)
        try:
            start, _ = week_bounds(week, rules.timezone)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except OverflowError:  # the week after 9999-W52
            raise HTTPException(422, f"week {week!r} is beyond any report; write it like 2026-W47") from None
        check_moments(week=start)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            return {
                "week": week,
                "quality": await figures.quality_weekly(conn, week, rules),
                "parts_accuracy": await figures.parts_accuracy_week(conn, week, rules),
            }

    @api.get("/reports/monthly", summary="The parts-shipment accuracy of a month (the supervisors' monthly report)",
             response_model=Monthly)
    async def monthly(
        request: Request,
        month: str | None = Query(None, description="a month such as 2026-11; default: the last complete month"),
        _: Principal = require(*READ),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        rules = _rules(request)
        zone = ZoneInfo(rules.timezone)
        if month is None:
            month = (runtime.clock.now().astimezone(zone).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        try:
            start, end = month_span(month, rules.timezone)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        check_moments(month=start)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            return {"month": start.strftime("%Y-%m"),
                    "parts_accuracy": await figures.parts_accuracy(conn, start, end, rules)}

    @api.get("/kpis", summary="Open alerts, defect reports and parts-shipment accuracy (target 98%)",
             response_model=Kpis)
    async def kpis(request: Request, _: Principal = require(*READ)) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            return await figures.kpis(conn, runtime.clock.now(), _rules(request))

    return api
