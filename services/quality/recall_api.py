"""The quality department's recall routes: confirm an alert as a batch problem (containment
action required) and announce its recall, list the vehicles the batch is in, follow the
campaign per dealer (reached, booked, inspected, part replaced), and see the defect reports
that came since, those of inspected vehicles apart.

Roles: `quality` confirms; `quality`, `supervisor` and `ops` read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.quality import recall_store, recalls, store
from services.quality.api_models import (
    RECALL_SORTS,
    AffectedVehicles,
    Confirmed,
    RecallDetail,
    RecallSummary,
    alert_etag,
)
from services.quality.domain import Cell
from services.quality.recall import NotRecallable, after_inspection, progress_by_dealer, recall_target
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
from shared.http import Moment, Principal, require, runtime_of

READ = ("quality", "supervisor", "ops")
ACT = ("quality",)
NOT_FOUND = "no alert 'QA-404'; list the alerts with GET /v1/alerts"


class ConfirmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    containment: str = Field(min_length=1, max_length=4000, description=(
        "the containment action taken on the batch: parts on hold, stock quarantined, supplier 8D, …"))
    batch: str | None = Field(None, min_length=1, max_length=200, description=(
        "the batch found at fault; required for an alert on a supplier's parts on a model, which names no batch"))
    title: str | None = Field(None, min_length=1, max_length=300, description="the campaign's title for the owners")
    address: str | None = Field(None, min_length=1, max_length=500, description="where the owners bring the vehicle")
    starts_at: Moment | None = Field(None, description="default: the confirmation + 14 days (calls due at once)")
    ends_at: Moment | None = Field(None, description="default: starts_at + 90 days")


def recall_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("campaign_id", "alert_id", "category", "batch", "supplier_id", "containment",
                                "confirmed_at", "confirmed_by", "title", "address", "starts_at", "ends_at")}


def split_reports(reports: list[dict[str, Any]], inspections: dict[str, list[Any]]) -> dict[str, Any]:
    """Reports flagged `inspected` (their vehicle was inspected in a recall of that category
    before the report), and the two groups counted apart."""
    for r in reports:
        r["inspected"] = bool(r.get("vin")) and after_inspection(r["category"], r["reported_at"],
                                                                 inspections.get(r["vin"], []))
    return {"not_inspected": sum(1 for r in reports if not r["inspected"]),
            "inspected": sum(1 for r in reports if r["inspected"])}


# The paging and sort parameters of each list (module level: one dependency each)
RecallPaging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=200))]
RecallSort = Annotated[Sort, Depends(sort_param(RECALL_SORTS, default="-confirmed_at"))]


async def _record(conn: Any, runtime: Any, who: Principal, route: str, subject: str, asked: dict[str, Any],
                  rows: int) -> None:
    """An answer listing vehicle owners is an export of customer data: it is recorded (issue 19)."""
    await recall_store.record_owner_list(conn, at=runtime.clock.now(), reader=who.subject, role=who.role, route=route,
                                         subject=subject, filter={k: v for k, v in asked.items() if v}, rows=rows)


def recall_router() -> APIRouter:
    api = APIRouter(tags=["quality: recalls"])

    @api.post("/alerts/{alert_id}/confirm", response_model=Confirmed,
              responses=problems(404, 409, 412, examples={
                  404: NOT_FOUND, 409: "alert QA-2026-0042 was confirmed as a batch problem at "
                                       "2026-11-18T14:05:00+08:00 by zhao.min; its recall is RC-QA-2026-0042"}),
              summary="Confirm an alert as a batch problem with its containment action; announce the recall")
    async def confirm(request: Request, response: Response, alert_id: str, body: ConfirmBody,
                      if_match: IfMatch = None, who: Principal = require(*ACT)) -> dict[str, Any]:
        """With If-Match (the alert's ETag as read), refused with 412 when the alert changed since."""
        runtime = runtime_of(request)
        current: list[str] = []

        def unchanged(row: dict[str, Any]) -> None:
            current.append(alert_etag(row))
            check_if_match(if_match, current[0])

        try:
            async with runtime.transaction() as uow:
                done = await recalls.confirm(uow, alert_id, who.subject, containment=body.containment,
                                             batch=body.batch, title=body.title, address=body.address,
                                             starts_at=body.starts_at, ends_at=body.ends_at, precondition=unchanged)
        except recalls.ConfirmRefused as exc:
            raise HTTPException(exc.status, exc.detail) from None
        response.headers["ETag"] = current[0]  # the alert itself is unchanged: its recall is new
        return done

    @api.get("/alerts/{alert_id}/affected-vehicles", response_model=AffectedVehicles,
             responses=problems(404, examples={404: NOT_FOUND}),
             summary="Every vehicle carrying the alert's batch, with owner, region and dealer")
    async def affected(request: Request, alert_id: str,
                       batch: str | None = Query(None, description="for an alert on a supplier's parts on a model"),
                       who: Principal = require(*READ)) -> dict[str, Any]:
        """Once the alert is confirmed: the recall's vehicles as of the confirmation, with their
        progress. Before: the vehicles that carry the batch now (what a confirmation would recall).
        Each answer is recorded (owner_list_reads: who, when, which alert, the batch asked, how many)."""
        runtime = runtime_of(request)
        assert runtime.pool is not None
        route = "GET /v1/alerts/{alert_id}/affected-vehicles"
        async with runtime.pool.acquire() as conn:
            row = await store.alert(conn, alert_id)
            if row is None:
                raise HTTPException(404, f"no alert {alert_id!r}; list the alerts with GET /v1/alerts")
            done = await recall_store.recall_of_alert(conn, alert_id)
            if done is not None:
                vehicles = await recall_store.recall_vehicles(conn, done["campaign_id"])
                await _record(conn, runtime, who, route, alert_id, {"batch": batch}, len(vehicles))
                return {"alert_id": alert_id, "confirmed": True, "campaign_id": done["campaign_id"],
                        "category": done["category"], "batch": done["batch"], "supplier_id": done["supplier_id"],
                        "total": len(vehicles), "vehicles": vehicles}
            try:
                target = recall_target(Cell.from_key(row["cell_key"]), batch)
            except NotRecallable as exc:
                raise HTTPException(422, str(exc)) from None
            vehicles = await recall_store.affected_vehicles(conn, target)
            await _record(conn, runtime, who, route, alert_id, {"batch": batch}, len(vehicles))
        return {"alert_id": alert_id, "confirmed": False, "campaign_id": None, "category": target.category,
                "batch": target.batch, "supplier_id": target.supplier_id, "total": len(vehicles),
                "vehicles": vehicles}

    @api.get("/recalls", summary="Recall campaigns from confirmed batch problems, with their progress",
             response_model=Page[RecallSummary], responses=page_doc(RecallSummary, 50))
    async def list_recalls(
        request: Request,
        sort: RecallSort,
        paging: RecallPaging,
        _: Principal = require(*READ),
    ) -> Page[RecallSummary]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            found = []
            for r in await recall_store.list_recalls(conn, paging.limit + 1, sort, paging.cursor):
                vehicles = await recall_store.recall_vehicles(conn, r["campaign_id"])
                found.append(RecallSummary(**recall_json(r), progress=progress_by_dealer(vehicles)["total"]))
        return make_page(found, paging.limit, sort, lambda x: (getattr(x, sort.key), x.campaign_id))

    @api.get("/recalls/{campaign_id}", response_model=RecallDetail,
             responses=problems(404, examples={404: "no recall 'RC-404'; list them with GET /v1/recalls"}),
             summary="A recall's progress per dealer, its vehicles, and the defect reports since, inspected apart")
    async def get_recall(request: Request, campaign_id: str, who: Principal = require(*READ)) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            r = await recall_store.recall(conn, campaign_id)
            if r is None:
                raise HTTPException(404, f"no recall {campaign_id!r}; list them with GET /v1/recalls")
            vehicles = await recall_store.recall_vehicles(conn, campaign_id)
            await _record(conn, runtime, who, "GET /v1/recalls/{campaign_id}", campaign_id, {}, len(vehicles))
            reports = await recall_store.reports_since(conn, campaign_id, r["confirmed_at"])
            inspections = await recall_store.inspections(conn, [x["vin"] for x in reports])
        counts = split_reports(reports, inspections)
        return {**recall_json(r), "progress": progress_by_dealer(vehicles), "vehicles": vehicles,
                "reports_since_confirmation": {
                    **counts,
                    "not_inspected_reports": [x for x in reports if not x["inspected"]],
                    "inspected_reports": [x for x in reports if x["inspected"]],
                }}

    return api
