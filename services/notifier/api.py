"""Notifier's HTTP routes: what was sent to whom, the letter register, customers' opt-outs and
their consent history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from services.notifier import store
from services.notifier.reports_api import summary_router
from shared.db import acquire
from shared.http import Principal, check_paging, outside_scope, require, runtime_of


class OptOutIn(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    channel: Literal["sms", "email", "letter", "all"]
    reason: str | None = Field(None, max_length=1000)


class ConsentEntry(BaseModel):
    entry_id: int
    channel: Literal["sms", "email", "letter", "all"]
    granted: bool = Field(description="false: the customer said no to the channel")
    changed_at: datetime = Field(description="when it happened (the event's time, or when it was recorded here)")
    changed_by: str = Field(description="the person, or the system that reported the change")
    reason: str | None
    source: str = Field(description="opt_out, opt_in, or the customer-file event that carried it")
    event_id: uuid.UUID | None
    recorded_at: datetime


class ConsentHistory(BaseModel):
    customer_id: str
    entries: list[ConsentEntry]


async def _hold_to_scope(conn: Any, who: Principal, customer_id: str) -> None:
    """403 when a scoped agent asks for a customer outside their regions and dealers (docs/security.md)."""
    if who.scoped and not await store.customer_in_scope(conn, customer_id, *who.scope_params()):
        raise outside_scope(who, f"customer {customer_id}")


def router() -> APIRouter:
    r = APIRouter(tags=["notifications"])
    r.include_router(summary_router())  # the monthly work summary, issued to be mailed

    @r.get("/v1/notifications", summary="Notifications by recipient, source event or status, newest first")
    async def list_notifications(
        request: Request, recipient: str | None = None, event_id: uuid.UUID | None = None,
        status: Literal["awaiting_contact", "pending", "sending", "sent", "failed", "suppressed"] | None = None,
        page: int = Query(1, ge=1), page_size: int = Query(50, ge=1, le=500),
        who: Principal = require("supervisor", "ops"),
    ) -> dict[str, Any]:
        check_paging(page=page)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            total, rows = await store.notifications(conn, recipient=recipient, event_id=event_id, status=status,
                                                    limit=page_size, offset=(page - 1) * page_size)
        return {"total": total, "page": page, "page_size": page_size, "notifications": rows}

    @r.get("/v1/letters", summary="The letter register: letters to print and post (and those printed)")
    async def list_letters(
        request: Request, printed: bool | None = None, page: int = Query(1, ge=1),
        page_size: int = Query(100, ge=1, le=500), who: Principal = require("agent", "supervisor", "ops"),
    ) -> dict[str, Any]:
        check_paging(page=page)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            regions, dealers = who.scope_params()  # a scoped agent's register: their customers' letters
            total, rows = await store.letters(conn, printed=printed, limit=page_size, offset=(page - 1) * page_size,
                                              regions=regions, dealers=dealers)
        return {"total": total, "page": page, "page_size": page_size, "letters": rows}

    @r.post("/v1/letters/{letter_id}/printed", summary="Mark a letter printed and posted")
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

    @r.post("/v1/opt-outs", status_code=201,
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

    @r.get("/v1/opt-outs/{customer_id}", summary="A customer's opt-outs")
    async def opt_outs(request: Request, customer_id: str,
                       who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await _hold_to_scope(conn, who, customer_id)
            return {"customer_id": customer_id, "opt_outs": await store.opt_outs_of(conn, customer_id)}

    @r.delete("/v1/opt-outs/{customer_id}/{channel}", summary="The customer opts back in to a channel")
    async def opt_in(request: Request, customer_id: str, channel: Literal["sms", "email", "letter", "all"],
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

    @r.get("/v1/consent-log/{customer_id}", response_model=ConsentHistory,
           summary="A customer's consent history: who changed which channel, when and why (oldest first)")
    async def consent_log(request: Request, customer_id: str, limit: int = Query(500, ge=1, le=5000),
                          who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await _hold_to_scope(conn, who, customer_id)
            return {"customer_id": customer_id, "entries": await store.consent_history(conn, customer_id, limit)}

    return r
