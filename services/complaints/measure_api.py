"""The HTTP routes of rectification measures (docs/measures.md): record one, list them (by
status, owner, month) with their measured effect, show one, verify one.

Supervisors, quality engineers and department people record measures; a supervisor or a
quality engineer verifies them; everyone who reads complaints reads them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints import measure_handlers, measure_store
from services.complaints.measure_handlers import AlreadyVerified, MeasureNotFound
from services.complaints.measure_store import MeasureRow
from services.complaints.measures import STATUSES, MeasureRefused, check_due, check_owner, check_target
from services.complaints.reports import report_month
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.types import ComplaintCategory
from shared.events.upstream import Id, Name
from shared.http import Moment, Principal, require, runtime_of

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


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["measures"])

    @r.post("/measures", status_code=201, summary="Record a rectification measure answering a complaint category "
                                                  "or a quality alert, with its owner and due date")
    async def record_measure(
        body: RecordMeasure, request: Request, response: Response, who: Principal = require(*RECORDERS),
        idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        now = runtime.clock.now()
        try:
            check_target(body.target_kind, body.category, body.alert_id, CATEGORIES)
            check_owner(body.owner, _people(request))
            check_due(now, body.due_at)
        except MeasureRefused as exc:
            raise HTTPException(422, str(exc)) from None
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
        return shown

    @r.get("/measures", summary="Rectification measures with their effect: all, or those in force or settled in "
                                "a month (recorded before its end, not verified before its start)")
    async def list_measures(
        request: Request,
        month: Annotated[str | None, Query(description="2026-11: the figures as of that month's end")] = None,
        status: Annotated[Literal[STATUSES] | None, Query()] = None,  # type: ignore[valid-type]
        owner: Annotated[str | None, Query(max_length=60)] = None,
        _: Principal = require(*READERS),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        zone = runtime.deps.rules.report_timezone
        now = runtime.clock.now()
        span: tuple[datetime, datetime] | None = None
        if month:
            try:
                span = report_month(month, zone)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        as_of = min(now, span[1]) if span else now
        async with runtime.transaction() as uow:
            rows = await measure_store.measures(uow.conn, starts_at=span[0] if span else None,
                                                ends_at=span[1] if span else None, owner=owner or None)
            items = await measure_handlers.views(uow, rows, as_of)
        if status:
            items = [m for m in items if m["status"] == status]
        counts = {s: sum(m["status"] == s for m in items) for s in STATUSES}
        return {"month": month, "from": span[0] if span else None, "to": span[1] if span else None,
                "as_of": as_of, "window_days": runtime.deps.rules.measures.window.days,
                "confidence": runtime.deps.rules.measures.confidence, "counts": counts, "items": items}

    @r.get("/measures/{measure_id}", summary="One rectification measure with its effect now")
    async def get_measure(measure_id: str, request: Request, _: Principal = require(*READERS)) -> dict[str, Any]:
        runtime = runtime_of(request)
        async with runtime.transaction() as uow:
            row = await measure_store.measure(uow.conn, measure_id)
            if row is None:
                raise HTTPException(404, str(MeasureNotFound(measure_id)))
            [shown] = await measure_handlers.views(uow, [row], uow.now())
        return shown

    @r.post("/measures/{measure_id}/verify", summary="Verify a measure: carried out and effective or not, with "
                                                     "what was seen (the effect at that moment is kept)")
    async def verify_measure(measure_id: str, body: VerifyMeasure, request: Request,
                             who: Principal = require(*VERIFIERS)) -> dict[str, Any]:
        runtime = runtime_of(request)
        now = runtime.clock.now()
        at = body.at or now
        if at > now:
            raise HTTPException(422, f"at {at.isoformat()} is in the future (now is {now.isoformat()})")
        async with runtime.transaction() as uow:
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
        return shown

    return r
