"""The complaints HTTP API for complaint handlers (role agent), supervisors (role supervisor)
and operations (read only). Thin: each route parses, calls the domain through
`commands.on_case`, and shows the case.

Errors say what to do: 404 names the missing case, 409 names the actions allowed from the
case's state, 422 says which field is wrong and why."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints import commands, store
from services.complaints.commands import CaseNotFound, Filing
from services.complaints.config import ComplaintsDeps
from services.complaints.documents import TEXT_TYPES, content_matches
from services.complaints.domain import STATES, Case, Document, IllegalTransition, Intake, Refused
from services.complaints.reports import (
    ReportWeek,
    kpi_figures,
    report_month,
    report_week,
    sla_compliance_between,
    sla_compliance_by_week,
    step_outcomes,
)
from shared.events.types import ComplaintCategory, ComplaintChannel, Severity
from shared.events.upstream import Id, Name, Phone, Reference, Vin
from shared.http import Moment, Principal, check_moments, check_paging, outside_scope, require, runtime_of
from shared.runtime import ServiceRuntime
from shared.timeutil import iso_week
from shared.uow import UnitOfWork

Uow = UnitOfWork[ComplaintsDeps]

# "department": a person of the department a case is routed to, working it from the console;
# the console token names the department and this API shows and lets them work only its cases.
HANDLERS = ("agent", "supervisor", "department")
READERS = ("agent", "supervisor", "department", "ops")
# Filing a case and the figures of all departments stay with customer service and operations.
FILERS = ("agent", "supervisor")
FIGURES = ("agent", "supervisor", "ops")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Step(_Body):
    at: Moment | None = Field(None, description="when it happened (default now); may be back-dated, not ahead")
    note: Text | None = None


class FileComplaint(_Body):
    complaint_ref: Reference | None = Field(
        None, description="the CRM reference (A-Z, 0-9, '-', '_', '/'; it is printed in SMS); one is generated if absent")
    customer_id: Id
    phone: Phone | None = None
    vin: Vin | None = None
    channel: ComplaintChannel = "hotline"
    category: ComplaintCategory | None = None
    severity: Severity | None = None
    part_category: Name | None = None
    description: Text
    filed_at: Moment | None = Field(None, description="when the customer complained (default now)")
    dealer_id: Id | None = Field(None, description="the vehicle's dealer (the figures by dealer)")
    region: Name | None = Field(None, description="the vehicle's region (the figures by region)")


class Assign(Step):
    assignee: Name


class Pend(Step):
    reason: Text


class Resolve(Step):
    resolution: Text


class Comment(_Body):
    text: Text


class Close(Step):
    satisfied: bool | None = None


class Reopen(Step):
    reason: Text


class AttachDocument(_Body):
    title: Name
    kind: Literal[
        "handling_report", "complaint_form", "correspondence", "inspection_report", "customer_statement", "photo",
        "recording", "other",
    ] = "handling_report"
    filename: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="the original file name, kept as metadata only"
    )
    content_type: Literal[
        "text/plain", "text/markdown", "image/jpeg", "image/png", "image/webp", "application/pdf", "audio/mpeg",
        "audio/wav", "audio/mp4", "audio/ogg",
    ] = "text/plain"
    content: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        None, description="the text of a text/plain or text/markdown document")
    content_base64: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        None, description="the bytes of a photo, PDF or recording, base64; checked against content_type")

    def data(self) -> bytes:
        """The document's bytes; ValueError says what is wrong with the body."""
        if self.content_type in TEXT_TYPES:
            if self.content is None or self.content_base64 is not None:
                raise ValueError(f"a {self.content_type} document sends its text as `content`")
            return self.content.encode("utf-8")
        if self.content_base64 is None or self.content is not None:
            raise ValueError(f"a {self.content_type} document sends its bytes as `content_base64`")
        try:
            return base64.b64decode(self.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("content_base64 is not valid base64") from None


def _problem(exc: Exception) -> HTTPException:
    if isinstance(exc, IllegalTransition):
        return HTTPException(409, {"message": str(exc), "state": exc.state, "action": exc.action,
                                   "allowed": exc.allowed})
    if isinstance(exc, CaseNotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, Refused):
        return HTTPException(422, str(exc))
    raise exc


def _scope(who: Principal) -> str | None:
    """The one department a `department` person may see and work (None: every department)."""
    return who.department if who.role == "department" else None


def _check_scope(who: Principal, case: Case) -> None:
    """A case routed elsewhere does not exist for a department person (404, as for any case); a
    scoped agent gets 403 for a case of another region and dealer (docs/security.md)."""
    scope = _scope(who)
    if scope is not None and case.department != scope:
        raise CaseNotFound(case.complaint_id)
    if not who.covers(case.region, case.dealer_id):
        raise outside_scope(who, f"case {case.complaint_id}")


async def _run(
    runtime: ServiceRuntime, complaint_id: str, apply: Callable[[Uow, Case], Awaitable[None]], who: Principal,
) -> dict[str, Any]:
    async def scoped(uow: Uow, case: Case) -> None:
        _check_scope(who, case)
        await apply(uow, case)

    try:
        case = await commands.on_case(runtime.transaction, complaint_id, scoped)
    except (IllegalTransition, CaseNotFound, Refused) as exc:
        raise _problem(exc) from None
    return commands.case_view(case)


def _step(action: str, principal: Principal, body: Step, **detail: Any) -> Callable[[Uow, Case], Awaitable[None]]:
    async def apply(uow: Uow, case: Case) -> None:
        now = uow.now()
        case.act(action, at=body.at or now, now=now, actor=principal.subject, note=body.note, **detail)

    return apply


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["complaints"])

    @r.post("/complaints", status_code=201, summary="File a complaint (a handler taking it by phone, letter …)")
    async def file_complaint(body: FileComplaint, request: Request, response: Response,
                             who: Principal = require(*FILERS)) -> dict[str, Any]:
        runtime = runtime_of(request)
        now = runtime.clock.now()
        filed_at = body.filed_at or now
        if filed_at > now:
            raise HTTPException(422, f"filed_at {filed_at.isoformat()} is in the future (now is {now.isoformat()})")
        intake = Intake(
            complaint_ref=body.complaint_ref or f"CS-{uuid.uuid4().hex[:16]}", customer_id=body.customer_id,
            phone=body.phone, vin=body.vin, channel=body.channel, description=body.description, filed_at=filed_at,
            followup_id=None, source="http", dealer_id=body.dealer_id, region=body.region,
        )
        async with runtime.transaction() as uow:
            [(case, created)] = await commands.file_complaints(uow, [Filing(
                intake, body.category, body.severity, body.part_category, actor=who.subject)])
        if not created:
            response.status_code = 200  # the same complaint_ref is the same case
        return commands.case_view(case)

    @r.get("/complaints", summary="List cases (filter by state, level, department, breached …), newest first")
    async def list_cases(
        request: Request,
        state: Annotated[Literal[STATES] | None, Query()] = None,  # type: ignore[valid-type]
        level: Annotated[int | None, Query(ge=0, le=3, description="0 handler … 3 superior leader")] = None,
        department: str | None = None,
        breached: bool | None = None,
        category: ComplaintCategory | None = None,
        severity: Severity | None = None,
        assignee: str | None = None,
        vin: Annotated[list[str] | None, Query(max_length=500, description="any of these VINs")] = None,
        q: Annotated[str | None, Query(max_length=200, description="text in the reference, description, "
                                                                     "customer id or VIN")] = None,
        filed_from: Moment | None = None,
        filed_before: Moment | None = None,
        sort: Annotated[Literal["filed", "deadline"], Query(
            description="filed: newest first; deadline: the nearest SLA deadline first (none last)")] = "filed",
        limit: Annotated[int, Query(ge=1)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
        who: Principal = require(*READERS),
    ) -> dict[str, Any]:
        check_paging(offset=offset)
        scope = _scope(who)
        if scope is not None:
            if department not in (None, scope):
                raise HTTPException(403, f"a {scope} department person sees the cases routed to {scope} only, "
                                         f"not {department}'s")
            department = scope
        runtime = runtime_of(request)
        maximum = runtime.deps.rules.max_page_size
        if limit > maximum:
            raise HTTPException(422, f"limit {limit} is above the maximum page size {maximum}; page with offset")
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            items, total = await store.list_cases(
                conn, store.CaseFilter(state, level, department, breached, category, severity, assignee, vin, q,
                                       filed_from, filed_before, *who.scope_params()),
                limit=limit, offset=offset, sort=sort,
            )
        return {"items": items, "total": total, "limit": limit, "offset": offset,
                "next_offset": offset + limit if offset + limit < total else None}

    @r.get("/complaints/{complaint_id}", summary="One case with its SLA figures and full timeline")
    async def get_case(complaint_id: str, request: Request, who: Principal = require(*READERS)) -> dict[str, Any]:
        runtime = runtime_of(request)
        async with runtime.transaction() as uow:
            case = (await commands.load(uow, [complaint_id], lock=False)).get(complaint_id)
            if case is None or (_scope(who) not in (None, case.department)):
                raise _problem(CaseNotFound(complaint_id))
            _check_scope(who, case)
            case.refresh(uow.now())
        return commands.case_view(case)

    @r.post("/complaints/{complaint_id}/acknowledge", summary="The handler has seen the case (stops the 4 h clock)")
    async def acknowledge(complaint_id: str, request: Request, body: Step | None = None,
                          who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("acknowledge", who, body or Step()), who)

    @r.post("/complaints/{complaint_id}/assign", summary="Give the case to a handler (or re-assign it)")
    async def assign(complaint_id: str, body: Assign, request: Request,
                     who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("assign", who, body, assignee=body.assignee), who)

    @r.post("/complaints/{complaint_id}/comments", summary="Add a comment to the timeline")
    async def comment(complaint_id: str, body: Comment, request: Request,
                      who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        async def apply(uow: Uow, case: Case) -> None:
            now = uow.now()
            case.comment(body.text, at=now, now=now, actor=who.subject)

        return await _run(runtime_of(request), complaint_id, apply, who)

    @r.post("/complaints/{complaint_id}/pend", summary="Wait for the customer (pending_customer: the clock pauses)")
    async def pend(complaint_id: str, body: Pend, request: Request,
                   who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("pend", who, body, reason=body.reason), who)

    @r.post("/complaints/{complaint_id}/resume", summary="The customer answered (the clock runs again)")
    async def resume(complaint_id: str, request: Request, body: Step | None = None,
                     who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("resume", who, body or Step()), who)

    @r.post("/complaints/{complaint_id}/resolve", summary="Resolved (resolution text required); cancels escalations")
    async def resolve(complaint_id: str, body: Resolve, request: Request,
                      who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id,
                          _step("resolve", who, body, resolution=body.resolution), who)

    @r.post("/complaints/{complaint_id}/close", summary="Close without the confirmation call (supervisor)")
    async def close(complaint_id: str, body: Close, request: Request,
                    who: Principal = require("supervisor")) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step(
            "close", who, body, satisfied=body.satisfied, confirmation="closed_by_supervisor"), who)

    @r.post("/complaints/{complaint_id}/reopen", summary="Reopen (the customer is not satisfied); clocks restart")
    async def reopen(complaint_id: str, body: Reopen, request: Request,
                     who: Principal = require("supervisor")) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("reopen", who, body, reason=body.reason), who)

    @r.post("/complaints/{complaint_id}/documents", status_code=201, summary="Attach a handling document (text)")
    async def attach(complaint_id: str, body: AttachDocument, request: Request,
                     who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        runtime = runtime_of(request)
        try:
            data = body.data()
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        size = len(data)
        limit = runtime.deps.rules.max_document_bytes
        if size > limit:
            raise HTTPException(413, f"the document has {size} bytes; the limit is {limit}: split it or summarise")
        if not content_matches(body.content_type, data):
            raise HTTPException(415, f"the file is not {body.content_type}: its first bytes say otherwise; send it "
                                     "with its real type (text, JPEG/PNG/WebP, PDF, MP3/WAV/M4A/OGG)")
        document_id = str(uuid.uuid4())  # chosen here, so a retried transaction rewrites the same file

        async def apply(uow: Uow, case: Case) -> None:
            now = uow.now()
            written = await commands.files(uow).write(case.complaint_id, document_id, data, body.content_type)
            case.attach(Document(
                document_id=document_id, kind=body.kind, title=body.title, filename=body.filename,
                content_type=body.content_type, size_bytes=written.size_bytes, sha256=written.sha256,
                path=written.path, added_by=who.subject, added_at=now,
                filed_at=now if case.state == "closed" else None,
            ), now)

        view = await _run(runtime, complaint_id, apply, who)
        return next(d for d in view["documents"] if d["document_id"] == document_id)

    async def stored(request: Request, complaint_id: str, document_id: str, who: Principal) -> tuple[Document, bytes]:
        """A document's row and its bytes, checked against the checksum taken when it was stored."""
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            scope = _scope(who)
            if scope is not None and await store.case_department(conn, complaint_id) != scope:
                raise _problem(CaseNotFound(complaint_id))
            if who.scoped and not await store.case_in_scope(conn, complaint_id, *who.scope_params()):
                raise outside_scope(who, f"case {complaint_id}")
            found = await store.document(conn, complaint_id, document_id)
        if found is None:
            raise HTTPException(404, f"case {complaint_id!r} has no document {document_id!r}; "
                                     f"GET /v1/complaints/{complaint_id} lists its documents")
        data = await runtime.deps.documents.read_bytes(found.path)
        if hashlib.sha256(data).hexdigest() != found.sha256:
            raise HTTPException(500, f"document {document_id!r} on disk does not match its sha256 {found.sha256}: "
                                     "it changed after it was stored; restore it from the backup")
        return found, data

    @r.get("/complaints/{complaint_id}/documents/{document_id}", summary="A handling document (text inline)")
    async def get_document(complaint_id: str, document_id: str, request: Request,
                           who: Principal = require(*READERS)) -> dict[str, Any]:
        found, data = await stored(request, complaint_id, document_id, who)
        if found.content_type in TEXT_TYPES:
            return {**commands.document_view(found), "content": data.decode("utf-8")}
        return {**commands.document_view(found), "content": None,
                "content_url": f"/v1/complaints/{complaint_id}/documents/{document_id}/content"}

    @r.get("/complaints/{complaint_id}/documents/{document_id}/content",
           summary="A handling document's bytes, with its type and checksum")
    async def get_document_content(complaint_id: str, document_id: str, request: Request,
                                   who: Principal = require(*READERS)) -> Response:
        found, data = await stored(request, complaint_id, document_id, who)
        return Response(data, media_type=found.content_type, headers={
            "X-Content-SHA256": found.sha256, "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "attachment" if found.content_type not in TEXT_TYPES else "inline"})

    @r.get("/kpis", summary="Complaint KPIs: open per level, SLA breaches and compliance, mean times, reopen rate")
    async def kpis(request: Request, _: Principal = require(*FIGURES)) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            figures = kpi_figures(await store.kpi_counts(conn))
        return {**figures, "as_of": runtime.clock.now()}

    def weeks_until(request: Request, until: str | None, count: int) -> list[ReportWeek]:
        runtime = runtime_of(request)
        zone = runtime.deps.rules.report_timezone
        try:
            last = report_week(until or iso_week(runtime.clock.now().astimezone(ZoneInfo(zone))), zone)
            check_moments(week=last.starts_at)
            return [report_week(iso_week(last.week_start - timedelta(days=7 * back)), zone)
                    for back in range(count - 1, -1, -1)]
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except OverflowError:  # weeks before year 1
            raise HTTPException(422, f"week {until!r} is beyond any report; write it like 2026-W47") from None

    @r.get("/reports/sla-compliance", summary="SLA compliance per ISO week: the SLA steps that fell due in "
                                               "the week, met against breached; by region, dealer, department")
    async def sla_compliance(
        request: Request,
        until: Annotated[str | None, Query(description="the last ISO week (2026-W47); default this week")] = None,
        weeks: Annotated[int, Query(ge=1, le=53, description="how many weeks up to `until`")] = 5,
        region: Annotated[str | None, Query(max_length=60)] = None,
        dealer: Annotated[str | None, Query(max_length=60)] = None,
        department: Annotated[str | None, Query(max_length=200)] = None,
        month: Annotated[str | None, Query(description="also the figure of this month (2026-11)")] = None,
        _: Principal = require(*FIGURES),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        zone = runtime.deps.rules.report_timezone
        span = weeks_until(request, until, weeks)
        try:
            month_span = report_month(month, zone) if month else None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        check_moments(month=month_span[0] if month_span else None)
        scope = {"region": region or None, "dealer_id": dealer or None, "department": department or None}
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            rounds = await store.due_rounds(conn, span[0].starts_at, span[-1].ends_at, **scope)
            in_month = await store.due_rounds(conn, *month_span, **scope) if month_span else []
        return {"timezone": zone, "region": region or None, "dealer": dealer or None,
                "department": department or None, "weeks": sla_compliance_by_week(span, rounds, zone),
                "month": {"month": month_span[0].strftime("%Y-%m"), **sla_compliance_between(*month_span, in_month)}
                if month_span else None,
                "as_of": runtime.clock.now()}

    @r.get("/reports/sla-compliance/cases", summary="The cases behind a week's SLA compliance: each SLA step "
                                                     "due that week, met or breached")
    async def sla_compliance_cases(
        request: Request,
        week: Annotated[str | None, Query(description="ISO week (2026-W47); default this week")] = None,
        outcome: Annotated[Literal["met", "breached"] | None, Query()] = None,
        region: Annotated[str | None, Query(max_length=60)] = None,
        dealer: Annotated[str | None, Query(max_length=60)] = None,
        department: Annotated[str | None, Query(max_length=200)] = None,
        _: Principal = require(*FIGURES),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        [span] = weeks_until(request, week, 1)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            rounds = await store.due_rounds(conn, span.starts_at, span.ends_at, region=region or None,
                                            dealer_id=dealer or None, department=department or None)
        due = sorted((s for s in step_outcomes(rounds) if span.starts_at <= s.due_at < span.ends_at),
                     key=lambda s: (s.due_at, s.complaint_id, s.round, s.step))
        # The week's counts whatever the outcome asked for; the items of that outcome.
        return {"week": span.week, "from": span.starts_at, "to": span.ends_at, "outcome": outcome,
                "met": sum(s.outcome == "met" for s in due), "breached": sum(s.outcome == "breached" for s in due),
                "items": [s.view() for s in due if outcome in (None, s.outcome)]}

    return r
