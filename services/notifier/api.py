"""Notifier's HTTP routes: what was sent to whom, the letter register, customers' opt-outs and
their consent history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.notifier import store
from services.notifier.reports_api import summary_router
from shared.api import Page, PageParams, Sort, SortKey, make_page, page_doc, page_params, problems, sort_param
from shared.db import acquire
from shared.http import Principal, outside_scope, require, runtime_of

Channel = Literal["sms", "email", "letter", "all"]
Status = Literal["awaiting_contact", "pending", "sending", "sent", "failed", "suppressed"]
_WHEN = "2026-11-18T14:05:00+08:00"


class OptOutIn(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    channel: Literal["sms", "email", "letter", "all"]
    reason: str | None = Field(None, max_length=1000)


class ConsentEntry(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "entry_id": 318, "channel": "letter", "granted": False, "changed_at": _WHEN, "changed_by": "wang.fang",
        "reason": "搬家，信件寄不到", "source": "opt_out", "event_id": None, "recorded_at": _WHEN}]})
    entry_id: int
    channel: Channel
    granted: bool = Field(description="false: the customer said no to the channel")
    changed_at: datetime = Field(description="when it happened (the event's time, or when it was recorded here)")
    changed_by: str = Field(description="the person, or the system that reported the change")
    reason: str | None
    source: str = Field(description="opt_out, opt_in, or the customer-file event that carried it")
    event_id: uuid.UUID | None
    recorded_at: datetime


class Notification(BaseModel):
    """A message the rule table decided on, and how far it got."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "notification_id": "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "rule": "first_visit_reminder",
        "source_event_id": "2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091", "source_event_type": "FollowUpScheduled",
        "correlation_id": "1a2b3c4d-5e6f-4708-9a1b-2c3d4e5f6071", "recipient": "CUST-000123",
        "recipient_kind": "customer", "channel": "sms", "template": "first_visit_reminder.sms.j2", "locale": "zh-CN",
        "status": "sent", "due_at": _WHEN, "attempts": 1, "last_error": None, "provider_ref": "SMS-20261118-00042",
        "created_at": _WHEN, "finished_at": "2026-11-18T14:05:02+08:00"}]})
    notification_id: uuid.UUID
    rule: str
    source_event_id: uuid.UUID
    source_event_type: str
    correlation_id: uuid.UUID
    recipient: str = Field(description="a customer id, or a member of staff from the directory")
    recipient_kind: str
    channel: str
    template: str
    locale: str | None
    status: Status
    due_at: datetime
    attempts: int
    last_error: str | None
    provider_ref: str | None
    created_at: datetime
    finished_at: datetime | None


class Letter(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "letter_id": "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "addressee": "李强",
        "postal_address": "成都市武侯区天府大道北段1号", "subject": "回访通知：请告知您的联系电话",
        "body": "尊敬的李强先生：……", "registered_at": _WHEN, "printed_at": None, "printed_by": None}]})
    letter_id: uuid.UUID = Field(description="the notification's id")
    addressee: str | None
    postal_address: str
    subject: str
    body: str
    registered_at: datetime
    printed_at: datetime | None
    printed_by: str | None


class LetterPrinted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "letter_id": "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "status": "printed"}]})
    letter_id: uuid.UUID
    status: Literal["printed"]


class OptOut(BaseModel):
    customer_id: str
    channel: Channel
    reason: str | None
    recorded_by: str
    recorded_at: datetime


class OptOuts(BaseModel):
    """A customer's opt-outs now (one per channel at most, `all` for every channel)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customer_id": "CUST-000123", "opt_outs": [{
            "customer_id": "CUST-000123", "channel": "sms", "reason": "客户要求不再接收短信",
            "recorded_by": "wang.fang", "recorded_at": _WHEN}]}]})
    customer_id: str
    opt_outs: list[OptOut]


NOTIFICATION_SORTS = {"created_at": SortKey(column="created_at", cast="timestamptz"),
                      "due_at": SortKey(column="due_at", cast="timestamptz")}
LETTER_SORTS = {"registered_at": SortKey(column="registered_at", cast="timestamptz")}
CONSENT_SORTS = {"changed_at": SortKey(column="l.changed_at", cast="timestamptz"),
                 "recorded_at": SortKey(column="l.recorded_at", cast="timestamptz")}
UNKNOWN = "the notifier has no record of customer CUST-404 (no contact data, opt-out or consent entry)"
NOT_FOUND_LETTER = "letter 7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f is not in the register or was printed already"


async def _known(conn: Any, customer_id: str) -> None:
    if not await store.customer_known(conn, customer_id):
        raise HTTPException(404, f"the notifier has no record of customer {customer_id} (no contact data, opt-out "
                                 "or consent entry)")


def _key(sort: Sort, tiebreak: str) -> Any:
    return lambda item: (getattr(item, sort.key), getattr(item, tiebreak))


async def _hold_to_scope(conn: Any, who: Principal, customer_id: str) -> None:
    """403 when a scoped agent asks for a customer outside their regions and dealers (docs/security.md)."""
    if who.scoped and not await store.customer_in_scope(conn, customer_id, *who.scope_params()):
        raise outside_scope(who, f"customer {customer_id}")



# The paging and sort parameters of each list (module level: one dependency each)
NotificationPaging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=200))]
NotificationSort = Annotated[Sort, Depends(sort_param(NOTIFICATION_SORTS, default="-created_at"))]
LetterPaging = Annotated[PageParams, Depends(page_params(default_limit=100, max_limit=200))]
LetterSort = Annotated[Sort, Depends(sort_param(LETTER_SORTS, default="registered_at"))]
ConsentPaging = Annotated[PageParams, Depends(page_params(default_limit=200, max_limit=200))]
ConsentSort = Annotated[Sort, Depends(sort_param(CONSENT_SORTS, default="changed_at"))]


def router() -> APIRouter:
    r = APIRouter(tags=["notifications"])
    r.include_router(summary_router())  # the monthly work summary, issued to be mailed

    @r.get("/v1/notifications", response_model=Page[Notification], responses=page_doc(Notification, 50),
           summary="Notifications by recipient, source event or status, newest first")
    async def list_notifications(
        request: Request, paging: NotificationPaging, sort: NotificationSort,
        recipient: str | None = Query(None, max_length=64), event_id: uuid.UUID | None = None,
        status: Status | None = None,
        who: Principal = require("supervisor", "ops"),
    ) -> Page[Notification]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await store.notifications(conn, recipient=recipient, event_id=event_id, status=status,
                                             limit=paging.limit + 1, sort=sort, cursor=paging.cursor)
        return make_page([Notification(**r) for r in rows], paging.limit, sort, _key(sort, "notification_id"))

    @r.get("/v1/letters", response_model=Page[Letter], responses=page_doc(Letter, 100),
           summary="The letter register: letters to print and post (and those printed), oldest first")
    async def list_letters(
        request: Request, paging: LetterPaging, sort: LetterSort, printed: bool | None = None,
        who: Principal = require("agent", "supervisor", "ops"),
    ) -> Page[Letter]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            regions, dealers = who.scope_params()  # a scoped agent's register: their customers' letters
            rows = await store.letters(conn, printed=printed, limit=paging.limit + 1, sort=sort, cursor=paging.cursor,
                                       regions=regions, dealers=dealers)
        return make_page([Letter(**r) for r in rows], paging.limit, sort, _key(sort, "letter_id"))

    @r.post("/v1/letters/{letter_id}/printed", response_model=LetterPrinted,
            responses=problems(404, 409, examples={404: NOT_FOUND_LETTER, 409: NOT_FOUND_LETTER}),
            summary="Mark a letter printed and posted")
    async def printed(request: Request, letter_id: uuid.UUID,
                      who: Principal = require("agent", "supervisor")) -> dict[str, str]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            if who.scoped and not await store.letter_in_scope(conn, letter_id, *who.scope_params()):
                raise outside_scope(who, f"letter {letter_id}")
            if not await store.mark_printed(conn, letter_id, who.subject, runtime.clock.now()):
                raise HTTPException(409 if await conn.fetchval("SELECT 1 FROM letters WHERE letter_id = $1", letter_id)
                                    else 404, f"letter {letter_id} is not in the register or was printed already")
        return {"letter_id": str(letter_id), "status": "printed"}

    @r.post("/v1/opt-outs", status_code=201, response_model=OptOuts,
            summary="Record a customer's opt-out of a channel (or all): later messages are suppressed")
    async def opt_out(request: Request, body: OptOutIn, who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await _hold_to_scope(conn, who, body.customer_id)
            now = runtime.clock.now()
            async with conn.transaction():
                await store.record_opt_out(conn, body.customer_id, body.channel, body.reason, who.subject, now)
                await store.log_consent(conn, [{"customer_id": body.customer_id, "channel": body.channel,
                                                "granted": False, "changed_at": now, "changed_by": who.subject,
                                                "reason": body.reason, "source": "opt_out", "recorded_at": now}])
            return {"customer_id": body.customer_id, "opt_outs": await store.opt_outs_of(conn, body.customer_id)}

    @r.get("/v1/opt-outs/{customer_id}", response_model=OptOuts, summary="A customer's opt-outs",
           responses=problems(404, examples={404: UNKNOWN}))
    async def opt_outs(request: Request, customer_id: str,
                       who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await _hold_to_scope(conn, who, customer_id)
            await _known(conn, customer_id)
            return {"customer_id": customer_id, "opt_outs": await store.opt_outs_of(conn, customer_id)}

    @r.delete("/v1/opt-outs/{customer_id}/{channel}", response_model=OptOuts,
              responses=problems(404, examples={404: "customer CUST-000123 has no opt-out of sms"}),
              summary="The customer opts back in to a channel")
    async def opt_in(request: Request, customer_id: str, channel: Channel,
                     reason: str | None = Query(None, max_length=1000, description="why (kept in the consent log)"),
                     who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn, conn.transaction():
            await _hold_to_scope(conn, who, customer_id)
            if not await store.remove_opt_out(conn, customer_id, channel):
                raise HTTPException(404, f"customer {customer_id} has no opt-out of {channel}")
            now = runtime.clock.now()
            await store.log_consent(conn, [{"customer_id": customer_id, "channel": channel, "granted": True,
                                            "changed_at": now, "changed_by": who.subject, "reason": reason,
                                            "source": "opt_in", "recorded_at": now}])
            return {"customer_id": customer_id, "opt_outs": await store.opt_outs_of(conn, customer_id)}

    @r.get("/v1/consent-log/{customer_id}", response_model=Page[ConsentEntry],
           responses=problems(404, examples={404: UNKNOWN}) | page_doc(ConsentEntry, 200),
           summary="A customer's consent history: who changed which channel, when and why (oldest first)")
    async def consent_log(
        request: Request, customer_id: str,
        sort: ConsentSort,
        paging: ConsentPaging,
        who: Principal = require("agent", "supervisor"),
    ) -> Page[ConsentEntry]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await _hold_to_scope(conn, who, customer_id)
            await _known(conn, customer_id)
            rows = await store.consent_history(conn, customer_id, paging.limit + 1, sort, paging.cursor)
        return make_page([ConsentEntry(**r) for r in rows], paging.limit, sort,
                         lambda e: (getattr(e, sort.key), f"{e.entry_id:019d}"))

    return r
