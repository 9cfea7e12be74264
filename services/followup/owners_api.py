"""Follow-up's HTTP routes for tracking owners (issue 16): who follows each customer, a
supervisor's change of owner, and a supervisor's assignment of an open call to an agent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from services.followup import owners
from shared.db import acquire
from shared.http import Principal, require, runtime_of

AGENT_PATTERN = owners.AGENT_ID.pattern


class OwnerIn(BaseModel):
    owner: str = Field(pattern=AGENT_PATTERN, description="the agent's id (their console user name)")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S", description="why the owner changes (kept with the change)")


class AssignIn(BaseModel):
    agent: str = Field(pattern=AGENT_PATTERN, description="the agent who is to make the call")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S", description="why this agent (kept with the assignment)")


def _refused(exc: owners.OwnerRefused) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def owners_router() -> APIRouter:
    r = APIRouter(tags=["tracking owners"])

    @r.get("/v1/owners", summary="Customers with their tracking owner and open calls, by owner or customer")
    async def list_owners(
        request: Request, owner: str | None = None, customer: str | None = None,
        limit: int = Query(100, ge=1, le=1000), who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await owners.listing(conn, owner=owner, customer=customer, limit=limit)
        return {"customers": rows}

    @r.get("/v1/customers/{customer_id}/owner", summary="A customer's tracking owner and how it changed")
    async def get_owner(request: Request, customer_id: str,
                        who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            found = (await owners.owners_of(conn, [customer_id])).get(customer_id)
            if found is None:
                raise HTTPException(404, f"customer {customer_id!r} has no owner on follow-up (unknown customer)")
            changes = await owners.history(conn, customer_id)
        return {**found, "history": changes}

    @r.put("/v1/customers/{customer_id}/owner",
           summary="Set or change a customer's tracking owner (supervisor); the rules never move it afterwards")
    async def set_owner(request: Request, customer_id: str, body: OwnerIn,
                        who: Principal = require("supervisor")) -> dict[str, Any]:
        try:
            async with runtime_of(request).transaction() as uow:
                return await owners.set_owner(uow, customer_id, body.owner, body.reason.strip(), who.subject)
        except owners.OwnerRefused as exc:
            raise _refused(exc) from None

    @r.post("/v1/followups/{followup_id}/assign",
            summary="Assign or reassign an open call to an agent (supervisor): first in their queue")
    async def assign_call(request: Request, followup_id: str, body: AssignIn,
                          who: Principal = require("supervisor")) -> dict[str, Any]:
        """Another agent may take the call only once it is overdue and nobody holds it; refused
        (409) while another agent's claim is live."""
        try:
            async with runtime_of(request).transaction() as uow:
                return await owners.assign_call(uow, followup_id, body.agent, body.reason.strip(), who.subject)
        except owners.OwnerRefused as exc:
            raise _refused(exc) from None

    return r
