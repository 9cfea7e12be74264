"""The HTTP routes of rectification measures (docs/measures.md): record one, list them (by
status, owner, month) with their measured effect, show one, verify one.

Supervisors, quality engineers and department people record measures; a supervisor or a
quality engineer verifies them; everyone who reads complaints reads them, except a scoped agent
(measures are group-wide figures; a regional agent gets 403)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints import measure_handlers, measure_store
from services.complaints.measure_handlers import AlreadyVerified, MeasureNotFound
from services.complaints.measure_store import MeasureRow
from services.complaints.measures import STATUSES, MeasureRefused, check_due, check_owner, check_target
from services.complaints.reports import report_month
from services.complaints.schemas import MeasurePage, MeasureReport, MeasureView
from shared.api import (
    IfMatch,
    Page,
    PageParams,
    Sort,
    check_if_match,
    etag_of,
    make_page,
    page_params,
    problems,
    sort_param,
)
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.types import ComplaintCategory
from shared.events.upstream import Id, Name
from shared.http import Moment, Principal, outside_scope, require, runtime_of

RECORDERS = ("supervisor", "quality", "department")
VERIFIERS = ("supervisor", "quality")
READERS = ("agent", "supervisor", "quality", "department", "ops")
CATEGORIES: tuple[str, ...] = ComplaintCategory.__args__  # type: ignore[attr-defined]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RecordMeasure(_Body):
    target_kind: Literal["category", "alert"] = Field(
        description="category: it answers a complaint category; alert: a quality alert (its part category)")
    category: ComplaintCategory | None = Field(None, description="the complaint category (target_kind category)")
    alert_id: Id | None = Field(None, description="the quality alert (target_kind alert)")
    title: Name
    action: Text = Field(description="what will be done")
    owner: Id = Field(description="who carries it out: a person of the complaints directory (reminded by e-mail)")
    due_at: Moment = Field(description="when it should be in place; the reminder goes then")


class VerifyMeasure(_Body):
    verdict: Literal["effective", "not_effective"]
    note: Text = Field(description="what was checked and seen")
    at: Moment | None = Field(None, description="when it was checked (default now); may be back-dated, not ahead")


def _people(request: Request) -> frozenset[str]:
    directory = runtime_of(request).deps.tables.directory
    holders = [directory.default, *directory.departments.values()]
    return frozenset(p for h in holders for p in h.model_dump().values() if p)


def _unscoped(who: Principal) -> None:
    """Measures answer a complaint category or a quality alert of the whole group, and their effect
    counts every region's complaints and visits: no part of them is inside a regional scope, so a
    scoped agent (held to some regions or dealers) gets 403; the central hotline reads them."""
    if who.scoped:
        raise outside_scope(who, "rectification measures (group-wide figures)")


def measure_etag(m: MeasureRow) -> str:
    """A measure's ETag: the stored measure (recording, reminder, verification), not its effect,
    which grows with the after window."""
    return etag_of({k: v for k, v in asdict(m).items() if k != "correlation_id"})


def _month(request: Request, month: str | None) -> tuple[datetime, datetime] | None:
    if not month:
        return None
    try:
        return report_month(month, runtime_of(request).deps.rules.report_timezone)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


_PAGE = page_params(default_limit=50, max_limit=200)
_SORT = sort_param(measure_store.MEASURE_SORTS, default="due_at")
_SCOPED = {403: "rectification measures (group-wide figures) are outside your scope (regions: 华南; dealers: -); ask "
                "a colleague of that region or a supervisor"}
_MISSING = {404: "no rectification measure '3d6f1a2b-…'; list them with GET /v1/measures", **_SCOPED}
_Month = Annotated[str | None, Query(description="2026-11: those in force or settled that month, with the "
                                                 "figures as of its end")]


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["measures"])

    @r.post("/measures", status_code=201, response_model=MeasureView,
            responses={200: {"model": MeasureView, "description": "recorded before with this Idempotency-Key"}},
            summary="Record a rectification measure answering a complaint category or a quality alert, with its "
                    "owner and due date")
    async def record_measure(
        body: RecordMeasure, request: Request, response: Response, who: Principal = require(*RECORDERS),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        now = runtime.clock.now()
        try:
            check_target(body.target_kind, body.category, body.alert_id, CATEGORIES)
            check_owner(body.owner, _people(request))
            check_due(now, body.due_at)
        except MeasureRefused as exc:
            raise HTTPException(422, str(exc)) from None
        # The same Idempotency-Key is the same measure even after the stored answer has expired.
        idempotency_key = request.headers.get("Idempotency-Key")
        measure_id = (str(uuid5(AFTERSALES_NAMESPACE, f"measure:{who.subject}:{idempotency_key}"))
                      if idempotency_key else str(uuid.uuid4()))
        row = MeasureRow(
            measure_id=measure_id, target_kind=body.target_kind, category=body.category or "", alert_id=body.alert_id,
            title=body.title, action=body.action, owner=body.owner, due_at=body.due_at.astimezone(UTC),
            recorded_at=now, recorded_by=who.subject, reminded_at=None, verdict=None, verified_by=None,
            verified_at=None, verify_note=None, correlation_id=None,
        )
        async with runtime.transaction() as uow:
            try:
                stored, created = await measure_handlers.record(uow, row)
            except MeasureRefused as exc:
                raise HTTPException(422, str(exc)) from None
            [shown] = await measure_handlers.views(uow, [stored], uow.now())
        if not created:
            response.status_code = 200
        response.headers["ETag"] = measure_etag(stored)
        response.headers["Location"] = f"/v1/measures/{stored.measure_id}"
        return shown

    @r.get("/measures", response_model=MeasurePage, responses=problems(403, examples=_SCOPED),
           summary="Rectification measures with their effect: all, or those in force or settled in a month "
                   "(recorded before its end, not verified before its start); the counts are in "
                   "GET /v1/reports/measures")
    async def list_measures(
        request: Request,
        page: Annotated[PageParams, Depends(_PAGE)],
        sort: Annotated[Sort, Depends(_SORT)],
        month: _Month = None,
        status: Annotated[Literal[STATUSES] | None, Query()] = None,  # type: ignore[valid-type]
        owner: Annotated[str | None, Query(max_length=60)] = None,
        who: Principal = require(*READERS),
    ) -> Page[dict[str, Any]]:
        _unscoped(who)
        runtime = runtime_of(request)
        span = _month(request, month)
        now = runtime.clock.now()
        as_of = min(now, span[1]) if span else now
        async with runtime.transaction() as uow:
            rows = await measure_store.measures_page(
                uow.conn, starts_at=span[0] if span else None, ends_at=span[1] if span else None,
                owner=owner or None, status=status, now=uow.now(), due_soon=runtime.deps.rules.measures.due_soon,
                sort=sort, cursor=page.cursor, limit=page.limit)
            found = make_page(rows, page.limit, sort, lambda m: (getattr(m, sort.key), m.measure_id))
            items = await measure_handlers.views(uow, found.items, as_of)
        return Page[dict[str, Any]](items=items, next_cursor=found.next_cursor, limit=found.limit)

    @r.get("/reports/measures", response_model=MeasureReport, response_model_by_alias=True,
           responses=problems(403, examples=_SCOPED),
           summary="The rectification measures' figures: how many open, due, overdue and verified (all, or those "
                   "of a month), and the window and confidence their effect is measured with")
    async def measure_report(request: Request, month: _Month = None,
                             who: Principal = require(*READERS)) -> dict[str, Any]:
        _unscoped(who)
        runtime = runtime_of(request)
        span = _month(request, month)
        rules = runtime.deps.rules.measures
        async with runtime.transaction() as uow:
            now = uow.now()
            rows = await measure_store.measures(uow.conn, starts_at=span[0] if span else None,
                                                ends_at=span[1] if span else None)
        statuses = [measure_handlers.measure_status(m, now, rules) for m in rows]
        return {"month": month, "from": span[0] if span else None, "to": span[1] if span else None,
                "as_of": min(now, span[1]) if span else now, "window_days": rules.window.days,
                "confidence": rules.confidence, "counts": {s: statuses.count(s) for s in STATUSES}}

    @r.get("/measures/{measure_id}", response_model=MeasureView, responses=problems(404, examples=_MISSING),
           summary="One rectification measure with its effect now (ETag: send it as If-Match to verify)")
    async def get_measure(measure_id: str, request: Request, response: Response,
                          who: Principal = require(*READERS)) -> dict[str, Any]:
        _unscoped(who)
        runtime = runtime_of(request)
        async with runtime.transaction() as uow:
            row = await measure_store.measure(uow.conn, measure_id)
            if row is None:
                raise HTTPException(404, str(MeasureNotFound(measure_id)))
            [shown] = await measure_handlers.views(uow, [row], uow.now())
        response.headers["ETag"] = measure_etag(row)
        return shown

    @r.post("/measures/{measure_id}/verify", response_model=MeasureView,
            responses=problems(404, 409, 412, examples={
                **_MISSING, 409: "measure 3d6f1a2b-… was verified effective by chen.jing at "
                                 "2026-12-15T10:00:00+08:00; a new check is a new measure"}),
            summary="Verify a measure: carried out and effective or not, with what was seen (the effect at that "
                    "moment is kept)")
    async def verify_measure(measure_id: str, body: VerifyMeasure, request: Request, response: Response,
                             if_match: IfMatch = None, who: Principal = require(*VERIFIERS)) -> dict[str, Any]:
        runtime = runtime_of(request)
        now = runtime.clock.now()
        at = body.at or now
        if at > now:
            raise HTTPException(422, f"at {at.isoformat()} is in the future (now is {now.isoformat()})")
        async with runtime.transaction() as uow:
            current = await measure_store.measure(uow.conn, measure_id, lock=True)
            if current is None:
                raise HTTPException(404, str(MeasureNotFound(measure_id)))
            check_if_match(if_match, measure_etag(current))
            try:
                row = await measure_handlers.verify(uow, measure_id, verdict=body.verdict, by=who.subject,
                                                    note=body.note, at=at)
            except MeasureNotFound as exc:
                raise HTTPException(404, str(exc)) from None
            except AlreadyVerified as exc:
                raise HTTPException(409, str(exc)) from None
            except MeasureRefused as exc:
                raise HTTPException(422, str(exc)) from None
            [shown] = await measure_handlers.views(uow, [row], uow.now())
        response.headers["ETag"] = measure_etag(row)
        return shown

    return r
