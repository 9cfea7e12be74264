"""The quality inspection department's HTTP API: early-warning alerts (list, inspect,
acknowledge, close with a containment note), defect statistics, the weekly reports, KPIs.

Roles: `quality` reads and acts; `ops` reads."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.quality import figures, recall_store, store
from services.quality.config import QualityRules
from services.quality.domain import (
    ALERT_STATES,
    OPEN_STATES,
    Cell,
    IllegalTransition,
    allowed_actions,
    previous_week,
    transition,
    week_bounds,
)
from services.quality.monitor import EventRef, alert_title
from services.quality.recall_api import recall_json, recall_router, split_reports
from shared.events import canonical as c
from shared.http import Principal, check_moments, check_paging, require, runtime_of
from shared.timeutil import month_span

READ = ("quality", "supervisor", "ops")  # supervisors read the alerts and the weekly figures
ACT = ("quality",)


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


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"], "title": alert_title(row), "cell": row["cell"], "rule": row["rule"],
        "state": row["state"], "allowed_actions": allowed_actions(row["state"]),
        "observed": row["observed"], "expected": row["expected"], "statistic": row["statistic"],
        "p_value": row["p_value"], "threshold": row["threshold"], "as_of": row["as_of"], "since": row["since"],
        "details": row["details"], "report_ids": row["report_ids"], "vins": row["vins"], "revision": row["revision"],
        "raised_at": row["raised_at"], "updated_at": row["updated_at"],
        "acknowledged_at": row["acknowledged_at"], "acknowledged_by": row["acknowledged_by"],
        "acknowledge_note": row["acknowledge_note"], "closed_at": row["closed_at"], "closed_by": row["closed_by"],
        "close_note": row["close_note"],
    }


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


def router() -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["quality"])
    api.include_router(recall_router())

    @api.get("/alerts", summary="Early-warning alerts, newest first")
    async def list_alerts(
        request: Request,
        state: str | None = Query(None, description="raised, acknowledged, closed, or open (= raised + acknowledged)"),
        category: str | None = Query(None, description="part category, e.g. controller"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
        _: Principal = require(*READ),
    ) -> dict[str, Any]:
        check_paging(offset=offset)
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
            total, rows = await store.list_alerts(conn, states, category, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "alerts": [alert_json(r) for r in rows]}

    @api.get("/alerts/{alert_id}", summary="One alert with the reports and vehicles behind it")
    async def get_alert(request: Request, alert_id: str, _: Principal = require(*READ)) -> dict[str, Any]:
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
        return {**alert_json(row), "reports": reports, "reports_by_inspection": split_reports(reports, inspections),
                "recall": recall_json(recall) if recall else None,
                "by_month_in_service": by_month_in_service(ages, reported, rates.rate(cell.category))}

    async def act(request: Request, alert_id: str, action: str, note: str | None, who: Principal) -> dict[str, Any]:
        runtime = runtime_of(request)
        async with runtime.transaction() as uow:
            found = await store.alert(uow.conn, alert_id)
            if found is None:
                raise HTTPException(404, f"no alert {alert_id!r}; list the alerts with GET /v1/alerts")
            await store.locked_cells(uow.conn, [found["cell_key"]])  # lock order: cell, then alert
            row = await store.alert(uow.conn, alert_id, lock=True)
            assert row is not None
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
        return alert_json(updated)

    @api.post("/alerts/{alert_id}/acknowledge", summary="The quality department takes the alert on")
    async def acknowledge(request: Request, alert_id: str, body: AcknowledgeBody | None = None,
                          who: Principal = require(*ACT)) -> dict[str, Any]:
        return await act(request, alert_id, "acknowledge", body.note if body else None, who)

    @api.post("/alerts/{alert_id}/close", summary="Close an acknowledged alert with its containment note")
    async def close(request: Request, alert_id: str, body: CloseBody, who: Principal = require(*ACT)) -> dict[str, Any]:
        return await act(request, alert_id, "close", body.note, who)

    @api.get("/stats", summary="Defects by category, batch, supplier; units in service and rates for a category")
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

    @api.get("/reports/weekly", summary="The quality and parts-accuracy figures of an ISO week")
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

    @api.get("/reports/monthly", summary="The parts-shipment accuracy of a month (the supervisors' monthly report)")
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

    @api.get("/kpis", summary="Open alerts, defect reports and parts-shipment accuracy (target 98%)")
    async def kpis(request: Request, _: Principal = require(*READ)) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            return await figures.kpis(conn, runtime.clock.now(), _rules(request))

    return api
