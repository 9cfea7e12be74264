"""Follow-up's HTTP routes for tracking owners (issue 16): who follows each customer, a
supervisor's change of owner, and a supervisor's assignment of an open call to an agent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from services.followup import models as m
from services.followup import owners
from services.followup.etags import check_followup, followup_etag_of
from services.followup.lists import hold_to_scope, narrowed
from shared.api import IfMatch, Page, PageParams, Sort, SortKey, make_page, page_doc, page_params, problems, sort_param
from shared.db import acquire
from shared.http import Principal, require, runtime_of

Paging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=200))]
OwnerSort = Annotated[Sort, Depends(sort_param({
    "owner": SortKey("o.owner"), "customer_id": SortKey("o.customer_id"),
    "assigned_at": SortKey("o.assigned_at", "timestamptz"),
}, default="owner"))]

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

    @r.get("/v1/owners", response_model=Page[m.CustomerOwner], responses=page_doc(m.CustomerOwner),
           summary="Customers with their tracking owner and open calls, by owner or customer")
    async def list_owners(
        request: Request, paging: Paging, sort: OwnerSort, owner: str | None = None, customer: str | None = None,
        who: Principal = require("agent", "supervisor"),
    ) -> Page[Any]:
        """A scoped agent lists the customers of their regions and dealers; an agent of the whole
        group names the `owner` (e.g. themselves) or the `customer`."""
        narrowed(who, owner=owner, customer=customer)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        key = sort.column.removeprefix("o.")
        async with acquire(runtime.pool) as conn:
            rows = await owners.listing(conn, owner=owner, customer=customer, regions=who.scope_params()[0],
                                        dealers=who.scope_params()[1],
                                        sort=sort, cursor=paging.cursor, limit=paging.limit + 1)
        return make_page(rows, paging.limit, sort, lambda o: (o[key], o["customer_id"]))

    @r.get("/v1/customers/{customer_id}/owner", response_model=m.OwnerDetail, responses=problems(404),
           summary="A customer's tracking owner and how it changed")
    async def get_owner(request: Request, customer_id: str,
                        who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await hold_to_scope(request, who, customer_id=customer_id)  # 403 outside a scoped agent's customers
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            found = (await owners.owners_of(conn, [customer_id])).get(customer_id)
            if found is None:
                raise HTTPException(404, f"customer {customer_id!r} has no owner on follow-up (unknown customer)")
            changes = await owners.history(conn, customer_id)
        return {**found, "history": changes}

    @r.put("/v1/customers/{customer_id}/owner", response_model=m.OwnerSet, responses=problems(404, 409),
           summary="Set or change a customer's tracking owner (supervisor); the rules never move it afterwards")
    async def set_owner(request: Request, customer_id: str, body: OwnerIn,
                        who: Principal = require("supervisor")) -> dict[str, Any]:
        await hold_to_scope(request, who, customer_id=customer_id)
        try:
            async with runtime_of(request).transaction() as uow:
                return await owners.set_owner(uow, customer_id, body.owner, body.reason.strip(), who.subject)
        except owners.OwnerRefused as exc:
            raise _refused(exc) from None

    @r.post("/v1/followups/{followup_id}/assign", response_model=m.CallAssigned, responses=problems(404, 409, 412),
            summary="Assign or reassign an open call to an agent (supervisor): first in their queue")
    async def assign_call(request: Request, response: Response, followup_id: str, body: AssignIn,
                          if_match: IfMatch = None, who: Principal = require("supervisor")) -> dict[str, Any]:
        """Another agent may take the call only once it is overdue and nobody holds it; refused
        (409) while another agent's claim is live. `If-Match`: the follow-up's ETag."""
        await hold_to_scope(request, who, followup_id=followup_id)
        try:
            async with runtime_of(request).transaction() as uow:
                await check_followup(uow.conn, followup_id, if_match)
                assigned = await owners.assign_call(uow, followup_id, body.agent, body.reason.strip(), who.subject)
                if (tag := await followup_etag_of(uow.conn, followup_id)) is not None:
                    response.headers["ETag"] = tag
        except owners.OwnerRefused as exc:
            raise _refused(exc) from None
        return assigned

    return r
