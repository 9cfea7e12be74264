"""Follow-up's HTTP routes for feedback items (customer concerns): an agent sees and answers the
items they own, a supervisor all of them (and the escalated ones are theirs to see to)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from services.followup import feedback_items as items
from services.followup import models as m
from services.followup.feedback import FeedbackRefused
from shared.api import Page, PageParams, Sort, SortKey, make_page, page_doc, page_params, problems, sort_param
from shared.db import acquire
from shared.http import Principal, check_moments, require, runtime_of

STATES = ("open", "escalated", "answered", "closed")
Paging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=200))]
ItemSort = Annotated[Sort, Depends(sort_param({"opened_at": SortKey("opened_at", "timestamptz")},
                                              default="-opened_at"))]


def feedback_router() -> APIRouter:
    r = APIRouter(tags=["feedback items"])

    @r.get("/v1/feedback-items", response_model=Page[m.FeedbackItem], responses=page_doc(m.FeedbackItem),
           summary="Feedback items: an agent's own, or (supervisor) everyone's; newest first by default")
    async def list_items(
        request: Request, paging: Paging, sort: ItemSort, state: str | None = None, owner: str | None = None,
        department: str | None = None, customer: str | None = None, who: Principal = require("agent", "supervisor"),
    ) -> Page[Any]:
        if state is not None and state not in STATES:
            raise HTTPException(422, f"state {state!r} is not one of {', '.join(STATES)}")
        if who.role == "agent":
            if owner not in (None, who.subject):
                raise HTTPException(403, "an agent sees the feedback items they own; a supervisor sees everyone's")
            owner = who.subject
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await items.listing(conn, owner=owner, state=state, department=department, customer=customer,
                                       sort=sort, cursor=paging.cursor, limit=paging.limit + 1)
        return make_page(rows, paging.limit, sort, lambda i: (i["opened_at"], i["item_id"]))

    @r.get("/v1/feedback-items/figures", response_model=m.FeedbackFigures,
           summary="Items opened in a period: answered in time, escalated, still open, departments notified")
    async def item_figures(
        request: Request, since: datetime | None = Query(None, alias="from"),
        until: datetime | None = Query(None, alias="to"), who: Principal = require("supervisor", "ops"),
    ) -> dict[str, Any]:
        check_moments(**{"from": since, "to": until})
        runtime = runtime_of(request)
        until = until or runtime.clock.now()
        since = since or until - timedelta(days=runtime.deps.rules.kpi_window_days)
        if since >= until:
            raise HTTPException(422, f"from ({since.isoformat()}) must be before to ({until.isoformat()})")
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            figures = await items.figures(conn, since, until)
        return figures | {"from": since, "to": until}

    @r.get("/v1/feedback-items/{item_id}", response_model=m.FeedbackItem, responses=problems(404),
           summary="A feedback item with its history")
    async def get_item(request: Request, item_id: str,
                       who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            row = await items.get(conn, item_id)
        if row is None:
            raise HTTPException(404, f"no feedback item {item_id!r}")
        if who.role == "agent" and row["owner"] != who.subject:
            raise HTTPException(403, f"feedback item {item_id} belongs to {row['owner']}")
        return items.public(row)

    @r.post("/v1/feedback-items/{item_id}/solution", response_model=m.FeedbackItem, responses=problems(404, 409),
            summary="Record the solution: the customer is told today (SMS, or a call task) and called again "
                    "a few days later to confirm")
    async def record_solution(request: Request, item_id: str, body: items.SolutionIn,
                              who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        try:
            async with runtime_of(request).transaction() as uow:
                return await items.record_solution(uow, item_id, who.subject, who.role == "supervisor", body)
        except FeedbackRefused as exc:
            raise HTTPException(exc.status, exc.message) from None

    return r
