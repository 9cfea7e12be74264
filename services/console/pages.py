"""The console's pages: sign-in, the agents' desk, search, the customer's and the vehicle's
whole story, the audit log for supervisors. Server-rendered (Jinja2), htmx for the parts that
update in place; every form carries the session's CSRF token."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console import accounts, desk, store
from services.console.clients import Person, ServiceError, Services
from services.console.config import ConsoleRules
from services.console.i18n import N_
from services.console.search import parse
from shared.api import problem_response
from shared.db import acquire
from shared.http import runtime_of
from shared.ratelimit import FailureLimiter, client_address
from shared.runtime import ServiceRuntime

SESSION_COOKIE = "aftersales_session"
PRESESSION_COOKIE = "aftersales_signin"
LOCALE_COOKIE = "aftersales_locale"
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {
    "console.css": ("console.css", "text/css"),
    "console.js": ("console.js", "text/javascript"),
    "htmx.min.js": ("vendor/htmx.min.js", "text/javascript"),
}
SECURITY_HEADERS = {
    # Nothing from another host, no inline script: a page can only run the console's own files.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
COMPLAINT_CATEGORIES = ("product_quality", "service_attitude", "repair_quality", "parts_supply", "delay", "price",
                        "other")
SEVERITIES = ("low", "medium", "high", "critical")
INBOUND_KINDS = ("consultation", "request", "complaint", "other")
# why a lost customer no longer comes (the follow-up service's fixed list, docs/followup.md)
LOST_REASONS = ("moved_away", "switched_dealer", "sold_the_car", "price", "service_quality", "other")
CALL_FIELDS = ("outcome", "satisfaction", "satisfied", "talking_points", "requests", "answered_on_call",
               "feedback_serious", "notes", "call_back_at", "complaint_description", "complaint_category",
               "complaint_severity", "lost_reason", "lost_reason_note")


_static_cache: dict[str, bytes] = {}


class Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


class Refused(Exception):
    """A page or form the person may not use: shown as a page that says why (403)."""

    def __init__(self, message_id: str, status: int = 403, **params: str) -> None:
        self.message_id = message_id
        self.status = status
        self.params = params


def rules(request: Request) -> ConsoleRules:
    rules: ConsoleRules = runtime_of(request).deps.rules
    return rules


def services(request: Request) -> Services:
    services: Services = runtime_of(request).deps.services
    return services


def wall_now() -> datetime:
    """Sessions and lock-outs are security windows on wall time, not business time."""
    return datetime.now(UTC)


def _loopback(request: Request) -> bool:
    host = (request.url.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_cookies(request: Request) -> bool:
    setting = rules(request).secure_cookies
    return setting == "always" or (setting == "auto" and not _loopback(request))


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=secure_cookies(request),
                        path="/")


# -- who is signed in -------------------------------------------------------------------------------


async def current_person(request: Request) -> Person:
    token = request.cookies.get(SESSION_COOKIE)
    runtime = runtime_of(request)
    found = None
    if token:
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            found = await store.session(conn, accounts.session_hash(token), wall_now())
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise Redirect(f"/sign-in?next={quote(target)}")
    return Person(found["username"], found["display_name"], found["role"], found["locale"], found["csrf_token"],
                  found.get("department"), tuple(found.get("regions") or ()), tuple(found.get("dealers") or ()))


async def refuse_outside_scope(request: Request, person: Person, conn: Any, customer_id: str) -> None:
    """A scoped agent asking for a customer outside their regions and dealers: 403, and the
    attempt in the audit log (the services apply the same rule to the person's token)."""
    if person.scoped and not await store.in_scope(conn, customer_id, person.regions, person.dealers):
        await audit(request, person, "refused_outside_scope", customer_id=customer_id)
        raise Refused(N_("This customer is outside your regions and dealers. Ask a colleague there or a "
                         "supervisor."), status=403)


def role(*roles: str) -> Callable[[Request], Awaitable[Person]]:
    """A page for these roles only; anyone else signed in gets a page that says so (403)."""

    async def dependency(request: Request) -> Person:
        person = await current_person(request)
        if person.role not in roles:
            raise Refused(N_("This page is for: %(roles)s. You are signed in as %(role)s."), roles=", ".join(roles),
                          role=person.role)
        return person

    return dependency


# Search and the customers' whole story. Not department users: they see the cases routed to them
# (with the customer's id), not every customer's file.
STAFF = ("agent", "supervisor", "quality")
DESK = ("agent", "supervisor")
HOMES = {"department": "/cases", "quality": "/quality/alerts"}  # where each role starts


async def form_of(request: Request, person: Person) -> dict[str, str]:
    """The posted form, after its CSRF token is checked against the session's."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    given = values.get("csrf_token") or request.headers.get("X-CSRF-Token")
    if not accounts.csrf_matches(person.csrf_token, given):
        raise Refused(N_("This form was refused: its security token is missing or out of date. Reload the page and "
                      "try again."))
    return values


# -- rendering --------------------------------------------------------------------------------------


def locale_of(request: Request, person: Person | None) -> str:
    chosen = person.locale if person else request.cookies.get(LOCALE_COOKIE)
    envs = runtime_of(request).deps.templates
    return chosen if chosen in envs else rules(request).default_locale


def render(request: Request, template: str, person: Person | None, status: int = 200, **context: Any) -> HTMLResponse:
    runtime = runtime_of(request)
    locale = locale_of(request, person)
    env = runtime.deps.templates[locale]
    html = env.get_template(template).render(
        request=request, person=person, csrf_token=person.csrf_token if person else context.pop("signin_token", ""),
        now=runtime.clock.now(), path=request.url.path, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


async def audit(request: Request, person: Person, action: str, *, customer_id: str | None = None,
                subject: str | None = None, **detail: Any) -> None:
    runtime = runtime_of(request)
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        await store.audit(conn, at=runtime.clock.now(), username=person.username, role=person.role, action=action,
                          customer_id=customer_id, subject=subject, detail=detail)


def _signin_failures(request: Request) -> FailureLimiter:
    """Failed sign-ins per client address (this process's count; on the console's clock)."""
    limiter: FailureLimiter | None = getattr(request.app.state, "signin_failures", None)
    if limiter is None:
        r = rules(request)
        limiter = request.app.state.signin_failures = FailureLimiter(
            r.signin_failures_per_client, timedelta(minutes=r.signin_failure_window_minutes))
    return limiter


def _too_many_sign_ins(request: Request, wait: int, token: str, next_page: str) -> HTMLResponse:
    response = render(request, "sign_in.html", None, status=429, signin_token=token, next=next_page,
                      error="too_many", minutes=str(max(1, -(-wait // 60))))
    response.headers["Retry-After"] = str(wait)
    return response


def _safe_next(target: str | None) -> str:
    """Only a path on this console (never another host) after signing in."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return target if not parts.netloc and not parts.scheme else "/"


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    # -- static ---------------------------------------------------------------------------------
    @r.get("/static/{name}")
    async def static(name: str) -> Response:
        found = STATIC_FILES.get(name)
        if found is None:
            return Response(status_code=404)
        # Small files, read once and sent whole (no streaming through the app's middlewares).
        body = _static_cache.get(name)
        if body is None:
            body = _static_cache[name] = (STATIC / found[0]).read_bytes()
        return Response(body, media_type=found[1], headers={"Cache-Control": "max-age=3600",
                                                            "X-Content-Type-Options": "nosniff"})

    @r.get("/")
    async def home(request: Request) -> RedirectResponse:
        person = await current_person(request)
        return RedirectResponse(HOMES.get(person.role, "/desk"), status_code=303)

    # -- sign-in --------------------------------------------------------------------------------
    @r.get("/sign-in")
    async def sign_in_page(request: Request, next: str | None = None, error: str | None = None) -> HTMLResponse:
        token = request.cookies.get(PRESESSION_COOKIE) or accounts.new_csrf_token()
        response = render(request, "sign_in.html", None, signin_token=token, next=_safe_next(next), error=error)
        set_cookie(request, response, PRESESSION_COOKIE, token, max_age=3600)
        return response

    @r.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        expected = request.cookies.get(PRESESSION_COOKIE)
        if not expected or not accounts.csrf_matches(expected, values.get("csrf_token")):
            raise Refused(N_("This form was refused: its security token is missing or out of date. Reload the page and "
                             "try again."))
        username, password = values.get("username", "").strip(), values.get("password", "")
        next_page = _safe_next(values.get("next"))
        runtime = runtime_of(request)
        assert runtime.pool is not None
        limiter = _signin_failures(request)
        client = client_address(request.scope.get("client"), request.headers.get("x-forwarded-for"),
                                runtime.settings.trust_forwarded_for)
        wait = limiter.retry_after(client, runtime.clock.now())
        if wait is not None:
            return _too_many_sign_ins(request, wait, expected, next_page)
        now = wall_now()
        async with acquire(runtime.pool) as conn, conn.transaction():
            account = await store.account(conn, username, lock=True)
            matched = accounts.password_matches(account.password_hash if account else None, password)
            if account is None:
                outcome = None
            else:
                outcome = accounts.after_attempt(matched, account.failed_attempts, account.locked_until, now,
                                                 rules(request))
                if outcome.ok:
                    await store.record_sign_in(conn, username, now)
                else:
                    await store.record_failure(conn, username, outcome.failed_attempts, outcome.locked_until)
                action = "sign_in" if outcome.ok else ("sign_in_locked" if outcome.locked else "sign_in_failed")
                await store.audit(conn, at=runtime.clock.now(), username=username, role=account.role, action=action,
                                  detail={"failed_attempts": outcome.failed_attempts})
        if outcome is None or not outcome.ok:
            wait = limiter.failed(client, runtime.clock.now())
            if wait is not None:
                return _too_many_sign_ins(request, wait, expected, next_page)
            error = "locked" if outcome is not None and outcome.locked else "wrong"
            return RedirectResponse(f"/sign-in?error={error}&next={quote(next_page)}", status_code=303)
        assert account is not None
        token = accounts.new_session_token()
        async with acquire(runtime.pool) as conn:
            await store.open_session(conn, accounts.session_hash(token), username, accounts.new_csrf_token(), now,
                                     now + timedelta(hours=rules(request).session_hours))
        response = RedirectResponse(next_page, status_code=303)
        set_cookie(request, response, SESSION_COOKIE, token, max_age=int(rules(request).session_hours * 3600))
        response.delete_cookie(PRESESSION_COOKIE, path="/")
        return response

    @r.post("/sign-out")
    async def sign_out(request: Request, person: Person = Depends(current_person)) -> Response:
        await form_of(request, person)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await store.close_session(conn, accounts.session_hash(request.cookies[SESSION_COOKIE]))
        await audit(request, person, "sign_out")
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @r.post("/language")
    async def language(request: Request) -> Response:
        """Switch between 中文 and English (kept on the account, or in a cookie before sign-in)."""
        form = await request.form()
        chosen = str(form.get("locale") or "")
        back = _safe_next(str(form.get("back") or "/desk"))
        response = RedirectResponse(back, status_code=303)
        if chosen not in runtime_of(request).deps.templates:
            return response
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            person = await current_person(request)
            await form_of(request, person)
            runtime = runtime_of(request)
            assert runtime.pool is not None
            async with acquire(runtime.pool) as conn:
                await store.set_locale(conn, person.username, chosen)
        set_cookie(request, response, LOCALE_COOKIE, chosen, max_age=365 * 86400)
        return response

    from services.console import conversation_pages  # one call per customer conversation

    # -- the desk -------------------------------------------------------------------------------
    async def queue_view(request: Request, person: Person) -> tuple[list[dict[str, Any]], str | None]:
        try:
            answer = await services(request).call(person, "GET", "followup", "/v1/queue/conversations",
                                                  params={"limit": rules(request).queue_size})
        except ServiceError as exc:
            return [], exc.message
        # one row per customer conversation (their follow-ups due in the same days: one call)
        items = desk.desk_order(desk.conversation_rows(answer), person.username)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            customers = await store.customers_brief(conn, [i["customer_id"] for i in items])
            vehicles = await store.vehicles_brief(conn, [f["vin"] for i in items for f in i["followups"]
                                                         if f.get("vin")])
        now = runtime.clock.now()
        for item in items:
            item["customer"] = customers.get(item["customer_id"])
            item["vehicle"] = vehicles.get(item["vin"]) if item.get("vin") else None
            item["due_from"], item["due_by"] = _moment(item["due_from"]), _moment(item["due_by"])
            item["lateness"] = desk.lateness(item["due_by"], now)
            # the follow-up service's `mine`: my customer's call, or one a supervisor assigned to me (owners)
            item["owned"] = any(f.get("mine") is True for f in item["followups"])
            item["assigned_to_me"] = any(f.get("assigned_to") == person.username for f in item["followups"])
            item["mine"] = item.get("claimed_by") == person.username
            item["call_url"] = desk.call_url(item)
            for f in item["followups"]:
                f["due_from"], f["due_by"] = _moment(f["due_from"]), _moment(f["due_by"])
        return items, None

    @r.get("/desk")
    async def desk_page(request: Request, done: str | None = None, error: str | None = None,
                        person: Person = Depends(role(*DESK))) -> HTMLResponse:
        items, problem = await queue_view(request, person)
        template = "_queue.html" if request.headers.get("HX-Request") else "desk.html"
        # `error`: why a conversation could not be claimed (the service's words, e.g. who is calling)
        return render(request, template, person, items=items, problem=problem, done=done, error=(error or "")[:300])

    @r.post("/desk/calls/{followup_id}/claim")
    async def claim(request: Request, followup_id: str, person: Person = Depends(role(*DESK))) -> Response:
        await form_of(request, person)
        try:
            await services(request).call(person, "POST", "followup", f"/v1/followups/{quote(followup_id)}/claim")
        except ServiceError as exc:
            return await _desk_problem(request, person, exc.message)
        await audit(request, person, "claim_call", subject=followup_id)
        return RedirectResponse(f"/desk/calls/{quote(followup_id)}", status_code=303)

    @r.post("/desk/calls/{followup_id}/release")
    async def release(request: Request, followup_id: str, person: Person = Depends(role(*DESK))) -> Response:
        await form_of(request, person)
        try:
            await services(request).call(person, "POST", "followup", f"/v1/followups/{quote(followup_id)}/release")
        except ServiceError as exc:
            return await _desk_problem(request, person, exc.message)
        await audit(request, person, "release_call", subject=followup_id)
        return RedirectResponse("/desk", status_code=303)

    async def _desk_problem(request: Request, person: Person, message: str) -> HTMLResponse:
        items, problem = await queue_view(request, person)
        return render(request, "desk.html", person, status=409, items=items, problem=problem, error=message)

    @r.get("/desk/calls/{followup_id}")
    async def call_page(request: Request, followup_id: str, error: str | None = None,
                        person: Person = Depends(role(*DESK))) -> HTMLResponse:
        return await show_call(request, person, followup_id, error=error)

    async def show_call(request: Request, person: Person, followup_id: str, *, status: int = 200,
                        error: str | None = None, detail: str | None = None,
                        kept: dict[str, str] | None = None) -> HTMLResponse:
        """The call screen; `kept`: a call record the service refused, shown on its form with what
        was typed and why (`error` the console's words, `detail` the service's)."""
        try:
            followup = await services(request).call(person, "GET", "followup", f"/v1/followups/{quote(followup_id)}")
        except ServiceError as exc:
            return await _desk_problem(request, person, exc.message)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await refuse_outside_scope(request, person, conn, followup["customer_id"])
            customer = await store.customer(conn, followup["customer_id"])
            story = await store.story(conn, followup["customer_id"])
            previous = await store.previous_calls(conn, followup["customer_id"])
        await audit(request, person, "read_customer", customer_id=followup["customer_id"], subject=followup_id,
                    page="call")
        open_items = await conversation_pages.open_concerns(request, person, followup["customer_id"])
        locale = locale_of(request, person)
        lines = [line.replace("{dealer}", followup.get("dealer_id") or "").replace("{campaign}",
                                                                                  followup.get("campaign_id") or "")
                 for line in desk.script(followup["kind"], locale)]
        return render(request, "call.html", person, status=status, followup=followup, customer=customer,
                      story=story, previous=previous, script=lines, error=error, detail=detail, typed=kept or {},
                      categories=COMPLAINT_CATEGORIES, severities=SEVERITIES, inbound_kinds=INBOUND_KINDS,
                      lost_reasons=LOST_REASONS, open_items=open_items,
                      lateness=desk.lateness(_moment(followup["due_by"]), runtime.clock.now()),
                      mine=followup.get("claimed_by") == person.username)

    @r.post("/desk/calls/{followup_id}/outcome")
    async def record_outcome(request: Request, followup_id: str, person: Person = Depends(role(*DESK))) -> Response:
        form = await form_of(request, person)
        here = f"/desk/calls/{quote(followup_id)}"
        try:
            body = attempt_body(form, runtime_of(request).clock.now())
        except ValueError as exc:
            return _with(here, error=str(exc))
        customer_id = form.get("customer_id") or None
        complaint, case = body.pop("complaint", None), None
        if complaint is not None and customer_id:
            # Filed by the person (the case is theirs in the complaints service), then noted on the call.
            try:
                case = await file_complaint(request, person, customer_id, {
                    "description": complaint["description"], "category": complaint["category"] or "",
                    "severity": complaint["severity"] or "", "vin": form.get("vin", ""), "channel": "return_visit"})
            except ServiceError as exc:
                return _with(here, error=exc.message)
            await audit(request, person, "raise_complaint", customer_id=customer_id, subject=case["complaint_id"],
                        followup_id=followup_id)
            body["categories"] = [f"complaint:{complaint['category'] or 'unclassified'}"]
            body["notes"] = " · ".join(filter(None, [body.get("notes"), f"complaint {case['complaint_ref']}"]))
        try:
            await services(request).call(person, "POST", "followup", f"/v1/followups/{quote(followup_id)}/attempts",
                                         json=body)
        except ServiceError as exc:
            if exc.status != 422:
                return _with(here, error=exc.message)
            # refused (e.g. `other` without the customer's words): the form again, with what was typed;
            # a complaint already filed from it is not filed twice
            kept = {k: form.get(k, "") for k in CALL_FIELDS
                    if not (case is not None and k.startswith("complaint_"))}
            return await show_call(request, person, followup_id, status=422, kept=kept, detail=exc.message,
                                   error=N_("The call was not saved: the follow-up service refused it. Correct it "
                                            "and save again.") if case is None else
                                   N_("The call was not saved: the follow-up service refused it. The complaint was "
                                      "filed; correct the call and save again."))
        await audit(request, person, "record_call", customer_id=customer_id, subject=followup_id,
                    outcome=body["outcome"], satisfaction=body.get("satisfaction"),
                    complaint_id=case["complaint_id"] if case else None, lost_reason=body.get("lost_reason"))
        return await open_next_call(request, person, after=followup_id)

    @r.get("/desk/calls/{followup_id}/outcome")
    async def outcome_page(followup_id: str) -> RedirectResponse:
        """Where a refused call record's page (rendered on its POST) goes back to, e.g. after switching language."""
        return RedirectResponse(f"/desk/calls/{quote(followup_id)}", status_code=303)

    async def open_next_call(request: Request, person: Person, after: str) -> Response:
        """The next call opens after saving: the first of the queue that can be claimed."""
        items, problem = await queue_view(request, person)
        for item in items:
            if item["followup_id"] == after or after in {f["followup_id"] for f in item["followups"]}:
                continue
            if len(item["followups"]) > 1:  # the customer's conversation: one claim for all of it
                try:
                    await services(request).call(
                        person, "POST", "followup", f"/v1/customers/{quote(item['customer_id'], safe='')}"
                                                    "/conversation/claim")
                except ServiceError:
                    continue
                await audit(request, person, "claim_call", customer_id=item["customer_id"],
                            subject=item["customer_id"], followups=[f["followup_id"] for f in item["followups"]])
                return RedirectResponse(f"{item['call_url']}?saved=1", status_code=303)
            try:
                await services(request).call(person, "POST", "followup",
                                             f"/v1/followups/{quote(item['followup_id'])}/claim")
            except ServiceError:
                continue  # someone took it a moment ago: the next one
            await audit(request, person, "claim_call", subject=item["followup_id"])
            return RedirectResponse(f"/desk/calls/{quote(item['followup_id'])}?saved=1", status_code=303)
        return RedirectResponse("/desk?done=empty" if not problem else "/desk", status_code=303)

    # -- search ---------------------------------------------------------------------------------
    @r.get("/search")
    async def search(request: Request, q: str = "", person: Person = Depends(role(*STAFF))) -> HTMLResponse:
        query = parse(q)
        results: list[dict[str, Any]] = []
        if not query.empty:
            runtime = runtime_of(request)
            assert runtime.pool is not None
            async with acquire(runtime.pool) as conn:
                results = await store.search(conn, query, scope=(person.regions, person.dealers)
                                             if person.scoped else None)
            await audit(request, person, "search", subject=q[:64], results=len(results))
        template = "_results.html" if request.headers.get("HX-Request") else "search.html"
        return render(request, template, person, q=q, results=results, searched=not query.empty)

    # -- the customer's whole story -------------------------------------------------------------
    @r.get("/customers/{customer_id}")
    async def customer_page(request: Request, customer_id: str, done: str | None = None, error: str | None = None,
                            person: Person = Depends(role(*STAFF))) -> HTMLResponse:
        return await show_customer(request, person, customer_id, done=done, error=error)

    async def show_customer(request: Request, person: Person, customer_id: str, *, status: int = 200,
                            done: str | None = None, error: str | None = None,
                            inbound: dict[str, str] | None = None) -> HTMLResponse:
        """The customer's page; `inbound`: an inbound call the service refused, shown on its form
        with what was typed and why."""
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            customer = await store.customer(conn, customer_id)
            if customer is None:
                raise Refused(N_("No customer file with this id. Search by phone, plate, VIN, name or repair order."),
                              status=404)
            await refuse_outside_scope(request, person, conn, customer_id)
            story = await store.story(conn, customer_id)
        await audit(request, person, "read_customer", customer_id=customer_id, page="customer")
        from services.console.owner_pages import owner_of  # the customer's tracking owner (follow-up)

        return render(request, "customer.html", person, status=status, customer=customer, story=story,
                      timeline=timeline(story), done=done, error=error, categories=COMPLAINT_CATEGORIES,
                      severities=SEVERITIES, inbound_kinds=INBOUND_KINDS, inbound=inbound or {},
                      owner=await owner_of(request, person, customer_id), erasure_key=str(uuid.uuid4()))

    @r.get("/vehicles/{vin}")
    async def vehicle_page(request: Request, vin: str, person: Person = Depends(role(*STAFF))) -> HTMLResponse:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            found = await store.vehicle_story(conn, vin.upper())
            owner = await store.customer(conn, found["vehicle"]["customer_id"]) if found and \
                found["vehicle"]["customer_id"] else None
            if owner is not None:
                await refuse_outside_scope(request, person, conn, owner["customer_id"])
        if found is None:
            raise Refused(N_("No vehicle with this VIN. Search by phone, plate, VIN, name or repair order."), status=404)
        await audit(request, person, "read_vehicle", customer_id=owner["customer_id"] if owner else None,
                    subject=vin.upper())
        return render(request, "vehicle.html", person, story=found, owner=owner)

    # -- changes from the desk ------------------------------------------------------------------
    @r.post("/customers/{customer_id}/contact")
    async def correct_contact(request: Request, customer_id: str, person: Person = Depends(role(*DESK))) -> Response:
        form = await form_of(request, person)
        changes = {k: form[k].strip() for k in ("phone", "email", "address", "person_in_charge")
                   if form.get(k, "").strip()}
        back = _back(form, f"/customers/{quote(customer_id)}")
        if not changes:
            return _with(back, error=N_("Write the corrected phone, e-mail, address or person in charge."))
        try:
            await services(request).call(person, "POST", "intake", f"/v1/customers/{quote(customer_id)}/contact",
                                         json=changes | {"reason": form.get("reason") or None}, ok=(202,))
        except ServiceError as exc:
            return _with(back, error=exc.message)
        await audit(request, person, "correct_contact", customer_id=customer_id,
                    fields=sorted(changes), reason=form.get("reason") or None)
        return _with(back, done="contact")

    @r.post("/customers/{customer_id}/erasure")
    async def erase_customer(request: Request, customer_id: str,
                             person: Person = Depends(role("supervisor"))) -> Response:
        """A supervisor erases the customer's personal data (issue 19): intake erases its file and
        tells every service (CustomerErased); the reason (the legal ground, the customer's request
        reference) is kept in intake's erasure register, not here. The form's key makes a double
        submission one erasure (Idempotency-Key)."""
        form = await form_of(request, person)
        back = f"/customers/{quote(customer_id)}"
        reason = " ".join(form.get("reason", "").split())
        if not 5 <= len(reason) <= 500:
            return _with(back, error=N_("Say why the data are erased (5 to 500 characters): the legal ground "
                                        "or the customer's request reference."))
        if form.get("confirm") != "yes":
            return _with(back, error=N_("Tick the confirmation: erasing the personal data cannot be undone."))
        key = form.get("erasure_key", "")
        try:
            key = str(uuid.UUID(key))
        except ValueError:
            key = str(uuid.uuid4())
        try:
            record = await services(request).call(person, "POST", "intake",
                                                  f"/v1/customers/{quote(customer_id, safe='')}/erasure",
                                                  json={"reason": reason}, headers={"Idempotency-Key": key})
        except ServiceError as exc:
            return _with(back, error=exc.message)
        await audit(request, person, "erase_customer", customer_id=customer_id, subject=record.get("erasure_id"))
        return _with(back, done="erasure")

    @r.post("/customers/{customer_id}/complaints")
    async def raise_complaint(request: Request, customer_id: str, person: Person = Depends(role(*DESK))) -> Response:
        form = await form_of(request, person)
        back = _back(form, f"/customers/{quote(customer_id)}")
        try:
            case = await file_complaint(request, person, customer_id, form)
        except ServiceError as exc:
            return _with(back, error=exc.message)
        await audit(request, person, "raise_complaint", customer_id=customer_id, subject=case["complaint_id"])
        return _with(back, done="complaint")

    @r.post("/customers/{customer_id}/inbound-calls")
    async def log_inbound_call(request: Request, customer_id: str, person: Person = Depends(role(*DESK))) -> Response:
        form = await form_of(request, person)
        page = f"/customers/{quote(customer_id)}"
        back = _back(form, page)
        kind, summary = form.get("kind", ""), form.get("summary", "").strip()

        async def refused(message: str, detail: str | None = None, status: int = 422) -> Response:
            """On the customer's page the form comes back with what was typed; elsewhere (the call
            screen) the reason is shown there."""
            if back != page:
                return _with(back, error=detail or message)
            kept = {k: form.get(k, "") for k in ("kind", "summary", "category")}
            return await show_customer(request, person, customer_id, status=status,
                                       inbound=kept | {"error": message, "detail": detail or ""})

        if kind not in INBOUND_KINDS or not summary:
            return await refused(N_("Say what the call was about and write a short summary."))
        complaint_id = None
        if kind == "complaint":
            try:
                case = await file_complaint(request, person, customer_id, form | {"description": summary})
            except ServiceError as exc:
                return await refused(N_("The complaint could not be filed, so the call was not logged; nothing "
                                        "was lost, try again."), exc.message, 422 if exc.status < 500 else 502)
            complaint_id = case["complaint_id"]
        # follow-up keeps the phone register: it records the call under the person (and schedules
        # the first tracking call after a consultation); the story shows it once the event arrives
        try:
            call = await services(request).call(person, "POST", "followup", "/v1/inbound-calls", json={
                "customer_id": customer_id, "kind": kind, "summary": summary[:4000], "complaint_id": complaint_id,
                "vin": form.get("vin") or None}, ok=(201,))
        except ServiceError as exc:
            return await refused(N_("The follow-up service did not log the call; nothing was lost, try again."),
                                 exc.message, 422 if exc.status < 500 else 502)
        await audit(request, person, "log_inbound_call", customer_id=customer_id, subject=call["call_id"], kind=kind,
                    complaint_id=complaint_id)
        return _with(back, done="inbound")

    @r.get("/customers/{customer_id}/inbound-calls")
    async def inbound_calls_page(customer_id: str) -> RedirectResponse:
        """Where a refused call's page (rendered on its POST) goes back to, e.g. after switching language."""
        return RedirectResponse(f"/customers/{quote(customer_id)}", status_code=303)

    async def file_complaint(request: Request, person: Person, customer_id: str, form: dict[str, str]) -> Any:
        description = (form.get("description") or "").strip()
        if not description:
            raise ServiceError("complaints", 422, N_("Describe the complaint in a sentence or two."))
        channel = form.get("channel") if form.get("channel") in ("hotline", "return_visit") else "hotline"
        body = {"customer_id": customer_id, "channel": channel, "description": description[:4000],
                "category": form.get("category") if form.get("category") in COMPLAINT_CATEGORIES else None,
                "severity": form.get("severity") if form.get("severity") in SEVERITIES else None}
        if form.get("vin"):
            body["vin"] = form["vin"]
        return await services(request).call(person, "POST", "complaints", "/v1/complaints", json=body)

    # -- supervisors ----------------------------------------------------------------------------
    @r.get("/supervisor/audit")
    async def audit_page(request: Request, user: str | None = None, customer: str | None = None,
                         action: str | None = None, before: int | None = None,
                         person: Person = Depends(role("supervisor"))) -> HTMLResponse:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            entries = await store.audit_entries(conn, username=user or None, customer_id=customer or None,
                                                action=action or None, limit=100, before_id=before)
        return render(request, "audit.html", person, entries=entries, user=user or "", customer=customer or "",
                      action=action or "")

    from services.console import (  # they use these helpers
        cases,
        feedback_pages,
        quality_pages,
        retention_pages,
        supervisor_pages,
    )

    r.include_router(cases.router())
    r.include_router(feedback_pages.router())
    r.include_router(quality_pages.router())
    r.include_router(retention_pages.router())
    r.include_router(conversation_pages.router())
    from services.console import owner_pages  # tracking owners: a supervisor changes them, assigns calls
    r.include_router(owner_pages.router())
    r.include_router(supervisor_pages.router())
    from services.console import scorecard_pages  # dealer scorecards, receipts searched and summarised
    r.include_router(scorecard_pages.router())
    from services.console import report_pages  # the weekly return-visit report, the monthly work summary
    r.include_router(report_pages.router())
    from services.console import measure_pages  # rectification measures and their effect
    r.include_router(measure_pages.router())
    return r


def attempt_body(form: dict[str, str], now: datetime) -> dict[str, Any]:
    """The follow-up API's call record from the call form; ValueError says what to fix."""
    outcome = form.get("outcome")
    if outcome not in ("reached", "unreachable", "wrong_number", "call_back_later"):
        raise ValueError(N_("Choose what happened on the call."))
    body: dict[str, Any] = {"outcome": outcome}
    for field in ("talking_points", "requests", "notes"):
        if form.get(field, "").strip():
            body[field] = form[field].strip()
    if outcome == "reached":
        if form.get("satisfaction"):
            body["satisfaction"] = int(form["satisfaction"])
        if form.get("satisfied") in ("yes", "no"):
            body["satisfied"] = form["satisfied"] == "yes"
        concern = {name: True for name, field in (("answered_on_call", "answered_on_call"),
                                                   ("serious", "feedback_serious")) if form.get(field) == "yes"}
        if concern:  # the feedback item the score or the request opens
            body["feedback"] = concern
        if form.get("complaint_description", "").strip():
            body["complaint"] = {
                "description": form["complaint_description"].strip(),
                "category": form.get("complaint_category") if form.get("complaint_category") in COMPLAINT_CATEGORIES
                else None,
                "severity": form.get("complaint_severity") if form.get("complaint_severity") in SEVERITIES else None,
            }
        # a lost customer's reason as chosen; the follow-up service judges it (a value off its list, or
        # `other` without the customer's words, is refused there and shown on the form)
        if form.get("lost_reason", "").strip():
            body["lost_reason"] = form["lost_reason"].strip()
        if form.get("lost_reason_note", "").strip():
            body["lost_reason_note"] = form["lost_reason_note"].strip()
    if outcome == "call_back_later":
        if not form.get("call_back_at"):
            raise ValueError(N_("Give the time to call back."))
        zone = ZoneInfo(form.get("timezone") or "Asia/Shanghai")
        at = datetime.fromisoformat(form["call_back_at"]).replace(tzinfo=zone)
        if at <= now:
            raise ValueError(N_("The time to call back must be later than now."))
        body["call_back_at"] = at.isoformat()
    return body


def _back(form: dict[str, str], default: str) -> str:
    back = form.get("back") or default
    return back if back.startswith("/") and not back.startswith("//") else default


def _with(path: str, **params: str) -> RedirectResponse:
    sep = "&" if "?" in path else "?"
    return RedirectResponse(path + sep + "&".join(f"{k}={quote(v)}" for k, v in params.items()), status_code=303)


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def timeline(story: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The customer's story in one list, newest first: visits, receipts, calls, inbound calls,
    cases' steps, messages, file changes."""
    entries: list[dict[str, Any]] = []
    entries += [{"at": v["picked_up_at"], "kind": "visit", "item": v} for v in story["visits"]]
    entries += [{"at": r["returned_at"], "kind": "receipt", "item": r} for r in story["receipts"]]
    entries += [{"at": c["attempted_at"], "kind": "call", "item": c} for c in story["calls"]]
    entries += [{"at": c["at"], "kind": "inbound_call", "item": c} for c in story["inbound_calls"]]
    entries += [{"at": e["at"], "kind": "complaint_event", "item": e} for e in story["complaint_events"]]
    entries += [{"at": n["at"], "kind": "notification", "item": n} for n in story["notifications"]]
    entries += [{"at": c["at"], "kind": "change", "item": c} for c in story["changes"]]
    return sorted(entries, key=lambda e: e["at"], reverse=True)[:300]


def wants_json(request: Request) -> bool:
    """A request for one of the console's JSON answers (`format=json`): errors are problem details."""
    return request.query_params.get("format") == "json"


def install(runtime: ServiceRuntime) -> None:
    """Turn the console's refusals and redirects into pages (the app is shared.http's)."""
    app = runtime.app

    @app.exception_handler(Redirect)
    async def redirect(request: Request, exc: Redirect) -> Response:
        if wants_json(request):  # the console's JSON answers are an API: a problem, not the sign-in page
            return problem_response(401, "sign in to the console first; its JSON answers use the session",
                                    instance=request.url.path)
        if request.headers.get("HX-Request"):
            return Response(status_code=204, headers={"HX-Redirect": exc.location})
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        if wants_json(request):
            return problem_response(exc.status, exc.message_id % exc.params if exc.params else exc.message_id,
                                    instance=request.url.path)
        person = None
        try:
            person = await current_person(request)
        except Redirect:
            pass
        return render(request, "error.html", person, status=exc.status, message_id=exc.message_id,
                      params=exc.params)
