"""One conversation per customer at the desk: the customer's follow-ups due in the same days are
claimed together and worked on one call page, which shows the customer's previous calls on every
follow-up (what was said and asked) and their open feedback items, and records each follow-up's
outcome in one submission (the follow-up service's conversation API, under the agent's name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from services.console import desk, store
from services.console.clients import Person, ServiceError
from services.console.i18n import N_
from services.console.pages import (
    DESK,
    LOST_REASONS,
    _moment,
    attempt_body,
    audit,
    form_of,
    locale_of,
    refuse_outside_scope,
    render,
    role,
    services,
)
from shared.db import acquire
from shared.http import runtime_of

# the fields each follow-up has on the call form (`<field>__<n>`, n its place on the call)
PER_FOLLOWUP = ("outcome", "satisfaction", "satisfied", "talking_points", "lost_reason", "lost_reason_note")
# the fields the call has once: they go on the call's first follow-up that reached the customer
SHARED = ("requests", "notes", "answered_on_call", "feedback_serious", "call_back_at", "timezone")


def call_path(customer_id: str) -> str:
    return f"/desk/customers/{quote(customer_id, safe='')}/call"


def call_record(form: dict[str, str], followups: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The follow-up service's call record from the conversation's form: each follow-up's outcome;
    the call's requests, notes and concern on the first follow-up that reached the customer (on
    the first one when none did). ValueError says what to fix."""
    outcomes = []
    for n, f in enumerate(followups):
        part = {name: form.get(f"{name}__{n}", "") for name in PER_FOLLOWUP}
        part |= {name: form.get(name, "") for name in ("call_back_at", "timezone")}
        if not part["outcome"]:
            raise ValueError(N_("Choose what happened for each follow-up of the call."))
        outcomes.append({"followup_id": f["followup_id"], **attempt_body(part, now)})
    reached = [o for o in outcomes if o["outcome"] == "reached"]
    first = (reached or outcomes)[0]
    shared = {name: form.get(name, "") for name in SHARED} | {"outcome": first["outcome"]}
    if shared["outcome"] == "call_back_later":
        shared["call_back_at"] = ""  # its time is already on the outcome
        shared["outcome"] = "reached" if first in reached else "unreachable"
    extra = attempt_body(shared, now)
    for name in ("requests", "notes", "feedback"):
        if name in extra and (name != "feedback" or first in reached):
            first[name] = extra[name]
    return {"outcomes": outcomes}


def router() -> APIRouter:
    r = APIRouter()

    async def show(request: Request, person: Person, customer_id: str, *, status: int = 200,
                   error: str | None = None, detail: str | None = None,
                   typed: dict[str, str] | None = None) -> Response:
        try:
            talk = await services(request).call(person, "GET", "followup",
                                                f"/v1/customers/{quote(customer_id, safe='')}/conversation",
                                                ok=(200, 404))
        except ServiceError as exc:
            return RedirectResponse(f"/desk?error={quote(exc.message)}", status_code=303)
        if not talk.get("followups"):  # nothing to call (a customer follow-up does not know: 404)
            return RedirectResponse("/desk", status_code=303)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await refuse_outside_scope(request, person, conn, customer_id)
            customer = await store.customer(conn, customer_id)
            story = await store.story(conn, customer_id)
        await audit(request, person, "read_customer", customer_id=customer_id, subject=customer_id,
                    page="conversation")
        now = runtime.clock.now()
        locale = locale_of(request, person)
        for f in talk["followups"]:
            f["due_from"], f["due_by"] = _moment(f["due_from"]), _moment(f["due_by"])
            f["lateness"] = desk.lateness(f["due_by"], now)
            f["script"] = [line.replace("{dealer}", f.get("dealer_id") or "").replace("{campaign}",
                                                                                     f.get("campaign_id") or "")
                           for line in desk.script(f["kind"], locale)]
        for c in talk["previous_calls"]:
            c["attempted_at"] = _moment(c["attempted_at"])
        for item in talk["open_feedback_items"]:
            item["opened_at"] = _moment(item["opened_at"])
        return render(request, "conversation.html", person, status=status, talk=talk, customer=customer, story=story,
                      error=error, detail=detail, typed=typed or {}, lost_reasons=LOST_REASONS,
                      open_items=talk["open_feedback_items"],
                      mine=talk["claimed_by"] == person.username)

    @r.get("/desk/customers/{customer_id}/call")
    async def conversation_page(request: Request, customer_id: str,
                                person: Person = Depends(role(*DESK))) -> Response:
        return await show(request, person, customer_id)

    @r.post("/desk/customers/{customer_id}/call/claim")
    async def claim(request: Request, customer_id: str, person: Person = Depends(role(*DESK))) -> Response:
        await form_of(request, person)
        try:
            taken = await services(request).call(
                person, "POST", "followup", f"/v1/customers/{quote(customer_id, safe='')}/conversation/claim")
        except ServiceError as exc:
            return RedirectResponse(f"/desk?error={quote(exc.message)}", status_code=303)
        await audit(request, person, "claim_call", customer_id=customer_id, subject=customer_id,
                    followups=[f["followup_id"] for f in taken["followups"]])
        return RedirectResponse(call_path(customer_id), status_code=303)

    @r.post("/desk/customers/{customer_id}/call/release")
    async def release(request: Request, customer_id: str, person: Person = Depends(role(*DESK))) -> Response:
        await form_of(request, person)
        try:
            await services(request).call(
                person, "POST", "followup", f"/v1/customers/{quote(customer_id, safe='')}/conversation/release")
        except ServiceError as exc:
            return RedirectResponse(f"/desk?error={quote(exc.message)}", status_code=303)
        await audit(request, person, "release_call", customer_id=customer_id, subject=customer_id)
        return RedirectResponse("/desk", status_code=303)

    @r.post("/desk/customers/{customer_id}/call")
    async def record(request: Request, customer_id: str, person: Person = Depends(role(*DESK))) -> Response:
        form = await form_of(request, person)
        try:
            talk = await services(request).call(person, "GET", "followup",
                                                f"/v1/customers/{quote(customer_id, safe='')}/conversation")
        except ServiceError as exc:
            return RedirectResponse(f"/desk?error={quote(exc.message)}", status_code=303)
        on_form = form.get("followups", "").split(",")
        followups = [f for f in talk["followups"] if f["followup_id"] in on_form]
        followups.sort(key=lambda f: on_form.index(f["followup_id"]))
        if [f["followup_id"] for f in followups] != on_form:  # done or changed meanwhile: the page as it is now
            return await show(request, person, customer_id, status=409, typed=form,
                              error=N_("The customer's calls changed while you were on this page: check them and "
                                       "save again."))
        try:
            body = call_record(form, followups, runtime_of(request).clock.now())
        except ValueError as exc:
            return await show(request, person, customer_id, status=422, typed=form, error=str(exc))
        body["call_id"] = form.get("call_id") or None
        try:
            saved = await services(request).call(person, "POST", "followup",
                                                 f"/v1/customers/{quote(customer_id, safe='')}/calls", json=body)
        except ServiceError as exc:
            return await show(request, person, customer_id, status=422 if exc.status == 422 else 409, typed=form,
                              detail=exc.message,
                              error=N_("The call was not saved: the follow-up service refused it. Correct it and "
                                       "save again."))
        await audit(request, person, "record_call", customer_id=customer_id, subject=saved["call_id"],
                    outcomes={f["followup_id"]: f["outcome"] for f in saved["followups"]})
        return RedirectResponse("/desk?done=call", status_code=303)

    return r


async def open_concerns(request: Request, person: Person, customer_id: str) -> list[dict[str, Any]]:
    """The customer's feedback items not closed yet (for any call page: their conversation's);
    none when the follow-up service cannot say (the page still opens)."""
    try:
        history = await services(request).call(person, "GET", "followup",
                                                f"/v1/customers/{quote(customer_id, safe='')}/conversation")
    except ServiceError:
        return []
    items: list[dict[str, Any]] = history["open_feedback_items"]
    for item in items:
        item["opened_at"] = _moment(item["opened_at"])
    return items
