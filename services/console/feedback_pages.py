"""The listening loop's pages for agents and supervisors: the feedback items (a low score or a
request heard on a return visit, tracked until the customer has the answer: follow-up's
`/v1/feedback-items`), an item with its history and the form that records the solution; and the
consultation form for a caller with no customer file (intake's `POST /v1/consultations`: the file
opens and the first tracking call is scheduled). Everything goes through the services' APIs
under the person's name; a form the service refuses comes back with what was typed and the
reason in the reader's language."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console import store
from services.console.cases import _moment
from services.console.clients import Person, ServiceError
from services.console.i18n import N_
from services.console.pages import DESK, Refused, _with, audit, form_of, render, role, services
from shared.db import acquire
from shared.http import runtime_of

STATES = ("open", "escalated", "answered", "closed")
WAITING = ("open", "escalated")  # the items that wait for a solution
TELL_BY = ("sms", "call")
CHANNELS = ("hotline", "showroom", "web")
LIST_SIZE = 200  # the follow-up API's largest page
CONSULTATION_FIELDS = ("name", "phone", "vin", "model", "dealer_id", "region", "topic", "notes", "channel")
# The reader's words for a field the intake service refused (its own reason is shown beside it).
FIELD_PROBLEMS = {
    "phone": N_("This is not a phone number that can be called: write a mobile number such as 13812345678, or "
                "the number with its country code such as +8613812345678."),
    "vin": N_("A VIN has 17 letters and digits (never I, O or Q)."),
    "dealer_id": N_("A dealer code has no spaces and at most 64 characters."),
    "name": N_("Write the caller's name (at most 200 characters)."),
    "region": N_("Write the region in at most 200 characters."),
    "topic": N_("Say what the caller asked about (at most 200 characters)."),
    "summary": N_("The notes are too long: at most 4,000 characters."),
    "channel": N_("Choose how the caller reached us."),
}
SUMMARY_FIELDS = {"summary": "notes"}  # the API's field -> the form's
MODEL_MAX = 100


# -- feedback items ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    state: str = ""
    mine: bool = False
    overdue: bool = False

    @classmethod
    def of(cls, params: Any) -> Filters:
        state = str(params.get("state") or "")
        return cls(state=state if state in STATES else "", mine=params.get("mine") in ("1", "on", "true"),
                   overdue=params.get("overdue") in ("1", "on", "true"))


@dataclass(frozen=True)
class Deadline:
    """When the item must be answered (2 working days after the call), as the agent reads it."""

    due_at: datetime | None
    overdue: bool
    by: timedelta | None


def deadline(item: dict[str, Any], now: datetime) -> Deadline:
    """An open item's deadline, time left or overdue; an escalated one is overdue since it went to
    the supervisor (its deadline); an answered or closed one has none."""
    if item["state"] == "open" and item.get("due_at"):
        due = _moment(item["due_at"])
        return Deadline(due, due < now, abs(due - now))
    if item["state"] == "escalated":
        since = _moment(item.get("escalated_at")) or now
        return Deadline(since, True, now - since)
    return Deadline(None, False, None)


def shown(items: list[dict[str, Any]], f: Filters, now: datetime) -> list[dict[str, Any]]:
    """The items the filters keep, those waiting for a solution first, the most urgent first."""
    for item in items:
        item["deadline"] = deadline(item, now)
    kept = [i for i in items if not f.overdue or i["deadline"].overdue]
    far = datetime.max.replace(tzinfo=now.tzinfo)

    def urgency(i: dict[str, Any]) -> tuple[bool, datetime, str]:
        return i["state"] not in WAITING, i["deadline"].due_at or far, i["item_id"]

    return sorted(kept, key=urgency)


def solution_body(form: dict[str, str]) -> dict[str, Any]:
    """The follow-up API's solution from the form; ValueError says what to fix."""
    solution = (form.get("solution") or "").strip()
    if not solution:
        raise ValueError(N_("Write the solution the customer is told."))
    if len(solution) > 4000:
        raise ValueError(N_("The solution is too long: at most 4,000 characters."))
    body: dict[str, Any] = {"solution": solution}
    if form.get("tell_by") in TELL_BY:
        body["tell_by"] = form["tell_by"]
    return body


def refusal(exc: ServiceError) -> str:
    """The reader's words for a refused solution (the service's reason is shown beside it)."""
    return {403: N_("Only the item's owner or a supervisor records its solution."),
            404: N_("No feedback item with this id."),
            409: N_("This item has an answer already or is closed: reload the page to see it."),
            422: N_("The solution was refused: check what you wrote.")}.get(
        exc.status, N_("The follow-up service did not take the solution; try again in a moment."))


# -- consultations ------------------------------------------------------------------------------------


def consultation_body(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Intake's consultation from the form, and the form's own problems by field (required
    fields; the formats are the service's to check). The vehicle model, which intake's
    consultation has no field for, leads the notes."""
    values = {k: (form.get(k) or "").strip() for k in CONSULTATION_FIELDS}
    problems: dict[str, str] = {}
    if not values["name"]:
        problems["name"] = N_("Write the caller's name.")
    if not values["phone"]:
        problems["phone"] = N_("Write the caller's phone number: it opens their file.")
    if not values["topic"]:
        problems["topic"] = N_("Say what the caller asked about.")
    if len(values["model"]) > MODEL_MAX:
        problems["model"] = N_("Write the model in at most 100 characters.")
    body: dict[str, Any] = {"name": values["name"], "phone": values["phone"], "topic": values["topic"],
                            "channel": values["channel"] if values["channel"] in CHANNELS else "hotline"}
    for field in ("vin", "dealer_id", "region"):
        if values[field]:
            body[field] = values[field]
    notes = "\n".join(filter(None, [f"[{values['model']}]" if values["model"] else "", values["notes"]]))
    if notes:
        body["summary"] = notes
    return body, problems


def field_problems(exc: ServiceError) -> dict[str, str]:
    """The form's fields the service refused, with the reader's words for each."""
    found: dict[str, str] = {}
    for field in exc.fields:
        name = SUMMARY_FIELDS.get(field, field)
        if field in FIELD_PROBLEMS:
            found[name] = FIELD_PROBLEMS[field]
    return found


def national_digits(phone: str) -> str:
    """What to search the file by: the number's digits without China's country code."""
    digits = re.sub(r"\D", "", phone)
    return digits[2:] if phone.strip().startswith("+86") and len(digits) == 13 else digits


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    async def customers(request: Request, ids: list[str]) -> dict[str, dict[str, Any]]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            return await store.customers_brief(conn, ids)

    @r.get("/feedback")
    async def feedback_page(request: Request, person: Person = Depends(role(*DESK))) -> HTMLResponse:
        f = Filters.of(request.query_params)
        params: dict[str, Any] = {"limit": LIST_SIZE}
        if person.role == "agent" or f.mine:
            params["owner"] = person.username  # an agent's are always their own (the service holds that line)
        states = [f.state] if f.state else ([*WAITING] if f.overdue else [None])
        items: list[dict[str, Any]] = []
        problem, cut = None, False
        try:
            for state in states:
                answer = await services(request).call(person, "GET", "followup", "/v1/feedback-items",
                                                      params=params | ({"state": state} if state else {}))
                items += answer["items"]
                cut = cut or len(answer["items"]) >= LIST_SIZE
        except ServiceError as exc:
            problem = exc.message
        now = runtime_of(request).clock.now()
        items = shown(items, f, now)
        names = await customers(request, [i["customer_id"] for i in items])
        for item in items:
            item["customer"] = names.get(item["customer_id"])
            item["opened_at"] = _moment(item["opened_at"])
            item["answered_at"] = _moment(item.get("answered_at"))
        return render(request, "feedback.html", person, f=f, items=items, problem=problem, states=STATES,
                      cut=cut)

    async def item_of(request: Request, person: Person, item_id: str) -> dict[str, Any]:
        try:
            item: dict[str, Any] = await services(request).call(person, "GET", "followup",
                                                                f"/v1/feedback-items/{quote(item_id)}")
        except ServiceError as exc:
            if exc.status == 404:
                raise Refused(N_("No feedback item with this id. The feedback items page lists yours."),
                              status=404) from None
            if exc.status == 403:
                raise Refused(N_("This feedback item belongs to another agent: its owner or a supervisor answers "
                                 "it."), status=403) from None
            raise Refused(exc.message, status=502) from None
        return item

    async def item_page(request: Request, person: Person, item_id: str, *, status: int = 200,
                        error: str | None = None, detail: str | None = None,
                        values: dict[str, str] | None = None) -> HTMLResponse:
        item = await item_of(request, person, item_id)
        now = runtime_of(request).clock.now()
        item["deadline"] = deadline(item, now)
        for key in ("opened_at", "answered_at", "escalated_at", "closed_at"):
            item[key] = _moment(item.get(key))
        for entry in item["history"]:
            entry["at"] = _moment(entry["at"])
        call = None
        try:  # the call the item comes from: what the customer said on it
            followup = await services(request).call(person, "GET", "followup",
                                                    f"/v1/followups/{quote(item['followup_id'])}")
            call = next((a for a in followup["attempts"] if a.get("attempt_no") == item["attempt_no"]), None)
            if call is not None:
                call["attempted_at"] = _moment(call.get("attempted_at"))
        except ServiceError:
            call = None  # the item's own words are enough to answer it
        customer = (await customers(request, [item["customer_id"]])).get(item["customer_id"])
        await audit(request, person, "read_feedback_item", customer_id=item["customer_id"], subject=item_id)
        return render(request, "feedback_item.html", person, status=status, item=item, call=call, customer=customer,
                      done=request.query_params.get("done"), error=error, detail=detail, values=values or {},
                      tell_by=TELL_BY)

    @r.get("/feedback/{item_id}")
    async def feedback_item(request: Request, item_id: str, person: Person = Depends(role(*DESK))) -> HTMLResponse:
        return await item_page(request, person, item_id)

    @r.post("/feedback/{item_id}/solution")
    async def record_solution(request: Request, item_id: str, person: Person = Depends(role(*DESK))) -> Response:
        form = await form_of(request, person)
        kept = {k: form.get(k, "") for k in ("solution", "tell_by")}
        try:
            body = solution_body(form)
        except ValueError as exc:
            return await item_page(request, person, item_id, status=422, error=str(exc), values=kept)
        try:
            answered = await services(request).call(person, "POST", "followup",
                                                    f"/v1/feedback-items/{quote(item_id)}/solution", json=body)
        except ServiceError as exc:
            return await item_page(request, person, item_id, status=exc.status if exc.status < 500 else 502,
                                   error=refusal(exc), detail=exc.message, values=kept)
        await audit(request, person, "feedback_solution", customer_id=answered["customer_id"], subject=item_id,
                    told_by=answered.get("told_by"), in_time=answered.get("answered_in_time"))
        return _with(f"/feedback/{quote(item_id)}", done="answered")

    @r.get("/feedback/{item_id}/solution")
    async def solution_page(item_id: str) -> RedirectResponse:
        """Where a refused solution's page (rendered on its POST) goes back to, e.g. after switching language."""
        return RedirectResponse(f"/feedback/{quote(item_id)}", status_code=303)

    # -- a consultation from a caller with no file ----------------------------------------------------
    def consultation_form(request: Request, person: Person, *, status: int = 200,
                          values: dict[str, str] | None = None, problems: dict[str, str] | None = None,
                          error: str | None = None, detail: str | None = None,
                          recorded: dict[str, Any] | None = None) -> HTMLResponse:
        return render(request, "consultation.html", person, status=status, values=values or {},
                      problems=problems or {}, error=error, detail=detail, recorded=recorded, channels=CHANNELS,
                      key=(values or {}).get("idempotency_key") or str(uuid.uuid4()))

    @r.get("/consultations/new")
    async def new_consultation(request: Request, person: Person = Depends(role(*DESK))) -> HTMLResponse:
        return consultation_form(request, person)

    @r.post("/consultations")
    async def record_consultation(request: Request, person: Person = Depends(role(*DESK))) -> Response:
        form = await form_of(request, person)
        values = {k: form.get(k, "") for k in (*CONSULTATION_FIELDS, "idempotency_key")}
        body, problems = consultation_body(form)
        if problems:
            return consultation_form(request, person, status=422, values=values, problems=problems,
                                     error=N_("The consultation was not recorded: see the marked fields."))
        # The form's key: posting it again (a reload, a double click) records the consultation once.
        key = (form.get("idempotency_key") or "")[:200] or str(uuid.uuid4())
        try:
            recorded = await services(request).call(person, "POST", "intake", "/v1/consultations", json=body,
                                                    ok=(202,), headers={"Idempotency-Key": key})
        except ServiceError as exc:
            problems = field_problems(exc)
            error = N_("The consultation was not recorded: see the marked fields.") if problems else \
                N_("The intake service did not take the consultation; nothing was lost, try again in a moment.")
            return consultation_form(request, person, status=422 if exc.status == 422 else 502, values=values,
                                     problems=problems, error=error, detail=exc.message)
        await audit(request, person, "record_consultation", subject=recorded["consultation_id"],
                    topic=body["topic"][:200])
        return consultation_form(request, person, recorded=recorded | {
            "name": body["name"], "search": national_digits(body["phone"]), "topic": body["topic"]})

    @r.get("/consultations")
    async def consultations_home(request: Request, person: Person = Depends(role(*DESK))) -> RedirectResponse:
        return RedirectResponse("/consultations/new", status_code=303)

    return r
