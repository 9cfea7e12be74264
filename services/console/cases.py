"""Complaint handlers' and departments' pages: the worklist (the nearest SLA deadline first, with
filters and saved views), and a case with its SLA clocks, escalation ladder, timeline, documents
and the actions its state allows. Everything is read from and done through the complaints
service's API under the person's name; a department user sees only the cases routed to their
department (the console holds that line: it asks the service for that department only and
refuses a case page of another)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from services.complaints.domain import TRANSITIONS
from services.console import store
from services.console.clients import Person, ServiceError
from services.console.i18n import DISPLAY_ZONE, N_
from services.console.pages import (
    COMPLAINT_CATEGORIES,
    SEVERITIES,
    Refused,
    _with,
    audit,
    form_of,
    render,
    role,
    services,
)
from shared.db import acquire
from shared.http import runtime_of

CASE_ROLES = ("agent", "supervisor", "department")
STATES = ("opened", "acknowledged", "assigned", "pending_customer", "resolved", "closed", "reopened")
DEPARTMENTS = ("customer_service", "quality_inspection", "after_sales_service", "parts_warehouse", "sales")
LEVELS = (0, 1, 2, 3)
WORKLIST_SIZE = 100
DEALER_VINS = 500  # a dealer filter asks for at most this many of the dealer's vehicles
# The files a handler may attach, by the browser's type or the name's ending; the complaints
# service checks the bytes against the type and keeps the checksum.
UPLOAD_TYPES = {"image/jpeg": "image/jpeg", "image/png": "image/png", "image/webp": "image/webp",
                "application/pdf": "application/pdf", "audio/mpeg": "audio/mpeg", "audio/mp3": "audio/mpeg",
                "audio/wav": "audio/wav", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav",
                "audio/mp4": "audio/mp4", "audio/x-m4a": "audio/mp4", "audio/ogg": "audio/ogg",
                "text/plain": "text/plain", "text/markdown": "text/markdown"}
ENDINGS = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
           ".pdf": "application/pdf", ".mp3": "audio/mpeg", ".wav": "audio/wav", ".m4a": "audio/mp4",
           ".ogg": "audio/ogg", ".txt": "text/plain", ".md": "text/markdown"}
DOCUMENT_KINDS = ("photo", "recording", "inspection_report", "handling_report", "correspondence",
                  "customer_statement", "other")
# The actions a handler may take (close and reopen are the supervisor's in the complaints service).
SUPERVISOR_ACTIONS = ("close", "reopen")
# What each action must say (the complaints service refuses the step without it).
REQUIRED = {"assign": "assignee", "pend": "reason", "resolve": "resolution", "reopen": "reason"}


@dataclass(frozen=True)
class Filters:
    state: str = ""
    level: str = ""
    category: str = ""
    severity: str = ""
    dealer: str = ""
    department: str = ""
    mine: bool = False
    filed_from: str = ""
    filed_to: str = ""
    q: str = ""

    @classmethod
    def of(cls, params: Any) -> Filters:
        def pick(name: str, allowed: tuple[Any, ...] | None = None) -> str:
            value = str(params.get(name) or "").strip()[:200]
            return value if allowed is None or value in tuple(str(a) for a in allowed) else ""

        return cls(state=pick("state", STATES), level=pick("level", LEVELS), category=pick("category",
                   COMPLAINT_CATEGORIES), severity=pick("severity", SEVERITIES), dealer=pick("dealer"),
                   department=pick("department", DEPARTMENTS), mine=params.get("mine") in ("1", "on", "true"),
                   filed_from=_day(pick("filed_from")), filed_to=_day(pick("filed_to")), q=pick("q"))

    @property
    def unfiltered(self) -> bool:
        """No filter chosen: the worklist shows the open cases."""
        return self == Filters()

    def query(self) -> str:
        """The filters as a query string (what a saved view keeps)."""
        pairs = [(k, v) for k, v in (("state", self.state), ("level", self.level), ("category", self.category),
                                      ("severity", self.severity), ("dealer", self.dealer),
                                      ("department", self.department), ("mine", "1" if self.mine else ""),
                                      ("filed_from", self.filed_from), ("filed_to", self.filed_to), ("q", self.q))
                 if v]
        return urlencode(pairs)


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat() if text else ""
    except ValueError:
        return ""


def _start_of(day: str) -> str:
    return datetime.combine(date.fromisoformat(day), time(0), DISPLAY_ZONE).isoformat()


def api_params(f: Filters, person: Person, vins: list[str] | None) -> dict[str, Any]:
    """The complaints API's list query for these filters; a department user's department always.
    Without any filter the worklist is the cases still being worked (the service reads no whole list)."""
    params: dict[str, Any] = {"sort": "deadline", "limit": WORKLIST_SIZE}
    if f.unfiltered:
        params["open"] = "true"
    for name in ("state", "level", "category", "severity", "q"):
        if getattr(f, name):
            params[name] = getattr(f, name)
    department = person.department if person.role == "department" else f.department
    if department:
        params["department"] = department
    if f.mine:
        params["assignee"] = person.username
    if f.filed_from:
        params["filed_from"] = _start_of(f.filed_from)
    if f.filed_to:
        params["filed_before"] = _start_of((date.fromisoformat(f.filed_to) + timedelta(days=1)).isoformat())
    if vins is not None:
        params["vin"] = vins
    return params


@dataclass(frozen=True)
class Clock:
    """An SLA deadline as the handler reads it: how long is left, or how long ago it passed."""

    due_at: datetime | None
    breached: bool
    by: timedelta | None


def clock(due_at: datetime | None, now: datetime) -> Clock:
    if due_at is None:
        return Clock(None, False, None)
    return Clock(due_at, due_at < now, abs(due_at - now))


def allowed_actions(state: str, person: Person) -> list[str]:
    """The actions the case's state allows that this person may take, in the ladder's order."""
    actions = [a for a in ("acknowledge", "assign", "pend", "resume", "resolve", "close", "reopen")
               if a in TRANSITIONS.get(state, {})]
    return [a for a in actions if a not in SUPERVISOR_ACTIONS or person.role == "supervisor"]


def upload_type(declared: str, filename: str) -> str | None:
    """The document's type from the browser's word for it, else from the name's ending."""
    found = UPLOAD_TYPES.get((declared or "").split(";")[0].strip().lower())
    if found:
        return found
    name = (filename or "").lower()
    return next((t for ending, t in ENDINGS.items() if name.endswith(ending)), None)


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    async def worklist(request: Request, person: Person, f: Filters) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        vins, cut = None, False
        if f.dealer:
            async with acquire(runtime.pool) as conn:
                vins = await store.dealer_vins(conn, f.dealer, DEALER_VINS + 1)
            cut, vins = len(vins) > DEALER_VINS, vins[:DEALER_VINS]
            if not vins:
                return {"items": [], "more": False, "problem": None, "cut": False, "open_only": False}
        try:
            answer = await services(request).call(person, "GET", "complaints", "/v1/complaints",
                                                  params=api_params(f, person, vins))
        except ServiceError as exc:
            return {"items": [], "more": False, "problem": exc.message, "cut": False, "open_only": False}
        now = runtime.clock.now()
        items = answer["items"]
        async with acquire(runtime.pool) as conn:
            customers = await store.customers_brief(conn, [i["customer_id"] for i in items if i.get("customer_id")])
            vehicles = await store.vehicles_dealers(conn, [i["vin"] for i in items if i.get("vin")])
        for item in items:
            item["customer"] = customers.get(item.get("customer_id") or "")
            item["vehicle"] = vehicles.get(item.get("vin") or "")
            item["filed_at"] = _moment(item["filed_at"])
            item["clock"] = clock(_moment(item.get("due_at")), now)
        return {"items": items, "more": answer["next_cursor"] is not None, "problem": None, "cut": cut,
                "open_only": f.unfiltered}

    @r.get("/cases")
    async def cases_page(request: Request, person: Person = Depends(role(*CASE_ROLES))) -> Response:
        f = Filters.of(request.query_params)
        found = await worklist(request, person, f)
        fmt = request.query_params.get("format")
        if fmt in ("csv", "xlsx"):
            from services.console.supervisor_pages import exported, translator

            gettext = translator(request, person)
            header = [gettext("Case"), gettext("Next deadline"), gettext("State"), gettext("Level"),
                      gettext("Category"), gettext("Severity"), gettext("Department"), gettext("Handler"),
                      gettext("Customer"), "VIN", gettext("Dealer")]
            rows = [[c["complaint_ref"], c["clock"].due_at.isoformat() if c["clock"].due_at else None, c["state"],
                     c["level"], c["category"], c["severity"], c["department"], c.get("assignee"),
                     c.get("customer_id"), c.get("vin"), (c.get("vehicle") or {}).get("dealer_id")]
                    for c in found["items"]]
            await audit(request, person, "read_report", subject="cases", format=fmt)
            return exported("aftersales-cases", fmt, header, rows)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            views = await store.saved_views(conn, person.username, "/cases")
        template = "_worklist.html" if request.headers.get("HX-Request") else "cases.html"
        return render(request, template, person, f=f, query=f.query(), views=views, states=STATES, levels=LEVELS,
                      categories=COMPLAINT_CATEGORIES, severities=SEVERITIES, departments=DEPARTMENTS,
                      done=request.query_params.get("done"), error=request.query_params.get("error"), **found)

    @r.post("/cases/views")
    async def save_view(request: Request, person: Person = Depends(role(*CASE_ROLES))) -> Response:
        form = await form_of(request, person)
        name = (form.get("name") or "").strip()[:60]
        query = Filters.of(_pairs(form.get("query") or "")).query()
        if not name:
            return _with(f"/cases?{query}", error=N_("Give the view a name."))
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            if form.get("delete"):
                await store.delete_view(conn, person.username, "/cases", name)
            else:
                await store.save_view(conn, person.username, "/cases", name, query, runtime.clock.now())
        return RedirectResponse(f"/cases?{query}", status_code=303)

    async def case_of(request: Request, person: Person, complaint_id: str) -> dict[str, Any]:
        """The case as the service shows it, with its ETag under "etag" (sent back as If-Match)."""
        try:
            case, etag = await services(request).read(person, "complaints", f"/v1/complaints/{quote(complaint_id)}")
        except ServiceError as exc:
            if exc.status == 404:
                raise Refused(N_("No complaint case with this id. The worklist shows the cases."), status=404) from None
            raise Refused(exc.message, status=502) from None
        if person.role == "department" and case["department"] != person.department:
            raise Refused(N_("This case is not routed to your department."), status=403)
        return {**case, "etag": etag}

    @r.get("/cases/{complaint_id}")
    async def case_page(request: Request, complaint_id: str, person: Person = Depends(role(*CASE_ROLES))
                        ) -> HTMLResponse:
        case = await case_of(request, person, complaint_id)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        now = runtime.clock.now()
        sla = case["sla"]
        for key in ("ack_due_at", "resolve_due_at", "next_due_at", "clock_started_at"):
            sla[key] = _moment(sla.get(key))
        for step in sla["escalation_schedule"]:
            step["due_at"] = _moment(step["due_at"])
            step["passed"] = step["due_at"] is not None and step["due_at"] <= now
        for e in case["escalations"]:
            e["deadline"], e["announced_at"] = _moment(e["deadline"]), _moment(e.get("announced_at"))
        for entry in case["timeline"]:
            entry["at"] = _moment(entry["at"])
        for d in case["documents"]:
            d["added_at"] = _moment(d["added_at"])
        async with acquire(runtime.pool) as conn:
            customer = (await store.customers_brief(conn, [case["customer_id"]])).get(case["customer_id"]) \
                if case.get("customer_id") else None
        await audit(request, person, "read_case", customer_id=case.get("customer_id"), subject=complaint_id)
        # A clock stops once its step is done (acknowledged; resolved or closed): then it shows no time left.
        current = sla["rounds"][-1] if sla["rounds"] else {}
        clocks = {"acknowledge": clock(None if current.get("acknowledged_at") else sla["ack_due_at"], now),
                  "resolve": clock(None if current.get("resolved_at") else sla["resolve_due_at"], now)}
        return render(request, "case.html", person, case=case, sla=sla, customer=customer, clocks=clocks,
                      actions=allowed_actions(case["state"], person), kinds=DOCUMENT_KINDS,
                      done=request.query_params.get("done"), error=request.query_params.get("error"))

    @r.post("/cases/{complaint_id}/actions/{action}")
    async def act(request: Request, complaint_id: str, action: str,
                  person: Person = Depends(role(*CASE_ROLES))) -> Response:
        form = await form_of(request, person)
        here = f"/cases/{quote(complaint_id)}"
        case = await case_of(request, person, complaint_id)
        if action not in allowed_actions(case["state"], person):
            return _with(here, error=N_("This step is not open to you in the case's state; reload the page."))
        body: dict[str, Any] = {}
        field = REQUIRED.get(action)
        if field:
            value = (form.get(field) or "").strip()
            if not value:
                return _with(here, error=N_("Say why: this step needs its reason (or the resolution, or the handler)."))
            body[field] = value[:4000]
        if form.get("note", "").strip():
            body["note"] = form["note"].strip()[:4000]
        if action == "close" and form.get("satisfied") in ("yes", "no"):
            body["satisfied"] = form["satisfied"] == "yes"
        # The case as the handler saw it: if someone changed it since the page was shown, the service
        # refuses (412) and the handler looks again instead of acting on what is no longer there.
        seen = (form.get("etag") or "").strip()[:100]
        try:
            await services(request).call(person, "POST", "complaints",
                                         f"/v1/complaints/{quote(complaint_id)}/{action}", json=body or None,
                                         headers={"If-Match": seen} if seen else None)
        except ServiceError as exc:
            if exc.status == 412:
                return _with(here, error=N_("Someone changed this case after you opened it. Check what changed "
                                            "below and take the step again."))
            return _with(here, error=exc.message)
        await audit(request, person, f"case_{action}", customer_id=case.get("customer_id"), subject=complaint_id,
                    **({field: body[field]} if field else {}))
        return _with(here, done=action)

    @r.post("/cases/{complaint_id}/documents")
    async def upload(request: Request, complaint_id: str, person: Person = Depends(role(*CASE_ROLES))) -> Response:
        here = f"/cases/{quote(complaint_id)}"
        raw = await request.form(max_part_size=4 * 1024 * 1024)
        given = raw.get("csrf_token")
        await form_of_values(person, {k: v for k, v in raw.items() if isinstance(v, str)}, given)
        case = await case_of(request, person, complaint_id)
        title = str(raw.get("title") or "").strip()[:200]
        kind = str(raw.get("kind") or "other")
        upload = raw.get("file")
        text = str(raw.get("text") or "").strip()
        if kind not in DOCUMENT_KINDS:
            kind = "other"
        body: dict[str, Any] = {"kind": kind}
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read()
            content_type = upload_type(upload.content_type or "", upload.filename)
            if content_type is None:
                return _with(here, error=N_("This kind of file cannot be attached: use a photo (JPEG, PNG, WebP), a "
                                            "PDF, a recording (MP3, WAV, M4A, OGG) or text."))
            if not data:
                return _with(here, error=N_("The file is empty."))
            body |= {"title": title or upload.filename[:200], "filename": upload.filename[:200],
                     "content_type": content_type}
            if content_type.startswith("text/"):
                try:
                    body["content"] = data.decode("utf-8")
                except UnicodeDecodeError:
                    return _with(here, error=N_("A text file must be UTF-8."))
            else:
                body["content_base64"] = base64.b64encode(data).decode()
        elif text:
            body |= {"title": title or text[:40], "content_type": "text/plain", "content": text}
        else:
            return _with(here, error=N_("Choose a file or write the text to attach."))
        try:
            document = await services(request).call(person, "POST", "complaints",
                                                     f"/v1/complaints/{quote(complaint_id)}/documents", json=body)
        except ServiceError as exc:
            return _with(here, error=exc.message)
        await audit(request, person, "case_document", customer_id=case.get("customer_id"), subject=complaint_id,
                    document_id=document["document_id"], content_type=document["content_type"],
                    size_bytes=document["size_bytes"], sha256=document["sha256"])
        return _with(here, done="document")

    @r.get("/cases/{complaint_id}/documents/{document_id}")
    async def download(request: Request, complaint_id: str, document_id: str,
                       person: Person = Depends(role(*CASE_ROLES))) -> Response:
        await case_of(request, person, complaint_id)
        try:
            answer = await services(request).fetch(
                person, "complaints", f"/v1/complaints/{quote(complaint_id)}/documents/{quote(document_id)}/content")
        except ServiceError as exc:
            raise Refused(exc.message, status=404 if exc.status == 404 else 502) from None
        media = answer.headers.get("content-type", "application/octet-stream")
        inline = media.startswith(("image/", "audio/", "text/")) or media == "application/pdf"
        return Response(answer.content, media_type=media, headers={
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; sandbox",
            "X-Content-SHA256": answer.headers.get("x-content-sha256", ""),
            "Content-Disposition": "inline" if inline else "attachment"})

    return r


async def form_of_values(person: Person, values: dict[str, str], given: Any) -> None:
    """The CSRF check of a multipart form (read already, with its file)."""
    from services.console import accounts

    if not accounts.csrf_matches(person.csrf_token, given if isinstance(given, str) else None):
        raise Refused(N_("This form was refused: its security token is missing or out of date. Reload the page and "
                         "try again."))


def _pairs(query: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query))
