"""Intake's HTTP routes: the signed webhook for producers, and the customer files for staff."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.intake import erasure, store
from services.intake.config import IntakeRules
from services.intake.domain import HISTORY_FIELDS, Rejected, as_text, missing_fields
from services.intake.handlers import precheck
from shared.api import Page, PageParams, Sort, SortKey, make_page, page_doc, page_params, problems, sort_param
from shared.db import acquire
from shared.events import InvalidRecord, decode, new_event
from shared.events.catalog import PRODUCER_TOPICS, UPSTREAM_CRM
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.upstream import Email, Name, PersonName, Phone, Text, Vin
from shared.http import Moment, Principal, require, runtime_of
from shared.timeutil import add_months
from shared.validation import normalize_phone, normalize_vin

SIGNATURE_SCHEME = "sha256="
# One event becomes one Kafka record, and a rejected one a dead letter carrying it in base64 with
# a reason that may quote it: both must fit the broker's 1 MiB record limit, or the outbox relay
# cannot publish them and stops publishing anything after them.
MAX_EVENT_BYTES = 256 * 1024
# Least privilege (docs/security.md): a search names what it looks for and answers a page of at
# most SEARCH_PAGE_MAX files; the worklists answer at most WORKLIST_PAGE_MAX a page.
SEARCH_PAGE_MAX = 50
WORKLIST_PAGE_MAX = 100
FILE_READS_MAX = 200
ERASURES_MAX = 200


def _scope(who: Principal) -> store.Scope | None:
    """The regions and dealers a scoped agent sees; None: everything (supervisors, the hotline)."""
    return (who.regions, who.dealers) if who.scoped else None


async def _log_reads(conn: Any, runtime: Any, who: Principal, customer_ids: list[str], route: str,
                     **detail: Any) -> None:
    await store.record_file_reads(conn, at=runtime.clock.now(), reader=who.subject, role=who.role,
                                  customer_ids=customer_ids, route=route, detail=detail)


async def _refuse_outside_scope(conn: Any, runtime: Any, who: Principal, customer_id: str, route: str) -> None:
    """403 (and a logged refusal) when a scoped agent asks for a customer outside their scope."""
    scope = _scope(who)
    if scope is not None and not await store.in_scope(conn, customer_id, scope):
        await _log_reads(conn, runtime, who, [customer_id], route, refused="outside the reader's scope")
        raise HTTPException(403, f"customer {customer_id} is outside your scope (regions: "
                                 f"{', '.join(who.regions) or '-'}; dealers: {', '.join(who.dealers) or '-'}); "
                                 "ask a colleague of that region or a supervisor")


class EventResult(BaseModel):
    index: int
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


class ContactCorrection(BaseModel):
    """Contact data an agent learned on the phone."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    phone: Phone | None = None
    email: Email | None = None
    address: Name | None = None
    person_in_charge: PersonName | None = None
    reason: str | None = Field(None, max_length=500, description="how the agent learned it")


class ConsultationIn(BaseModel):
    """A consultation an agent took (a caller who may have no file yet)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    customer_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\s]+$")
    phone: Phone | None = Field(None, description="the caller's number, when they have no customer id")
    name: PersonName | None = None
    region: Name | None = None
    vin: Vin | None = None
    dealer_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\s]+$")
    topic: Name = Field(description="what they asked about")
    summary: Text | None = None
    channel: Literal["hotline", "showroom", "web"] = "hotline"
    consulted_at: Moment | None = Field(None, description="default: now")


class WebhookResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "accepted": 1, "duplicate": 1, "rejected": 1, "results": [
            {"index": 0, "event_id": "5f0c6a52-8d1e-4c39-9a7e-0b6f3c1d2e41", "status": "accepted", "reason": None},
            {"index": 1, "event_id": "0d4b9a6e-2f8c-4b1a-8e5d-7c3a9f1b2d60", "status": "duplicate",
             "reason": "this event_id was received before"},
            {"index": 2, "event_id": None, "status": "rejected",
             "reason": "data.vin: 'LSV123' is not a VIN (17 characters, no I, O or Q)"}]}]})
    accepted: int
    duplicate: int
    rejected: int
    results: list[EventResult]


_WHEN = "2026-11-18T14:05:00+08:00"


class CustomerHit(BaseModel):
    """A customer file as a search lists it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customer_id": "CUST-000123", "name": "王芳", "phone": "+8613812345678", "region": "east",
        "address": "上海市浦东新区世纪大道100号", "created_at": "2025-10-08T11:00:00+08:00", "updated_at": _WHEN,
        "vins": ["LSVAU2180N2183456"]}]})
    customer_id: str
    name: str | None
    phone: str | None = Field(description="E.164")
    region: str | None
    address: str | None
    created_at: datetime
    updated_at: datetime
    vins: list[str]


class IncompleteFile(BaseModel):
    """A file missing data the plan wants within 2 days of the last visit (or of the file's opening)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customer_id": "CUST-000124", "name": "李强", "region": "west",
        "missing": ["address", "plate (LSVAU2180N2183457)"], "created_at": "2026-11-02T09:30:00+08:00",
        "last_visit_at": _WHEN, "overdue": True}]})
    customer_id: str
    name: str | None
    region: str | None
    missing: list[str] = Field(description="phone, address, plate (<vin>), model (<vin>)")
    created_at: datetime
    last_visit_at: datetime | None
    overdue: bool = Field(description="more than complete_file_within_days since the last visit or the opening")


class FlaggedFile(BaseModel):
    """A file with a contact value that failed its check, kept with the reason until corrected."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customer_id": "CUST-000125", "name": "张伟", "region": "east", "phone": None, "email": "zhang.wei@example.cn",
        "contact_flags": {"phone": {"value": "1381234", "reason": "not a mobile or fixed-line number of CN",
                                    "flagged_at": _WHEN, "source": "VehicleSold"}},
        "updated_at": _WHEN}]})
    customer_id: str
    name: str | None
    region: str | None
    phone: str | None
    email: str | None
    contact_flags: dict[str, Any] = Field(description="{field: {value, reason, flagged_at, source}}")
    updated_at: datetime


class FileRead(BaseModel):
    """One entry of the access log: who read which customer file, when, by which route."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 4711, "at": _WHEN, "reader": "wang.fang", "role": "agent", "customer_id": "CUST-000123",
        "route": "GET /v1/customers", "detail": {"filters": ["phone"], "sort": "customer_id", "rows": 1}}]})
    id: int
    at: datetime
    reader: str
    role: str
    customer_id: str
    route: str
    detail: dict[str, Any] = Field(description="a search's filter names (not the values), sort and rows listed; "
                                               "a refusal's reason")


class HistoryValue(BaseModel):
    value: str
    first_seen_at: datetime


class FileVehicle(BaseModel):
    vin: str
    plate: str | None
    model: str | None
    dealer_id: str | None
    region: str | None
    sale_id: str | None
    sold_at: datetime | None
    warranty_months: int | None
    warranty_km: int | None
    parts: list[dict[str, Any]]
    warranty_until: datetime | None


class FileVisit(BaseModel):
    repair_order_id: str
    vin: str
    dealer_id: str
    picked_up_at: datetime
    service_type: str
    items: list[Any]
    mileage_km: int | None
    advisor_id: str | None
    next_service_due_at: datetime | None
    next_service_due_km: int | None


class FileReceipt(BaseModel):
    receipt_id: str
    repair_order_id: str
    vin: str
    returned_at: datetime
    rating: int | None
    comments: str | None


class CustomerFile(BaseModel):
    """A customer's whole file."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customer_id": "CUST-000123", "known_only_by_phone": False, "name": "王芳", "phone": "+8613812345678",
        "email": "wang.fang@example.cn", "address": "上海市浦东新区世纪大道100号", "region": "east",
        "person_in_charge": None, "locale": "zh-CN", "timezone": "Asia/Shanghai",
        "consent": {"sms": True, "email": True, "letter": True},
        "created_at": "2025-10-08T11:00:00+08:00", "updated_at": _WHEN, "erased_at": None, "contact_flags": {},
        "phones": ["+8613812345678", "+8613912345678"], "complete": True, "missing": [],
        "vehicles": [{"vin": "LSVAU2180N2183456", "plate": "沪A12345", "model": "EV-S", "dealer_id": "DLR-SH-01",
                      "region": "east", "sale_id": "SALE-2025-0881", "sold_at": "2025-10-08T11:00:00+08:00",
                      "warranty_months": 36, "warranty_km": 100000,
                      "parts": [{"category": "motor", "part_no": "MTR-200", "batch": "B2025-09", "supplier_id": "SUP-7"}],
                      "warranty_until": "2028-10-08T11:00:00+08:00"}],
        "visits": [{"repair_order_id": "RO-2026-10-0042", "vin": "LSVAU2180N2183456", "dealer_id": "DLR-SH-01",
                    "picked_up_at": "2026-10-21T16:00:00+08:00", "service_type": "maintenance",
                    "items": ["机油更换"], "mileage_km": 12034, "advisor_id": "ADV-09",
                    "next_service_due_at": "2027-04-21T16:00:00+08:00", "next_service_due_km": 22000}],
        "receipts": [{"receipt_id": "RCPT-77", "repair_order_id": "RO-2026-10-0042", "vin": "LSVAU2180N2183456",
                      "returned_at": "2026-10-22T10:00:00+08:00", "rating": 5, "comments": "服务很好"}],
        "history": {"phone": [{"value": "+8613912345678", "first_seen_at": "2025-10-08T11:00:00+08:00"},
                              {"value": "+8613812345678", "first_seen_at": "2026-11-10T09:00:00+08:00"}]}}]})
    customer_id: str
    known_only_by_phone: bool
    name: str | None
    phone: str | None
    email: str | None
    address: str | None
    region: str | None
    person_in_charge: str | None
    locale: str
    timezone: str
    consent: dict[str, bool]
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = Field(None, description="when the customer's personal data was erased (on request, "
                                                         "GET /v1/erasures); facts since may have filed new values")
    contact_flags: dict[str, Any]
    phones: list[str] = Field(description="current first, then the earlier ones")
    complete: bool
    missing: list[str]
    vehicles: list[FileVehicle]
    visits: list[FileVisit]
    receipts: list[FileReceipt]
    history: dict[str, list[HistoryValue]] = Field(description="every value each field has held, oldest first")


class ErasureIn(BaseModel):
    """Why the customer's personal data is erased."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [{
        "reason": "客户依《个人信息保护法》第47条申请删除（工单 CRM-2026-11-0042）"}]})
    reason: str = Field(min_length=5, max_length=500,
                        description="the legal ground, or the reference of the customer's request")


_ERASURE_EXAMPLE: dict[str, Any] = {
    "erasure_id": "ERS-5F0C6A528D1E4C399A7E", "customer_id": "CUST-000123", "requested_by": "supervisor-01",
    "reason": "客户依《个人信息保护法》第47条申请删除（工单 CRM-2026-11-0042）", "requested_at": _WHEN,
    "erased_at": _WHEN, "merged_customer_ids": ["C3F1A9B2C4D5E6F7"]}


class ErasureRecord(BaseModel):
    """An erasure in the register: the customer's name, phone, e-mail, address and free text are
    gone from intake, and CustomerErased tells every other service to remove theirs."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ERASURE_EXAMPLE]})
    erasure_id: str
    customer_id: str
    requested_by: str
    reason: str
    requested_at: datetime
    erased_at: datetime
    merged_customer_ids: list[str] = Field(description="the phone-only files this file took over, erased with it")


class ErasureEntry(BaseModel):
    """An entry of the erasure register (`reason` only for supervisors)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ERASURE_EXAMPLE]})
    erasure_id: str
    customer_id: str
    requested_by: str
    reason: str | None = Field(description="null for ops: the reason is shown to supervisors only")
    requested_at: datetime
    erased_at: datetime
    merged_customer_ids: list[str]


class ContactAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customer_id": "CUST-000125", "event_id": "9b2e4c1a-6d3f-4e8b-a1c7-2f5d8e9b0a13", "corrected_by": "wang.fang",
        "fields": ["phone"], "status": "accepted"}]})
    customer_id: str
    event_id: uuid.UUID = Field(description="the CustomerContactCorrected on upstream.crm")
    corrected_by: str
    fields: list[str]
    status: Literal["accepted"]


class ConsultationAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "consultation_id": "CONS-3f9a1c2b7d4e5f60", "event_id": "3f9a1c2b-7d4e-5f60-8a1b-2c3d4e5f6a7b",
        "handled_by": "wang.fang", "status": "accepted"}]})
    consultation_id: str
    event_id: uuid.UUID = Field(description="the ConsultationRecorded on upstream.crm")
    handled_by: str
    status: Literal["accepted"]


# The orders a list may be asked in (`sort=key` ascending, `sort=-key` descending).
SEARCH_SORTS = {"customer_id": SortKey(column="c.customer_id", cast="text"),
                "updated_at": SortKey(column="c.updated_at", cast="timestamptz"),
                "created_at": SortKey(column="c.created_at", cast="timestamptz")}
INCOMPLETE_SORTS = {"created_at": SortKey(column="c.created_at", cast="timestamptz"),
                    "customer_id": SortKey(column="c.customer_id", cast="text")}
FLAGGED_SORTS = {"updated_at": SortKey(column="c.updated_at", cast="timestamptz"),
                 "customer_id": SortKey(column="c.customer_id", cast="text")}
FILE_READ_SORTS = {"at": SortKey(column="r.at", cast="timestamptz")}
ERASURE_SORTS = {"requested_at": SortKey(column="e.requested_at", cast="timestamptz")}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What a producer sends as X-Aftersales-Signature: HMAC-SHA256 over "<timestamp>.<raw body>"."""
    return SIGNATURE_SCHEME + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()



# The paging and sort parameters of each list (module level: one dependency each)
SearchPaging = Annotated[PageParams, Depends(page_params(default_limit=20, max_limit=SEARCH_PAGE_MAX))]
SearchSort = Annotated[Sort, Depends(sort_param(SEARCH_SORTS, default="customer_id"))]
WorklistPaging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=WORKLIST_PAGE_MAX))]
IncompleteSort = Annotated[Sort, Depends(sort_param(INCOMPLETE_SORTS, default="created_at"))]
FlaggedSort = Annotated[Sort, Depends(sort_param(FLAGGED_SORTS, default="updated_at"))]
FileReadPaging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=FILE_READS_MAX))]
FileReadSort = Annotated[Sort, Depends(sort_param(FILE_READ_SORTS, default="-at"))]
ErasurePaging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=ERASURES_MAX))]
ErasureSort = Annotated[Sort, Depends(sort_param(ERASURE_SORTS, default="-requested_at"))]


def router() -> APIRouter:
    r = APIRouter()

    @r.post(
        "/v1/events", response_model=WebhookResponse, tags=["webhook"],
        summary="Submit up to 500 upstream events (for producers that cannot write to Kafka)",
        description=(
            "Signed with HMAC-SHA256 over `<X-Aftersales-Timestamp>.<raw body>` using the producer's secret, sent as "
            "`X-Aftersales-Signature: sha256=<hex>`; the timestamp (Unix seconds) must be within 5 minutes. Each "
            "event is validated exactly as on Kafka and answered accepted, duplicate or rejected with the reason; "
            "accepted and rejected events go onto the producer's upstream topic, so a rejected one is also "
            "dead-lettered with the same record as if it had arrived on Kafka."
        ),
    )
    async def receive_events(
        request: Request,
        x_aftersales_producer: str = Header(..., description="sales, dms, erp or crm"),
        x_aftersales_timestamp: str = Header(..., description="Unix seconds when the request was signed"),
        x_aftersales_signature: str = Header(..., description="sha256=<hex HMAC>"),
        who: Principal = require("producer"),
    ) -> WebhookResponse:
        runtime = runtime_of(request)
        rules: IntakeRules = runtime.deps.rules
        producer = x_aftersales_producer.strip()
        secret = runtime.settings.parsed_webhook_secrets().get(producer)
        if secret is None or producer not in PRODUCER_TOPICS:
            raise HTTPException(401, f"unknown producer {producer!r}; known producers: "
                                     f"{', '.join(sorted(runtime.settings.parsed_webhook_secrets()))}")
        if who.subject != producer:
            raise HTTPException(403, f"this token belongs to producer {who.subject!r}, not {producer!r}")
        try:
            signed_at = int(x_aftersales_timestamp)
        except ValueError:
            raise HTTPException(401, "X-Aftersales-Timestamp must be Unix seconds, e.g. 1764403200") from None
        age = time.time() - signed_at  # wall time: a replay window, not a business rule
        if abs(age) > rules.webhook_max_age_seconds:
            raise HTTPException(
                401, f"stale timestamp: signed {age:.0f} s ago; requests older than "
                     f"{rules.webhook_max_age_seconds} s (or from the future) are refused to stop replays")
        body = await request.body()
        if not hmac.compare_digest(signature(secret, x_aftersales_timestamp, body), x_aftersales_signature.strip()):
            raise HTTPException(401, "signature does not match: sign '<timestamp>.<raw body>' with HMAC-SHA256 and "
                                     "the producer's secret, and send it as 'sha256=<hex>'")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(422, f"the body is not JSON ({exc}); send a JSON array of event envelopes") from None
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            payload = payload["events"]
        if not isinstance(payload, list) or not payload:
            raise HTTPException(422, "the body must be a non-empty JSON array of event envelopes "
                                     "(or an object with an 'events' array)")
        if len(payload) > rules.webhook_max_events:
            raise HTTPException(422, f"{len(payload)} events in one request; send at most {rules.webhook_max_events}")
        values = [orjson.dumps(item) for item in payload]
        for index, value in enumerate(values):
            if len(value) > MAX_EVENT_BYTES:
                raise HTTPException(413, f"event {index} is {len(value)} bytes as JSON; an event may be at most "
                                         f"{MAX_EVENT_BYTES} bytes")
        request_id = (producer, x_aftersales_signature.strip().removeprefix(SIGNATURE_SCHEME), signed_at)
        return await _accept(runtime, rules, producer, payload, values, request_id)

    @r.get("/v1/customers", tags=["customer files"], summary="Search customer files",
           response_model=Page[CustomerHit], responses=page_doc(CustomerHit, 20))
    async def search_customers(
        request: Request,
        sort: SearchSort,
        paging: SearchPaging,
        phone: str | None = Query(None, description="any format; matched in E.164, current or previous"),
        plate: str | None = Query(None, max_length=20),
        vin: str | None = Query(None, max_length=40),
        name: str | None = Query(None, max_length=100, description="prefix, case-insensitive"),
        dealer: str | None = Query(None, max_length=64, description="a dealer that sold or serviced one of the "
                                                                   "customer's vehicles"),
        region: str | None = Query(None, max_length=64),
        who: Principal = require("agent", "supervisor"),
    ) -> Page[CustomerHit]:
        """A search names at least one of phone, plate, vin, name, dealer, region: nobody pages
        through the whole customer base, and a page holds at most 50 files. A scoped agent finds
        only customers of their regions and dealers. Every file listed is written to the access
        log with the filters' names (not their values), the sort and how many rows were listed."""
        filters = {k: v for k, v in (("phone", phone), ("plate", plate), ("vin", vin), ("name", name),
                                     ("dealer", dealer), ("region", region)) if v and v.strip()}
        if not filters:
            raise HTTPException(422, "name what you are looking for: phone, plate, vin, name, dealer or region "
                                     "(the whole customer base is not listed)")
        try:
            phone = normalize_phone(phone) if phone else None
            vin = normalize_vin(vin) if vin else None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await store.search_customers(
                conn, phone=phone, plate=plate.strip() if plate else None, vin=vin,
                name=name.strip() if name else None, dealer=dealer.strip() if dealer else None,
                region=region.strip() if region else None, limit=paging.limit + 1, sort=sort,
                cursor=paging.cursor, scope=_scope(who),
            )
            page = make_page([CustomerHit(**{**r, "vins": list(r["vins"] or [])}) for r in rows], paging.limit, sort,
                             _key(sort, "customer_id"))
            await _log_reads(conn, runtime, who, [h.customer_id for h in page.items], "GET /v1/customers",
                             filters=sorted(filters), sort=sort.text, rows=len(page.items),
                             continued=paging.cursor is not None)
        return page

    @r.get("/v1/customers/incomplete", tags=["customer files"], response_model=Page[IncompleteFile],
           responses=page_doc(IncompleteFile, 50),
           summary="Files missing phone, address, plate or model (the plan wants them complete within 2 days)")
    async def incomplete(
        request: Request,
        sort: IncompleteSort,
        paging: WorklistPaging,
        who: Principal = require("agent", "supervisor"),
    ) -> Page[IncompleteFile]:
        runtime = runtime_of(request)
        rules: IntakeRules = runtime.deps.rules
        assert runtime.pool is not None
        now = runtime.clock.now()
        deadline = timedelta(days=rules.complete_file_within_days)
        async with acquire(runtime.pool) as conn:
            rows = await store.incomplete_files(conn, paging.limit + 1, sort, paging.cursor, _scope(who))
            files = []
            for row in rows:
                missing = [f for f, flag in (("phone", row["no_phone"]), ("address", row["no_address"])) if flag]
                missing += [f"plate ({vin})" for vin in row["no_plate"]] + [f"model ({vin})" for vin in row["no_model"]]
                since = row["last_visit_at"] or row["created_at"]
                files.append(IncompleteFile(
                    customer_id=row["customer_id"], name=row["name"], region=row["region"], missing=missing,
                    created_at=row["created_at"], last_visit_at=row["last_visit_at"], overdue=now - since > deadline))
            page = make_page(files, paging.limit, sort, _key(sort, "customer_id"))
            await _log_reads(conn, runtime, who, [f.customer_id for f in page.items], "GET /v1/customers/incomplete",
                             sort=sort.text, rows=len(page.items), continued=paging.cursor is not None)
        return page

    @r.get("/v1/customers/flagged", tags=["customer files"], response_model=Page[FlaggedFile],
           responses=page_doc(FlaggedFile, 50),
           summary="Files with a contact value that failed its check (kept with the reason): call and correct them")
    async def flagged(
        request: Request,
        sort: FlaggedSort,
        paging: WorklistPaging,
        who: Principal = require("agent", "supervisor"),
    ) -> Page[FlaggedFile]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await store.flagged_files(conn, paging.limit + 1, sort, paging.cursor, _scope(who))
            page = make_page([FlaggedFile(**r) for r in rows], paging.limit, sort, _key(sort, "customer_id"))
            await _log_reads(conn, runtime, who, [f.customer_id for f in page.items], "GET /v1/customers/flagged",
                             sort=sort.text, rows=len(page.items), continued=paging.cursor is not None)
        return page

    @r.get("/v1/customers/{customer_id}", tags=["customer files"], response_model=CustomerFile,
           responses=problems(404, examples={404: "no customer file 'CUST-404'; search with GET /v1/customers?phone=…"}),
           summary="A customer's whole file: vehicles, visits, receipts and change history")
    async def customer_file(request: Request, customer_id: str,
                            who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        route = "GET /v1/customers/{customer_id}"
        async with acquire(runtime.pool) as conn:
            found = await store.customer_file(conn, customer_id)
            if found is None:
                raise HTTPException(404, f"no customer file {customer_id!r}; search with GET /v1/customers?phone=…")
            await _refuse_outside_scope(conn, runtime, who, customer_id, route)
            await _log_reads(conn, runtime, who, [customer_id], route)
        return _file_view(found)

    @r.get("/v1/customer-file-reads", tags=["customer files"], response_model=Page[FileRead], responses=page_doc(FileRead, 50),
           summary="The access log: who read which customer file, when and by which route (newest first)")
    async def file_reads(
        request: Request, paging: FileReadPaging, sort: FileReadSort,
        customer_id: str | None = Query(None, min_length=1, max_length=64),
        reader: str | None = Query(None, min_length=1, max_length=64),
        who: Principal = require("supervisor"),
    ) -> Page[FileRead]:
        """For supervisors: name a customer, a reader or both. Append-only (migration 0007); its own
        reads are not logged (they show who read, not the files)."""
        if not customer_id and not reader:
            raise HTTPException(422, "name a customer_id, a reader or both")
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            entries = await store.file_reads(conn, customer_id=customer_id, reader=reader, limit=paging.limit + 1,
                                             sort=sort, cursor=paging.cursor)
        # the tiebreak is the entry's id as zero-padded text (keyset compares tiebreaks as text)
        return make_page([FileRead(**e) for e in entries], paging.limit, sort, lambda e: (e.at, f"{e.id:019d}"))

    @r.post("/v1/customers/{customer_id}/erasure", status_code=201, tags=["customer files"],
            response_model=ErasureRecord,
            responses={200: {"model": ErasureRecord, "description": "erased before: the record on file, nothing done"},
                       **problems(404, examples={404: "no customer file 'CUST-404'; search with GET /v1/customers?phone=…",
                                                 403: "role agent may not call this endpoint"})},
            summary="Erase a customer's personal data (supervisors, with the reason); every service follows")
    async def erase_customer(request: Request, response: Response, customer_id: str, body: ErasureIn,
                             who: Principal = require("supervisor")) -> dict[str, Any]:
        """Name, phone, e-mail, address, person in charge, flagged contact values, their history and
        the customer's receipt comments are removed from intake at once (with the phone-only files
        the file took over); ids, vehicles, visits, dates and counts stay. CustomerErased goes to
        every service, which removes theirs. Registered with who asked and why (GET /v1/erasures)
        and written to the access log. A customer erased before: 200 with the record on file."""
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            try:
                record, created = await erasure.erase(
                    conn, settings=runtime.settings, clock=runtime.clock, customer_id=customer_id, reason=body.reason,
                    requested_by=who.subject, role=who.role, via="POST /v1/customers/{customer_id}/erasure")
            except erasure.UnknownCustomer as exc:
                raise HTTPException(404, str(exc)) from None
        if not created:
            response.status_code = 200
        return record

    @r.get("/v1/erasures", tags=["customer files"], response_model=Page[ErasureEntry],
           responses=page_doc(ErasureEntry, 50), summary="The erasure register: who erased which customer, when "
                                                         "and why (newest first)")
    async def erasures(
        request: Request, paging: ErasurePaging, sort: ErasureSort,
        customer_id: str | None = Query(None, min_length=1, max_length=64),
        who: Principal = require("supervisor", "ops"),
    ) -> Page[ErasureEntry]:
        """For supervisors and ops; ops see no reason (it may quote the customer's request)."""
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await erasure.register(conn, customer_id=customer_id, limit=paging.limit + 1, sort=sort,
                                          cursor=paging.cursor)
        entries = [ErasureEntry(**{**r, "reason": r["reason"] if who.role == "supervisor" else None}) for r in rows]
        return make_page(entries, paging.limit, sort, _key(sort, "erasure_id"))

    @r.post("/v1/customers/{customer_id}/contact", status_code=202, tags=["customer files"],
            response_model=ContactAccepted,
            responses=problems(404, examples={404: "no customer file 'CUST-404'; search with GET /v1/customers?phone=…"}),
            summary="Correct a customer's contact data (learned on the phone); applied like a CRM update")
    async def correct_contact(request: Request, customer_id: str, body: ContactCorrection,
                              who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        """The correction goes onto upstream.crm as a CustomerContactCorrected naming the person who
        made it, so intake files it in order with the customer's other facts (clearing the flags of
        the fields it corrects) and publishes it for every service; the log keeps it."""
        changes = body.model_dump(exclude_none=True, exclude={"reason"})
        if not changes:
            raise HTTPException(422, "name at least one of phone, email, address, person_in_charge to correct")
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            if await store.customer_file(conn, customer_id) is None:
                raise HTTPException(404, f"no customer file {customer_id!r}; search with GET /v1/customers?phone=…")
            await _refuse_outside_scope(conn, runtime, who, customer_id, "POST /v1/customers/{customer_id}/contact")
        now = runtime.clock.now()
        envelope = new_event(topic=UPSTREAM_CRM, event_type="CustomerContactCorrected", source="crm", occurred_at=now,
                             data={"customer_id": customer_id, **changes, "corrected_at": now,
                                   "corrected_by": who.subject, "reason": body.reason})
        async with runtime.transaction() as uow:
            uow.forward(UPSTREAM_CRM, key=envelope.key, value=envelope.to_json(), event_id=envelope.event_id,
                        event_type=envelope.event_type)
        return {"customer_id": customer_id, "event_id": str(envelope.event_id), "corrected_by": who.subject,
                "fields": sorted(changes), "status": "accepted"}

    @r.post("/v1/consultations", status_code=202, tags=["customer files"], response_model=ConsultationAccepted,
            summary="Record a consultation an agent took: opens the caller's file if needed; the first call follows")
    async def record_consultation(
        request: Request, body: ConsultationIn, who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        """Goes onto upstream.crm as the ConsultationRecorded a CRM would send, with the agent as
        `handled_by`: intake files it (a caller known by phone only gets a file), follow-up
        schedules the first tracking call 3-7 days later and puts a phoned-in one on its register.
        The same Idempotency-Key records it once."""
        if not body.customer_id and not body.phone:
            raise HTTPException(422, "name the caller: customer_id, or phone for a caller with no file yet")
        runtime = runtime_of(request)
        # the same key names the same consultation (the event id follows from it), besides the
        # stored answer every POST's Idempotency-Key is replayed with (shared.api)
        idempotency_key = (request.headers.get("Idempotency-Key") or "").strip()[:200] or None
        now = runtime.clock.now()
        at = body.consulted_at or now
        if at > now:
            raise HTTPException(422, f"consulted_at {at.isoformat()} is in the future (now {now.isoformat()})")
        ref = uuid5(AFTERSALES_NAMESPACE, f"consultation:{who.subject}:{idempotency_key}") if idempotency_key \
            else uuid.uuid4()
        data = {**body.model_dump(exclude_none=True, mode="json"), "consultation_id": f"CONS-{ref.hex[:16]}",
                "consulted_at": at.isoformat(), "handled_by": who.subject}
        envelope = new_event(topic=UPSTREAM_CRM, event_type="ConsultationRecorded", source="crm", occurred_at=at,
                             data=data, event_id=ref)  # checked against the contract as a CRM's would be
        async with runtime.transaction() as uow:
            uow.forward(UPSTREAM_CRM, key=envelope.key, value=envelope.to_json(),
                        event_id=envelope.event_id, event_type=envelope.event_type)
        return {"consultation_id": data["consultation_id"], "event_id": str(envelope.event_id),
                "handled_by": who.subject, "status": "accepted"}

    return r


async def _accept(runtime: Any, rules: IntakeRules, producer: str, payload: list[Any],
                  values: list[bytes], request_id: tuple[str, str, int]) -> WebhookResponse:
    topic = PRODUCER_TOPICS[producer]
    contract_topic = topic
    results: list[EventResult] = []
    forwards: list[tuple[str | None, bytes, uuid.UUID, str]] = []
    accepted: list[tuple[int, Any, bytes]] = []
    for index, (item, value) in enumerate(zip(payload, values, strict=True)):
        event_id = str(item.get("event_id")) if isinstance(item, dict) and item.get("event_id") else None
        try:
            event = decode(value, runtime.settings.topic(topic), contract_topic=contract_topic, strict_types=True,
                           check_key=True)
            precheck(event.event_type, event.data, rules)
        except (InvalidRecord, Rejected) as problem:
            results.append(EventResult(index=index, event_id=event_id, status="rejected", reason=problem.reason))
            key = item.get("key") if isinstance(item, dict) and isinstance(item.get("key"), str) else None
            forwards.append((key, value, uuid.uuid4(), str(item.get("event_type", "unknown"))
                             if isinstance(item, dict) else "unknown"))
            continue
        accepted.append((index, event, value))
        results.append(EventResult(index=index, event_id=str(event.event_id), status="accepted"))
    async with runtime.transaction() as uow:
        # the same signed request again (a captured one replayed inside the window): nothing is
        # written, not even its rejected events, which carry no id of their own to recognise them by
        _, sig, signed_at = request_id
        first_taken = await store.claim_webhook_request(
            uow.conn, producer, sig, signed_at, len(payload), runtime.clock.now(),
            forget_before=int(time.time()) - 2 * rules.webhook_max_age_seconds)  # wall time, as the window
        if first_taken is not None:
            reason = (f"this exact request (same signature) was taken at {first_taken.isoformat()}; "
                      "a replayed request writes nothing")
            replayed = [EventResult(index=r.index, event_id=r.event_id, status="duplicate", reason=reason) for r in results]
            return WebhookResponse(accepted=0, duplicate=len(replayed), rejected=0, results=replayed)
        seen = await store.already_seen(uow.conn, [e.event_id for _, e, _ in accepted])
        receipts = []
        for index, event, value in accepted:
            if event.event_id in seen:
                results[index] = EventResult(index=index, event_id=str(event.event_id), status="duplicate",
                                             reason="this event_id was received before")
                continue
            seen.add(event.event_id)
            receipts.append((event.event_id, producer, topic))
            forwards.append((event.key, value, event.event_id, event.event_type))
        await store.record_webhook_receipts(uow.conn, receipts, runtime.clock.now())
        for key, value, event_id, event_type in forwards:
            uow.forward(topic, key=key, value=value, event_id=event_id, event_type=event_type)
    counts = {status: sum(1 for r in results if r.status == status) for status in ("accepted", "duplicate", "rejected")}
    return WebhookResponse(**counts, results=results)


def _key(sort: Sort, tiebreak: str) -> Any:
    """A page item's (sort value, tiebreak value), for its cursor."""
    return lambda item: (getattr(item, sort.key), getattr(item, tiebreak))


def _file_view(found: dict[str, Any]) -> dict[str, Any]:
    customer = found["customer"]
    history: dict[str, list[dict[str, Any]]] = {}
    for h in found["history"]:
        history.setdefault(h["field"], []).append({"value": h["value"], "first_seen_at": h["first_seen_at"]})
    first_seen = customer.get("first_seen") or {}
    for name in HISTORY_FIELDS:  # a field that has held one value only: its entry is implicit
        value = customer.get(name)
        if value is not None and name not in (customer.get("history_kept") or []) and name in first_seen:
            history[name] = [{"value": as_text(value), "first_seen_at": datetime.fromisoformat(first_seen[name])}]
    phones = [h["value"] for h in sorted(history.get("phone", []), key=lambda h: h["first_seen_at"], reverse=True)]
    vehicles = []
    for v in found["vehicles"]:
        warranty_until = add_months(v["sold_at"], v["warranty_months"]) if v["sold_at"] and v["warranty_months"] else None
        vehicles.append({k: v[k] for k in ("vin", "plate", "model", "dealer_id", "region", "sale_id", "sold_at",
                                            "warranty_months", "warranty_km", "parts")}
                        | {"warranty_until": warranty_until})
    missing = missing_fields(customer, found["vehicles"])
    return {
        "customer_id": customer["customer_id"],
        "known_only_by_phone": customer["id_derived"],
        **{k: customer[k] for k in ("name", "phone", "email", "address", "region", "person_in_charge", "locale",
                                    "timezone", "consent", "created_at", "updated_at")},
        "erased_at": customer.get("erased_at"),
        "contact_flags": customer.get("contact_flags") or {},
        "phones": phones or ([customer["phone"]] if customer["phone"] else []),
        "complete": not missing, "missing": missing,
        "vehicles": vehicles,
        "visits": [{k: v[k] for k in ("repair_order_id", "vin", "dealer_id", "picked_up_at", "service_type", "items",
                                      "mileage_km", "advisor_id", "next_service_due_at", "next_service_due_km")}
                   for v in found["visits"]],
        "receipts": [{k: r[k] for k in ("receipt_id", "repair_order_id", "vin", "returned_at", "rating", "comments")}
                     for r in found["receipts"]],
        "history": history,
    }

