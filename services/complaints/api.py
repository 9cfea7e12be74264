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
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints import commands, store
from services.complaints.commands import CaseNotFound, Filing
from services.complaints.config import ComplaintsDeps
from services.complaints.documents import TEXT_TYPES, content_matches
from services.complaints.domain import STATES, Case, Document, IllegalTransition, Intake, Refused
from services.complaints.reports import (
    ReportWeek,
    StepOutcome,
    kpi_figures,
    report_month,
    report_week,
    sla_compliance_between,
    sla_compliance_by_week,
    step_outcomes,
)
from services.complaints.schemas import (
    CasePage,
    CaseView,
    CategoryCounts,
    DocumentContent,
    DocumentView,
    Kpis,
    SlaComplianceReport,
    StepPage,
)
from shared.api import (
    IfMatch,
    Page,
    PageParams,
    Sort,
    SortKey,
    check_if_match,
    etag_of,
    keyset,
    make_page,
    page_params,
    problems,
    sort_param,
)
from shared.events.types import ComplaintCategory, ComplaintChannel, Severity
from shared.events.upstream import Id, Name, Phone, Reference, Vin
from shared.http import Moment, Principal, check_moments, outside_scope, require, runtime_of
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
ContentType = Literal["text/plain", "text/markdown", "image/jpeg", "image/png", "image/webp", "application/pdf",
                      "audio/mpeg", "audio/wav", "audio/mp4", "audio/ogg"]
CONTENT_TYPES: tuple[str, ...] = ContentType.__args__  # type: ignore[attr-defined]
CATEGORIES: tuple[str, ...] = ComplaintCategory.__args__  # type: ignore[attr-defined]


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
    content_type: ContentType = "text/plain"
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
        return HTTPException(409, str(exc))
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


def case_etag(case: Case) -> str:
    """The case's ETag: what is stored of it (its fields, timeline, escalations and documents), not
    the SLA figures that move with the clock, so a case nobody touched keeps its ETag."""
    return etag_of({
        "complaint_id": case.complaint_id, "complaint_ref": case.complaint_ref, "customer_id": case.customer_id,
        "vin": case.vin, "state": case.state, "category": case.category, "severity": case.severity,
        "department": case.department, "assignee": case.assignee, "resolution": case.resolution,
        "satisfied": case.satisfied, "confirmation": case.confirmation, "followup_id": case.followup_id,
        "dealer_id": case.dealer_id, "region": case.region,
        "timeline": [[f.seq, f.kind, f.at, f.actor] for f in sorted(case.history, key=lambda f: f.seq)],
        "escalations": sorted([e.round, e.level, e.announced_at] for e in case.escalations.values()),
        "documents": [[d.document_id, d.filed_at] for d in case.documents],
    })


async def _run(
    runtime: ServiceRuntime, complaint_id: str, apply: Callable[[Uow, Case], Awaitable[None]], who: Principal,
    if_match: str | None, response: Response,
) -> dict[str, Any]:
    """Run the action on the case (locked) if the person may and `If-Match` still names the case
    as it is; answer the case and its new ETag. A 412 leaves the case as it was."""
    async def scoped(uow: Uow, case: Case) -> None:
        _check_scope(who, case)
        check_if_match(if_match, case_etag(case))
        await apply(uow, case)

    try:
        case = await commands.on_case(runtime.transaction, complaint_id, scoped)
    except (IllegalTransition, CaseNotFound, Refused) as exc:
        raise _problem(exc) from None
    response.headers["ETag"] = case_etag(case)
    return commands.case_view(case)


def _step(action: str, principal: Principal, body: Step, **detail: Any) -> Callable[[Uow, Case], Awaitable[None]]:
    async def apply(uow: Uow, case: Case) -> None:
        now = uow.now()
        case.act(action, at=body.at or now, now=now, actor=principal.subject, note=body.note, **detail)

    return apply


_CASE_PAGE = page_params(default_limit=50, max_limit=200)
_CASE_SORT = sort_param(store.CASE_SORTS, default="-filed_at")
_STEP_PAGE = page_params(default_limit=100, max_limit=500)
_STEP_SORT = sort_param({"due_at": SortKey("due_at", "timestamptz")}, default="due_at")
# What each action can answer besides the common problems: the case is not there (404), the
# state does not allow the step (409), If-Match names an older case (412), the body is refused (422).
_ACTION = problems(404, 409, 412, examples={
    404: "no complaint case '0b8e4c1a-…'; list cases with GET /v1/complaints",
    409: "cannot resolve a case that is opened; from opened the allowed action is: acknowledge",
    412: 'If-Match "3f1c…" does not match the current ETag "9ab0…": it changed since you read it; fetch it again, '
         "check, and retry"})
_SCOPE = {403: "case 0b8e4c1a-… is outside your scope (regions: 华南; dealers: -); ask a colleague of that region or a "
               "supervisor"}
_NEEDS_FILTER = ("state", "open", "level", "department", "breached", "category", "severity", "assignee", "vin", "q",
                 "filed_from", "filed_before")


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["complaints"])

    @r.post("/complaints", status_code=201, response_model=CaseView,
            responses={200: {"model": CaseView, "description": "the same complaint_ref was filed before: that case"}},
            summary="File a complaint (a handler taking it by phone, letter …)")
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
        response.headers["ETag"] = case_etag(case)
        response.headers["Location"] = f"/v1/complaints/{case.complaint_id}"
        return commands.case_view(case)

    @r.get("/complaints", response_model=CasePage, responses=problems(403, 422, examples={
        403: "a quality_inspection department person sees the cases routed to quality_inspection only, not sales's",
        422: "name a filter (state, open, level, department, …): the whole case list is not read at once"}),
        summary="List cases: filter by state, open, level, department, breached …; sort by filed_at (default "
                "newest first), updated_at, deadline (the nearest SLA deadline first, none last) or level")
    async def list_cases(
        request: Request,
        page: Annotated[PageParams, Depends(_CASE_PAGE)],
        sort: Annotated[Sort, Depends(_CASE_SORT)],
        state: Annotated[Literal[STATES] | None, Query()] = None,  # type: ignore[valid-type]
        open: Annotated[bool | None, Query(description="true: the cases still worked (opened … pending_customer, "
                                                       "reopened); false: resolved or closed")] = None,
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
        who: Principal = require(*READERS),
    ) -> Page[dict[str, Any]]:
        scope = _scope(who)
        if scope is not None:
            if department not in (None, scope):
                raise HTTPException(403, f"a {scope} department person sees the cases routed to {scope} only, "
                                         f"not {department}'s")
            department = scope
        runtime = runtime_of(request)
        maximum = runtime.deps.rules.max_page_size
        if page.limit > maximum:
            raise HTTPException(422, f"limit {page.limit} is above the maximum page size {maximum}; follow "
                                     "next_cursor for more")
        f = store.CaseFilter(state, level, department, breached, category, severity, assignee, vin, q,
                             filed_from, filed_before, *who.scope_params(), open=open)
        # Least privilege: the whole case list is not read at once. A department person and a scoped
        # agent are held to their department / regions and dealers; anyone else names a filter.
        if not f.narrowed and scope is None and not who.scoped:
            raise HTTPException(422, [{"loc": ["query"], "type": "filter_required",
                                       "msg": "name a filter: the case list is not read whole; use one of "
                                              f"{', '.join(_NEEDS_FILTER)} (open=true: the cases still worked)"}])
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            rows = await store.list_cases(conn, f, sort=sort, cursor=page.cursor, limit=page.limit)
        found = make_page(rows, page.limit, sort, lambda row: (row[sort.column], row["complaint_id"]))
        return Page[dict[str, Any]](items=[{k: v for k, v in row.items() if k != "deadline_key"} for row in found.items],
                                    next_cursor=found.next_cursor, limit=found.limit)

    @r.get("/complaints/{complaint_id}", response_model=CaseView,
           responses=problems(404, examples={404: "no complaint case '0b8e4c1a-…'; list cases with GET /v1/complaints",
                                             **_SCOPE}),
           summary="One case with its SLA figures and full timeline (ETag: send it as If-Match with an action)")
    async def get_case(complaint_id: str, request: Request, response: Response,
                       who: Principal = require(*READERS)) -> dict[str, Any]:
        runtime = runtime_of(request)
        async with runtime.transaction() as uow:
            case = (await commands.load(uow, [complaint_id], lock=False)).get(complaint_id)
            if case is None or (_scope(who) not in (None, case.department)):
                raise _problem(CaseNotFound(complaint_id))
            _check_scope(who, case)
            case.refresh(uow.now())
        response.headers["ETag"] = case_etag(case)
        return commands.case_view(case)

    def action(path: str, summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return r.post(f"/complaints/{{complaint_id}}/{path}", response_model=CaseView, responses=_ACTION,
                      summary=summary)

    @action("acknowledge", "The handler has seen the case (stops the 4 h clock)")
    async def acknowledge(complaint_id: str, request: Request, response: Response, if_match: IfMatch = None,
                          body: Step | None = None, who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("acknowledge", who, body or Step()), who,
                          if_match, response)

    @action("assign", "Give the case to a handler (or re-assign it)")
    async def assign(complaint_id: str, body: Assign, request: Request, response: Response, if_match: IfMatch = None,
                     who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("assign", who, body, assignee=body.assignee), who,
                          if_match, response)

    @action("comments", "Add a comment to the timeline")
    async def comment(complaint_id: str, body: Comment, request: Request, response: Response,
                      if_match: IfMatch = None, who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        async def apply(uow: Uow, case: Case) -> None:
            now = uow.now()
            case.comment(body.text, at=now, now=now, actor=who.subject)

        return await _run(runtime_of(request), complaint_id, apply, who, if_match, response)

    @action("pend", "Wait for the customer (pending_customer: the clock pauses)")
    async def pend(complaint_id: str, body: Pend, request: Request, response: Response, if_match: IfMatch = None,
                   who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("pend", who, body, reason=body.reason), who,
                          if_match, response)

    @action("resume", "The customer answered (the clock runs again)")
    async def resume(complaint_id: str, request: Request, response: Response, if_match: IfMatch = None,
                     body: Step | None = None, who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("resume", who, body or Step()), who, if_match,
                          response)

    @action("resolve", "Resolved (resolution text required); cancels escalations")
    async def resolve(complaint_id: str, body: Resolve, request: Request, response: Response,
                      if_match: IfMatch = None, who: Principal = require(*HANDLERS)) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id,
                          _step("resolve", who, body, resolution=body.resolution), who, if_match, response)

    @action("close", "Close without the confirmation call (supervisor)")
    async def close(complaint_id: str, body: Close, request: Request, response: Response, if_match: IfMatch = None,
                    who: Principal = require("supervisor")) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step(
            "close", who, body, satisfied=body.satisfied, confirmation="closed_by_supervisor"), who, if_match,
            response)

    @action("reopen", "Reopen (the customer is not satisfied); clocks restart")
    async def reopen(complaint_id: str, body: Reopen, request: Request, response: Response,
                     if_match: IfMatch = None, who: Principal = require("supervisor")) -> dict[str, Any]:
        return await _run(runtime_of(request), complaint_id, _step("reopen", who, body, reason=body.reason), who,
                          if_match, response)

    @r.post("/complaints/{complaint_id}/documents", status_code=201, response_model=DocumentView,
            responses=problems(404, 412, 415, examples={
                404: "no complaint case '0b8e4c1a-…'; list cases with GET /v1/complaints",
                415: "the file is not image/jpeg: its first bytes say otherwise; send it with its real type (text, "
                     "JPEG/PNG/WebP, PDF, MP3/WAV/M4A/OGG)"}),
            summary="Attach a handling document (text, photo, PDF, recording); the case's new ETag comes back")
    async def attach(complaint_id: str, body: AttachDocument, request: Request, response: Response,
                     if_match: IfMatch = None, who: Principal = require(*HANDLERS)) -> dict[str, Any]:
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

        view = await _run(runtime, complaint_id, apply, who, if_match, response)
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
        if found.erased_at is not None:
            raise HTTPException(404, f"document {document_id!r} was erased with the customer's personal data at "
                                     f"{found.erased_at.isoformat()}; its content is gone (the case keeps its entry)")
        data = await runtime.deps.documents.read_bytes(found.path)
        if hashlib.sha256(data).hexdigest() != found.sha256:
            raise HTTPException(500, f"document {document_id!r} on disk does not match its sha256 {found.sha256}: "
                                     "it changed after it was stored; restore it from the backup")
        return found, data

    _DOCUMENT_404 = {404: "case '0b8e4c1a-…' has no document '6b1f7c1e-…'; GET /v1/complaints/0b8e4c1a-… lists its "
                          "documents", **_SCOPE}

    @r.get("/complaints/{complaint_id}/documents/{document_id}", response_model=DocumentContent,
           responses=problems(404, examples=_DOCUMENT_404), summary="A handling document (text inline)")
    async def get_document(complaint_id: str, document_id: str, request: Request,
                           who: Principal = require(*READERS)) -> dict[str, Any]:
        found, data = await stored(request, complaint_id, document_id, who)
        if found.content_type in TEXT_TYPES:
            return {**commands.document_view(found), "content": data.decode("utf-8"), "content_url": None}
        return {**commands.document_view(found), "content": None,
                "content_url": f"/v1/complaints/{complaint_id}/documents/{document_id}/content"}

    @r.get("/complaints/{complaint_id}/documents/{document_id}/content", response_class=Response,
           responses={200: {"description": "the document's bytes in its own type (X-Content-SHA256: its checksum)",
                            "content": {t: {"schema": {"type": "string", "format": "binary"},
                                            "example": "已更换左前刹车盘，客户试车确认异响消失。" if t == "text/plain"
                                            else "(the bytes)"} for t in CONTENT_TYPES}},
                      **problems(404, examples=_DOCUMENT_404)},
           summary="A handling document's bytes, with its type and checksum")
    async def get_document_content(complaint_id: str, document_id: str, request: Request,
                                   who: Principal = require(*READERS)) -> Response:
        found, data = await stored(request, complaint_id, document_id, who)
        return Response(data, media_type=found.content_type, headers={
            "X-Content-SHA256": found.sha256, "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "attachment" if found.content_type not in TEXT_TYPES else "inline"})

    @r.get("/kpis", response_model=Kpis,
           summary="Complaint KPIs: open per level, SLA breaches and compliance, mean times, reopen rate")
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

    @r.get("/reports/sla-compliance", response_model=SlaComplianceReport, response_model_by_alias=True,
           summary="SLA compliance per ISO week: the SLA steps that fell due in the week, met against breached; by "
                   "region, dealer, department (a scoped agent's cases only)")
    async def sla_compliance(
        request: Request,
        until: Annotated[str | None, Query(description="the last ISO week (2026-W47); default this week")] = None,
        weeks: Annotated[int, Query(ge=1, le=53, description="how many weeks up to `until`")] = 5,
        region: Annotated[str | None, Query(max_length=60)] = None,
        dealer: Annotated[str | None, Query(max_length=60)] = None,
        department: Annotated[str | None, Query(max_length=200)] = None,
        month: Annotated[str | None, Query(description="also the figure of this month (2026-11)")] = None,
        who: Principal = require(*FIGURES),
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
        rounds = [x for x in rounds if who.covers(x.region, x.dealer_id)]
        in_month = [x for x in in_month if who.covers(x.region, x.dealer_id)]
        return {"timezone": zone, "region": region or None, "dealer": dealer or None,
                "department": department or None, "weeks": sla_compliance_by_week(span, rounds, zone),
                "month": {"month": month_span[0].strftime("%Y-%m"), **sla_compliance_between(*month_span, in_month)}
                if month_span else None,
                "as_of": runtime.clock.now()}

    @r.get("/reports/sla-compliance/cases", response_model=StepPage,
           summary="The cases behind a week's SLA compliance: each SLA step due that week, met or breached (a "
                   "scoped agent's cases only); the week's counts are in GET /v1/reports/sla-compliance")
    async def sla_compliance_cases(
        request: Request,
        page: Annotated[PageParams, Depends(_STEP_PAGE)],
        sort: Annotated[Sort, Depends(_STEP_SORT)],
        week: Annotated[str | None, Query(description="ISO week (2026-W47); default this week")] = None,
        outcome: Annotated[Literal["met", "breached"] | None, Query()] = None,
        region: Annotated[str | None, Query(max_length=60)] = None,
        dealer: Annotated[str | None, Query(max_length=60)] = None,
        department: Annotated[str | None, Query(max_length=200)] = None,
        who: Principal = require(*FIGURES),
    ) -> Page[dict[str, Any]]:
        runtime = runtime_of(request)
        [span] = weeks_until(request, week, 1)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            rounds = await store.due_rounds(conn, span.starts_at, span.ends_at, region=region or None,
                                            dealer_id=dealer or None, department=department or None)

        def key(s: StepOutcome) -> tuple[datetime, str]:
            return s.due_at, f"{s.complaint_id}:{s.round:04d}:{s.step}"

        due = sorted((s for s in step_outcomes(rounds) if span.starts_at <= s.due_at < span.ends_at
                      and outcome in (None, s.outcome) and who.covers(s.region, s.dealer_id)),
                     key=key, reverse=sort.descending)
        after = keyset(sort, "step", page.cursor, 1).params  # the cursor's (due_at, step key), checked
        if after:
            at, last = datetime.fromisoformat(after[0]), after[1]
            due = [s for s in due if ((key(s) < (at, last)) if sort.descending else (key(s) > (at, last)))]
        found = make_page(due[:page.limit + 1], page.limit, sort, key)
        return Page[dict[str, Any]](items=[s.view() for s in found.items], next_cursor=found.next_cursor,
                                    limit=found.limit)

    @r.get("/reports/categories", response_model=CategoryCounts, response_model_by_alias=True,
           summary="How many complaints were filed in each category in [from, to) (the monthly summary)")
    async def category_report(
        request: Request,
        from_: Annotated[Moment, Query(alias="from", description="the span's start (2026-11-01T00:00:00+08:00)")],
        to: Annotated[Moment, Query(description="the span's end, excluded")],
        _: Principal = require(*FIGURES),
    ) -> dict[str, Any]:
        if to <= from_:
            raise HTTPException(422, f"to {to.isoformat()} is not after from {from_.isoformat()}")
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            counts = await store.category_counts(conn, from_, to)
        return {"from": from_, "to": to, "counts": {c: counts.get(c, 0) for c in CATEGORIES}}

    return r
