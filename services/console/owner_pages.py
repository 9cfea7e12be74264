"""Tracking owners for supervisors (issue 16): who follows each customer (by the rules or by a
supervisor), a customer's owner changed with a reason, and an open call assigned to an agent.
Read and written through the follow-up service's API under the supervisor's name; names come
from the console's read model, the agents to choose from from its accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from services.console import store
from services.console.clients import Person, ServiceError
from services.console.pages import audit, form_of, render, role, services
from shared.db import acquire
from shared.http import runtime_of


def page_link(customer: str = "", owner: str = "", **params: str) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in
                     (("customer", customer), ("owner", owner), *params.items()) if v)
    return "/supervisor/owners" + (f"?{query}" if query else "")


def moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


async def agents(request: Request) -> list[dict[str, str]]:
    """The people who make calls (agents), to choose an owner or an assignee from."""
    runtime = runtime_of(request)
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        rows = await conn.fetch("SELECT username, display_name FROM accounts WHERE role = 'agent' ORDER BY username")
    return [{"username": r["username"], "display_name": r["display_name"]} for r in rows]


async def owner_of(request: Request, person: Person, customer_id: str) -> dict[str, Any] | None:
    """The customer's tracking owner as the follow-up service holds it, with the agent's name
    (None: no owner yet, or the service cannot say right now; the page shows without it)."""
    try:
        found = await services(request).call(person, "GET", "followup",
                                             f"/v1/customers/{quote(customer_id, safe='')}/owner", ok=(200, 404))
    except ServiceError:
        return None
    if not found or "owner" not in found:
        return None
    names = {a["username"]: a["display_name"] for a in await agents(request)}
    return {**found, "display_name": names.get(found["owner"], found["owner"])}


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/supervisor/owners")
    async def owners_page(request: Request, owner: str = "", customer: str = "", done: str = "", error: str = "",
                          person: Person = Depends(role("supervisor"))) -> Response:
        owner, customer = owner.strip()[:64], customer.strip()[:100]
        params = {k: v for k, v in (("owner", owner), ("customer", customer)) if v}
        problem, rows, record = None, [], None
        try:
            answer = await services(request).call(person, "GET", "followup", "/v1/owners",
                                                  params={**params, "limit": 200})
            rows = answer["items"]
            if customer:
                record = await services(request).call(person, "GET", "followup",
                                                      f"/v1/customers/{quote(customer, safe='')}/owner",
                                                      ok=(200, 404))
                if record is not None and "owner" not in record:
                    record = None
        except ServiceError as exc:
            problem = exc.message
        for row in rows:
            for call in row["open_calls"]:
                call["due_by"] = moment(call["due_by"])
        for change in (record or {}).get("history", []):
            change["assigned_at"] = moment(change["assigned_at"])
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            names = await store.customers_brief(conn, [row["customer_id"] for row in rows] + ([customer] if customer
                                                                                               else []))
        people = await agents(request)
        await audit(request, person, "read_report", subject="owners", owner=owner or None,
                    customer_id=customer or None)
        return render(request, "owners.html", person, rows=rows, names=names, record=record, agents=people,
                      display={a["username"]: a["display_name"] for a in people}, owner=owner, customer=customer,
                      problem=problem, done=done[:40], error=error[:300], selected=next(
                          (row for row in rows if row["customer_id"] == customer), None))

    @r.post("/supervisor/owners/{customer_id}")
    async def change_owner(request: Request, customer_id: str,
                           person: Person = Depends(role("supervisor"))) -> RedirectResponse:
        form = await form_of(request, person)
        new_owner, reason = form.get("owner", "").strip(), form.get("reason", "").strip()
        try:
            await services(request).call(person, "PUT", "followup", f"/v1/customers/{quote(customer_id, safe='')}/owner",
                                         json={"owner": new_owner, "reason": reason})
        except ServiceError as exc:
            return RedirectResponse(page_link(customer_id, error=exc.message), status_code=303)
        await audit(request, person, "change_owner", customer_id=customer_id, subject=new_owner, reason=reason)
        return RedirectResponse(page_link(customer_id, done="owner"), status_code=303)

    @r.post("/supervisor/owners/{customer_id}/calls/{followup_id}")
    async def assign_call(request: Request, customer_id: str, followup_id: str,
                          person: Person = Depends(role("supervisor"))) -> RedirectResponse:
        form = await form_of(request, person)
        agent, reason = form.get("agent", "").strip(), form.get("reason", "").strip()
        try:
            await services(request).call(person, "POST", "followup", f"/v1/followups/{quote(followup_id, safe='')}"
                                                                     "/assign", json={"agent": agent, "reason": reason})
        except ServiceError as exc:
            return RedirectResponse(page_link(customer_id, error=exc.message), status_code=303)
        await audit(request, person, "assign_call", customer_id=customer_id, subject=followup_id, agent=agent,
                    reason=reason)
        return RedirectResponse(page_link(customer_id, done="call"), status_code=303)

    return r
