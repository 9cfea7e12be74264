"""Rectification measures (work plan: "rectification measures by category … checking that they
are carried out"): the list by status with each measure's measured effect, the form that
records one (answering a complaint category or a quality alert), and the check that verifies
it. Read from and written to the complaints service's API under the person's name."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from services.console.clients import Person, ServiceError
from services.console.i18n import DISPLAY_ZONE, N_
from services.console.pages import COMPLAINT_CATEGORIES, audit, form_of, render, role, services
from shared.http import runtime_of

READERS = ("agent", "supervisor", "quality", "department")
RECORDERS = ("supervisor", "quality", "department")
VERIFIERS = ("supervisor", "quality")
STATUSES = ("open", "due", "overdue", "verified")
FORM_FIELDS = ("target_kind", "category", "alert_id", "title", "action", "owner", "due_date")
# The hour of the due date the reminder goes out: the start of the owner's working day.
DUE_HOUR = time(9, 0)


def measure_body(form: dict[str, str], today: date) -> tuple[dict[str, Any], dict[str, str]]:
    """The complaints API's body from the form, and the fields to fix (the reader's words)."""
    problems: dict[str, str] = {}
    kind = form.get("target_kind", "")
    body: dict[str, Any] = {"target_kind": kind}
    if kind == "category":
        if form.get("category") not in COMPLAINT_CATEGORIES:
            problems["category"] = N_("Choose the complaint category the measure answers.")
        body["category"] = form.get("category")
    elif kind == "alert":
        if not form.get("alert_id", "").strip():
            problems["alert_id"] = N_("Give the quality alert's id (on the quality alerts page).")
        body["alert_id"] = form.get("alert_id", "").strip()
    else:
        problems["target_kind"] = N_("Choose whether the measure answers a complaint category or a quality alert.")
    for name, says in (("title", N_("Give the measure a short title.")),
                       ("action", N_("Say what will be done.")),
                       ("owner", N_("Name who carries it out (their id, e.g. as-supervisor-01)."))):
        value = form.get(name, "").strip()
        if not value:
            problems[name] = says
        body[name] = value
    try:
        due = date.fromisoformat(form.get("due_date", ""))
    except ValueError:
        problems["due_date"] = N_("Give the due date as a day, e.g. 2026-12-15.")
    else:
        if due <= today:
            problems["due_date"] = N_("The due date must be after today.")
        body["due_at"] = datetime.combine(due, DUE_HOUR, DISPLAY_ZONE).isoformat()
    return body, problems


def _moment(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def entries(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's measures with their moments read."""
    out = []
    for m in items:
        effect = m["effect"]
        out.append({**m, **{k: _moment(m.get(k)) for k in ("due_at", "recorded_at", "reminded_at")},
                    "verification": None if not m.get("verification") else {
                        **m["verification"], "verified_at": _moment(m["verification"]["verified_at"])},
                    "effect": {**effect, "before": {**effect["before"], "starts_at": _moment(effect["before"]["starts_at"]),
                                                    "ends_at": _moment(effect["before"]["ends_at"])},
                               "after": {**effect["after"], "starts_at": _moment(effect["after"]["starts_at"]),
                                         "ends_at": _moment(effect["after"]["ends_at"])}}})
    return out


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    async def page(request: Request, person: Person, *, status_filter: str = "", status: int = 200,
                   values: dict[str, str] | None = None, problems: dict[str, str] | None = None,
                   error: str | None = None, detail: str | None = None, done: str = "") -> Response:
        params = {"status": status_filter} if status_filter in STATUSES else {}
        try:
            found, _ = await services(request).every(person, "complaints", "/v1/measures", params)
            report = await services(request).call(person, "GET", "complaints", "/v1/reports/measures")
            items, counts, problem = entries(found), report["counts"], None
        except ServiceError as exc:
            items, counts, problem = [], {}, exc.message
        await audit(request, person, "read_report", subject="measures", status=status_filter or None)
        return render(request, "measures.html", person, status=status, items=items, counts=counts,
                      problem=problem, status_filter=status_filter, statuses=STATUSES,
                      categories=COMPLAINT_CATEGORIES, values=values or {"target_kind": "category"},
                      problems=problems or {}, error=error, detail=detail, done=done,
                      can_record=person.role in RECORDERS, can_verify=person.role in VERIFIERS,
                      key=(values or {}).get("idempotency_key") or str(uuid.uuid4()))

    @r.get("/measures")
    async def measures_page(request: Request, status: str = "", done: str = "",
                            person: Person = Depends(role(*READERS))) -> Response:
        return await page(request, person, status_filter=status, done=done)

    @r.post("/measures")
    async def record_measure(request: Request, person: Person = Depends(role(*RECORDERS))) -> Response:
        form = await form_of(request, person)
        values = {k: form.get(k, "") for k in (*FORM_FIELDS, "idempotency_key")}
        today = runtime_of(request).clock.now().astimezone(DISPLAY_ZONE).date()
        body, problems = measure_body(form, today)
        if problems:
            return await page(request, person, status=422, values=values, problems=problems,
                              error=N_("The measure was not recorded: see the marked fields."))
        key = (form.get("idempotency_key") or "")[:200] or str(uuid.uuid4())
        try:
            recorded = await services(request).call(person, "POST", "complaints", "/v1/measures", json=body,
                                                    headers={"Idempotency-Key": key})
        except ServiceError as exc:
            return await page(request, person, status=422 if exc.status == 422 else 502, values=values,
                              error=N_("The measure was not recorded.") if exc.status == 422 else
                              N_("The complaints service did not take the measure; nothing was lost, try again in a "
                                 "moment."), detail=exc.message)
        await audit(request, person, "record_measure", subject=recorded["measure_id"], title=body["title"][:200])
        return RedirectResponse("/measures?done=recorded", status_code=303)

    @r.post("/measures/{measure_id}/verify")
    async def verify_measure(request: Request, measure_id: str,
                             person: Person = Depends(role(*VERIFIERS))) -> Response:
        form = await form_of(request, person)
        verdict, note = form.get("verdict", ""), form.get("note", "").strip()
        if verdict not in ("effective", "not_effective") or not note:
            return await page(request, person, status=422, error=N_(
                "The measure was not verified: choose effective or not effective and say what you checked."))
        try:
            await services(request).call(person, "POST", "complaints", f"/v1/measures/{quote(measure_id)}/verify",
                                         json={"verdict": verdict, "note": note})
        except ServiceError as exc:
            return await page(request, person, status=exc.status if exc.status < 500 else 502,
                              error=N_("The measure was not verified."), detail=exc.message)
        await audit(request, person, "verify_measure", subject=measure_id, verdict=verdict)
        return RedirectResponse("/measures?done=verified", status_code=303)

    return r
