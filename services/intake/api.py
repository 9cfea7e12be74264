"""Intake's HTTP routes: the signed webhook for producers, and the customer files for staff."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.intake import store
from services.intake.config import IntakeRules
from services.intake.domain import HISTORY_FIELDS, Rejected, as_text, missing_fields
from services.intake.handlers import precheck
from shared.db import acquire
from shared.events import InvalidRecord, decode, new_event
from shared.events.catalog import PRODUCER_TOPICS, UPSTREAM_CRM
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.upstream import Email, Name, PersonName, Phone, Text, Vin
from shared.http import Moment, Principal, check_paging, require, runtime_of
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
    accepted: int
    duplicate: int
    rejected: int
    results: list[EventResult]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What a producer sends as X-Aftersales-Signature: HMAC-SHA256 over "<timestamp>.<raw body>"."""
    return SIGNATURE_SCHEME + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


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

    @r.get("/v1/customers", tags=["customer files"], summary="Search customer files")
    async def search_customers(
        request: Request,
        phone: str | None = Query(None, description="any format; matched in E.164, current or previous"),
        plate: str | None = None,
        vin: str | None = None,
        name: str | None = Query(None, description="prefix, case-insensitive"),
        region: str | None = None,
        page: int = Query(1, ge=1),
        page_size: int = Query(20, ge=1, le=SEARCH_PAGE_MAX),
        who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        """A search names at least one of phone, plate, vin, name, region: nobody pages through
        the whole customer base. A scoped agent finds only customers of their regions and dealers.
        Every file listed is written to the access log."""
        check_paging(page=page)
        filters = {k: v for k, v in (("phone", phone), ("plate", plate), ("vin", vin), ("name", name),
                                     ("region", region)) if v and v.strip()}
        if not filters:
            raise HTTPException(422, "name what you are looking for: phone, plate, vin, name or region "
                                     "(the whole customer base is not listed)")
        try:
            phone = normalize_phone(phone) if phone else None
            vin = normalize_vin(vin) if vin else None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            total, rows = await store.search_customers(
                conn, phone=phone, plate=plate.strip() if plate else None, vin=vin,
                name=name.strip() if name else None, region=region, limit=page_size, offset=(page - 1) * page_size,
                scope=_scope(who),
            )
            await _log_reads(conn, runtime, who, [r["customer_id"] for r in rows], "GET /v1/customers",
                             filters=sorted(filters), page=page)
        return {"total": total, "page": page, "page_size": page_size,
                "customers": [{**r, "vins": list(r["vins"] or [])} for r in rows]}

    @r.get("/v1/customers/incomplete", tags=["customer files"],
           summary="Files missing phone, address, plate or model (the plan wants them complete within 2 days)")
    async def incomplete(
        request: Request, page: int = Query(1, ge=1), page_size: int = Query(50, ge=1, le=WORKLIST_PAGE_MAX),
        who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        check_paging(page=page)
        runtime = runtime_of(request)
        rules: IntakeRules = runtime.deps.rules
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            total, rows = await store.incomplete_files(conn, page_size, (page - 1) * page_size, _scope(who))
            await _log_reads(conn, runtime, who, [r["customer_id"] for r in rows], "GET /v1/customers/incomplete",
                             page=page)
        now = runtime.clock.now()
        deadline = timedelta(days=rules.complete_file_within_days)
        files = []
        for row in rows:
            missing = [f for f, flag in (("phone", row["no_phone"]), ("address", row["no_address"])) if flag]
            missing += [f"plate ({vin})" for vin in row["no_plate"]] + [f"model ({vin})" for vin in row["no_model"]]
            since = row["last_visit_at"] or row["created_at"]
            files.append({
                "customer_id": row["customer_id"], "name": row["name"], "region": row["region"], "missing": missing,
                "last_visit_at": row["last_visit_at"], "overdue": now - since > deadline,
            })
        return {"total": total, "page": page, "page_size": page_size, "files": files}

    @r.get("/v1/customers/flagged", tags=["customer files"],
           summary="Files with a contact value that failed its check (kept with the reason): call and correct them")
    async def flagged(
        request: Request, page: int = Query(1, ge=1), page_size: int = Query(50, ge=1, le=WORKLIST_PAGE_MAX),
        who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        check_paging(page=page)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            total, rows = await store.flagged_files(conn, page_size, (page - 1) * page_size, _scope(who))
            await _log_reads(conn, runtime, who, [r["customer_id"] for r in rows], "GET /v1/customers/flagged",
                             page=page)
        return {"total": total, "page": page, "page_size": page_size, "files": rows}

    @r.get("/v1/customers/{customer_id}", tags=["customer files"],
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

    @r.get("/v1/customer-file-reads", tags=["customer files"],
           summary="The access log: who read which customer file, when and by which route (newest first)")
    async def file_reads(
        request: Request, customer_id: str | None = Query(None, min_length=1, max_length=64),
        reader: str | None = Query(None, min_length=1, max_length=64),
        limit: int = Query(50, ge=1, le=FILE_READS_MAX), before_id: int | None = Query(None, ge=1, le=2**62),
        who: Principal = require("supervisor"),
    ) -> dict[str, Any]:
        """For supervisors: name a customer, a reader or both. Append-only (migration 0007); its own
        reads are not logged (they show who read, not the files)."""
        if not customer_id and not reader:
            raise HTTPException(422, "name a customer_id, a reader or both")
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            entries = await store.file_reads(conn, customer_id=customer_id, reader=reader, limit=limit,
                                             before_id=before_id)
        return {"customer_id": customer_id, "reader": reader, "entries": entries,
                "next_before_id": entries[-1]["id"] if len(entries) == limit else None}

    @r.post("/v1/customers/{customer_id}/contact", status_code=202, tags=["customer files"],
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

    @r.post("/v1/consultations", status_code=202, tags=["customer files"],
            summary="Record a consultation an agent took: opens the caller's file if needed; the first call follows")
    async def record_consultation(
        request: Request, body: ConsultationIn, who: Principal = require("agent", "supervisor"),
        idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
    ) -> dict[str, Any]:
        """Goes onto upstream.crm as the ConsultationRecorded a CRM would send, with the agent as
        `handled_by`: intake files it (a caller known by phone only gets a file), follow-up
        schedules the first tracking call 3-7 days later and puts a phoned-in one on its register.
        The same Idempotency-Key records it once."""
        if not body.customer_id and not body.phone:
            raise HTTPException(422, "name the caller: customer_id, or phone for a caller with no file yet")
        runtime = runtime_of(request)
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

