"""Follow-up's HTTP routes for the customer-service agents ("tracking salesmen") and supervisors.

The HTTP convention (issue 21, shared/api.py): response models (services/followup/models.py),
cursor pages with `sort` on every list, problems for every error, ETags on a follow-up and a
customer's conversation and If-Match on every action that changes them (services/followup/etags.py).
Least privilege (issue 19): a scoped agent sees and works their regions' and dealers' customers
only; an agent of the whole group (the hotline) names a customer (or another narrowing filter) to
list customers' data; every page is capped (MAX_PAGE)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from services.followup import commands as calls
from services.followup import conversation, inbound, owners, store
from services.followup import models as m
from services.followup.config import FollowUpRules
from services.followup.domain import (
    LOST_REASONS,
    AtRisk,
    at_risk,
    calling_days,
    in_calling_hours,
    loyalty_tier,
    maintenance_due,
    queue_order,
)
from services.followup.etags import (
    check_conversation,
    check_followup,
    conversation_etag,
    current_conversation_etag,
    followup_etag,
    followup_etag_of,
)
from services.followup.feedback_api import feedback_router
from services.followup.lists import etag_doc, hold_to_scope, moment_key, narrowed, page_of
from services.followup.owners_api import owners_router
from services.followup.weekly import department_part
from services.followup.weekly import headline as return_visit_headline
from shared import metrics
from shared.api import (
    IfMatch,
    Page,
    PageParams,
    Sort,
    SortKey,
    make_page,
    page_doc,
    page_params,
    problems,
    sort_param,
)
from shared.db import acquire
from shared.http import Principal, check_moments, require, runtime_of
from shared.timeutil import add_months

MAX_PAGE = 200  # the most rows a page of any of follow-up's lists holds
# The queue is computed (calling hours, loyalty) from at most this many callable follow-ups.
QUEUE_CANDIDATES = 2000

Paging = Annotated[PageParams, Depends(page_params(default_limit=50, max_limit=MAX_PAGE))]
QueueSort = Annotated[Sort, Depends(sort_param({
    "priority": SortKey("queue_order"),  # the queue's own order: own calls, overdue, loyalty tier, due_by
    "due_by": SortKey("due_by", "timestamptz"),
}, default="priority"))]
FollowUpSort = Annotated[Sort, Depends(sort_param({
    "created_at": SortKey("f.created_at", "timestamptz"), "due_by": SortKey("f.due_by", "timestamptz"),
}, default="-created_at"))]
CallSort = Annotated[Sort, Depends(sort_param({"attempted_at": SortKey("a.attempted_at", "timestamptz")},
                                              default="-attempted_at"))]
RegisterSort = Annotated[Sort, Depends(sort_param({"attempted_at": SortKey("r.attempted_at", "timestamptz")},
                                                  default="-attempted_at"))]
LetterSort = Annotated[Sort, Depends(sort_param({"requested_at": SortKey("l.requested_at", "timestamptz")},
                                                default="-requested_at"))]
AtRiskSort = Annotated[Sort, Depends(sort_param({"lost_at": SortKey("lost_at", "timestamptz")}, default="lost_at"))]


def _rules(request: Request) -> FollowUpRules:
    rules: FollowUpRules = runtime_of(request).deps.rules
    return rules


async def _tiers(conn: Any, customer_ids: list[str], now: datetime, r: FollowUpRules) -> dict[str, str]:
    stats = await store.loyalty_stats(conn, customer_ids, add_months(now, -r.loyalty_window_months))
    return {cid: loyalty_tier(*stats.get(cid, (0, None, 0)), r) for cid in customer_ids}


async def _known(conn: Any, customer_id: str) -> None:
    if not await store.customer_known(conn, customer_id):
        raise HTTPException(404, f"no customer {customer_id!r} on follow-up's file (customers appear here with "
                                 "their registration, a sale, a pickup or a consultation)")


def _refused(exc: calls.CallRefused) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def router() -> APIRouter:
    r = APIRouter(tags=["return visits"])
    r.include_router(feedback_router())
    r.include_router(owners_router())

    async def callable_now(request: Request, who: Principal, kind: str | None, region: str | None,
                           dealer: str | None) -> tuple[list[dict[str, Any]], dict[str, Any], datetime]:
        """The follow-ups callable now by the calling agent (a scoped agent's: their customers' only;
        none of a customer another agent is calling), and what the rows show (loyalty tiers, contact
        flags, the customers' open follow-ups and owners). All of them, so that a page continues
        exactly where the previous one ended whatever the order (at most QUEUE_CANDIDATES)."""
        runtime = runtime_of(request)
        rules = _rules(request)
        now = runtime.clock.now()
        regions, dealers = who.scope_params()
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            candidates = await store.queue_candidates(
                conn, now, rules.calling_hours_start, rules.calling_hours_end, kind=kind, region=region,
                dealer=dealer, agent=who.subject, limit=QUEUE_CANDIDATES, regions=regions, dealers=dealers)
            # calling hours hold on the calling days of the customer's region only (no holidays)
            deps = runtime.deps
            candidates = [c for c in candidates if in_calling_hours(
                now, c["timezone"], rules, calling_days(c["region"], rules, deps.calendars))]
            tiers = await _tiers(conn, list({c["customer_id"] for c in candidates}), now, rules)
            flags = await store.contact_flags_of(conn, tiers)
            # one conversation per customer: their other follow-ups due in the same days, their claims
            open_rows = await store.open_followups_of(conn, tiers)
        # a customer another agent is calling (a claim on any of their follow-ups) is not offered
        offered = [c for c in candidates
                   if conversation.held_by_another(open_rows.get(c["customer_id"], []), who.subject, now) is None]
        owner_of = {c["customer_id"]: c["owner"] for c in candidates}  # owners.py: the customers' owners
        return offered, {"tiers": tiers, "flags": flags, "open_rows": open_rows, "owner_of": owner_of}, now

    def queue_key(sort: Sort, who: Principal, now: datetime, tiers: dict[str, str]
                  ) -> Callable[[dict[str, Any]], list[Any]]:
        def key(c: dict[str, Any]) -> list[Any]:
            if sort.key == "due_by":
                return [moment_key(c["due_by"]), c["followup_id"]]
            # the calling agent's own calls first (owners.py), then the queue's order
            overdue, tier, due_by, priority = queue_order(c["due_by"] < now, tiers[c["customer_id"]], c["due_by"],
                                                          c["priority"])
            mine = owners.mine(who.subject, c["owner"], c["assigned_to"])
            return [[0 if mine else 1, overdue, tier, moment_key(due_by), priority], c["followup_id"]]
        return key

    def queue_item(c: dict[str, Any], who: Principal, now: datetime, seen: dict[str, Any]) -> dict[str, Any]:
        owner = seen["owner_of"].get(c["customer_id"])
        return {**{k: c.get(k) for k in ("followup_id", "kind", "customer_id", "vin", "dealer_id", "region",
                                         "campaign_id", "complaint_id", "due_from", "due_by", "priority",
                                         "attempts", "claimed_by", "reason_type")},
                "overdue": c["due_by"] < now, "loyalty_tier": seen["tiers"][c["customer_id"]],
                "contact_flags": seen["flags"].get(c["customer_id"], {}),
                # owners.py: the customer's tracking owner, the agent a supervisor assigned the call to
                "owner": owner, "assigned_to": c.get("assigned_to"),
                "mine": owners.mine(who.subject, owner, c.get("assigned_to"))}

    @r.get("/v1/queue", response_model=Page[m.QueueItem], responses=page_doc(m.QueueItem),
           summary="What the calling agent can call now: by default the queue's order (their own calls, overdue, "
                   "loyalty tier, due_by)")
    async def queue(request: Request, paging: Paging, sort: QueueSort, kind: str | None = None,
                    region: str | None = None, dealer: str | None = None,
                    who: Principal = require("agent", "supervisor")) -> Page[Any]:
        """The follow-ups callable now (due, in the customer's calling hours, not waiting for a
        retry, nobody else on the customer); `sort=priority` (the default) is the queue's own order,
        `sort=due_by` the deadline's. A scoped agent's queue holds their customers only."""
        offered, seen, now = await callable_now(request, who, kind, region, dealer)
        page = page_of(offered, sort, paging, queue_key(sort, who, now, seen["tiers"]))
        return Page[Any](items=[queue_item(c, who, now, seen) for c in page.items], next_cursor=page.next_cursor,
                         limit=page.limit)

    @r.get("/v1/queue/conversations", response_model=Page[m.QueueConversation],
           responses=page_doc(m.QueueConversation),
           summary="The queue as customers' conversations: each customer's follow-ups due in the same days, one call")
    async def queue_conversations(request: Request, paging: Paging, sort: QueueSort, kind: str | None = None,
                                  region: str | None = None, dealer: str | None = None,
                                  who: Principal = require("agent", "supervisor")) -> Page[Any]:
        """One row per customer with a follow-up callable now, in the place of their first one in
        the queue's order (docs/followup.md "One conversation per customer")."""
        rules = _rules(request)
        offered, seen, now = await callable_now(request, who, kind, region, dealer)
        key = queue_key(sort, who, now, seen["tiers"])
        ordered = sorted(offered, key=key, reverse=sort.descending)
        talks = conversation.group_queue(ordered, seen["open_rows"], now, rules.conversation_days, who.subject)
        first: dict[str, list[Any]] = {}
        for c in ordered:
            first.setdefault(c["customer_id"], key(c)[0])
        page = page_of(talks, sort, paging, lambda t: [first[t.customer_id], t.customer_id])
        callable_ids = {c["followup_id"] for c in offered}
        return Page[Any](items=[
            {"customer_id": t.customer_id, "claimed_by": t.claimed_by, "claim_expires_at": t.claim_expires_at,
             "call_id": t.call_id, "loyalty_tier": seen["tiers"][t.customer_id],
             "overdue": any(f["due_by"] < now for f in t.followups),
             # due_now: its window has started (else brought forward); callable_now: not waiting for a retry
             "followups": [queue_item(f, who, now, seen) | {"due_now": f["due_from"] <= now,
                                                            "callable_now": f["followup_id"] in callable_ids}
                           for f in t.followups]}
            for t in page.items], next_cursor=page.next_cursor, limit=page.limit)

    @r.get("/v1/followups", response_model=Page[m.FollowUp], responses=page_doc(m.FollowUp),
           summary="Follow-ups by customer, status or kind")
    async def list_followups(request: Request, paging: Paging, sort: FollowUpSort, customer: str | None = None,
                             status: str | None = None, kind: str | None = None,
                             who: Principal = require("agent", "supervisor")) -> Page[Any]:
        """A scoped agent lists their customers' follow-ups; an agent of the whole group names the
        `customer`."""
        narrowed(who, customer=customer)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            regions, dealers = who.scope_params()  # a scoped agent lists their customers' only
            rows = await store.followups_of(conn, customer=customer, status=status, kind=kind,
                                            sort=sort, cursor=paging.cursor,
                                            limit=paging.limit + 1, regions=regions, dealers=dealers)
        return make_page(rows, paging.limit, sort, lambda f: (f[sort.column.removeprefix("f.")], f["followup_id"]))

    @r.get("/v1/followups/{followup_id}", response_model=m.FollowUpDetail,
           responses=etag_doc("follow-up") | problems(404),
           summary="A follow-up with its call attempts and the customer's loyalty tier (ETag: the follow-up's)")
    async def get_followup(request: Request, response: Response, followup_id: str,
                           who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await hold_to_scope(request, who, followup_id=followup_id)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            f = await store.get_followup(conn, followup_id)
            if f is None:
                raise HTTPException(404, f"no follow-up {followup_id!r}")
            attempts = await store.attempts_of(conn, followup_id)
            tier = (await _tiers(conn, [f["customer_id"]], runtime.clock.now(), _rules(request)))[f["customer_id"]]
            flags = (await store.contact_flags_of(conn, [f["customer_id"]])).get(f["customer_id"], {})
        response.headers["ETag"] = followup_etag(f)
        return {**f, "loyalty_tier": tier, "attempts": attempts, "contact_flags": flags}

    @r.post("/v1/followups/{followup_id}/claim", response_model=m.Claimed, responses=problems(404, 409, 412),
            summary="Take a follow-up to call it; no other agent can call the customer until the claim expires")
    async def claim(request: Request, response: Response, followup_id: str, if_match: IfMatch = None,
                    who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await hold_to_scope(request, who, followup_id=followup_id)
        try:
            async with runtime_of(request).transaction() as uow:
                await check_followup(uow.conn, followup_id, if_match)
                f = await calls.claim(uow, followup_id, who.subject, supervisor=who.role == "supervisor")
                response.headers["ETag"] = followup_etag(f)
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return {"followup_id": followup_id, "claimed_by": f["claimed_by"], "claim_expires_at": f["claim_expires_at"]}

    @r.post("/v1/followups/{followup_id}/release", response_model=m.Released, responses=problems(404, 409, 412),
            summary="Give a claimed follow-up back to the queue")
    async def release(request: Request, response: Response, followup_id: str, if_match: IfMatch = None,
                      who: Principal = require("agent", "supervisor")) -> dict[str, str]:
        await hold_to_scope(request, who, followup_id=followup_id)
        try:
            async with runtime_of(request).transaction() as uow:
                await check_followup(uow.conn, followup_id, if_match)
                await calls.release(uow, followup_id, who.subject, supervisor=who.role == "supervisor")
                if (tag := await followup_etag_of(uow.conn, followup_id)) is not None:
                    response.headers["ETag"] = tag
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return {"followup_id": followup_id, "status": "released"}

    @r.post("/v1/followups/{followup_id}/attempts", status_code=201, response_model=m.AttemptRecorded,
            responses=problems(404, 409, 412),
            summary="Record a call: outcome, satisfaction, talking points, requests, a complaint or product issue")
    async def record_attempt(request: Request, response: Response, followup_id: str, body: calls.AttemptIn,
                             if_match: IfMatch = None,
                             who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        """A retry with the same `Idempotency-Key` records the call once and answers the first
        response again."""
        await hold_to_scope(request, who, followup_id=followup_id)
        try:
            async with runtime_of(request).transaction() as uow:
                await check_followup(uow.conn, followup_id, if_match)
                recorded = await calls.record_attempt(uow, followup_id, who.subject, body)
                if (tag := await followup_etag_of(uow.conn, followup_id)) is not None:
                    response.headers["ETag"] = tag
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        if recorded["lost_reason"] is not None:  # counted once the call is stored
            metrics.LOST_CUSTOMER_REASONS.labels(recorded["lost_reason"]).inc()
        return recorded

    @r.get("/v1/customers/{customer_id}/conversation", response_model=m.Conversation,
           responses=etag_doc("conversation") | problems(404),
           summary="The customer's conversation: their follow-ups worked on one call, who holds it, their earlier "
                   "calls (ETag: the conversation's)")
    async def get_conversation(request: Request, response: Response, customer_id: str,
                               who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        """The open follow-ups due in the same days (docs/followup.md "One conversation per
        customer"), each with its attempts, and the customer's history: their latest 100 calls on
        any follow-up (talking points, requests, notes; all of them: `/calls`) and feedback items not
        closed yet. A customer follow-up knows with nothing due has an empty conversation; one it
        does not know is a 404."""
        await hold_to_scope(request, who, customer_id=customer_id)
        runtime = runtime_of(request)
        rules = _rules(request)
        now = runtime.clock.now()
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await _known(conn, customer_id)
            rows = (await store.open_followups_of(conn, [customer_id])).get(customer_id, [])
            response.headers["ETag"] = conversation_etag(customer_id, rows, now, rules.conversation_days)
            talk = conversation.conversation_of(customer_id, rows, now, rules.conversation_days)
            followups = [f | {"attempts_made": await store.attempts_of(conn, f["followup_id"])}
                         for f in talk.followups]
            history = await store.customer_history(conn, customer_id, limit=100)
            tier = (await _tiers(conn, [customer_id], now, rules))[customer_id]
            flags = (await store.contact_flags_of(conn, [customer_id])).get(customer_id, {})
        return {"now": now, "customer_id": customer_id, "claimed_by": talk.claimed_by,
                "claim_expires_at": talk.claim_expires_at, "call_id": talk.call_id,
                "conversation_days": rules.conversation_days, "loyalty_tier": tier, "contact_flags": flags,
                "followups": [_conversation_followup(f, now) for f in followups], **history}

    @r.get("/v1/customers/{customer_id}/calls", response_model=Page[m.PreviousCall],
           responses=page_doc(m.PreviousCall) | problems(404),
           summary="The customer's previous calls on every follow-up")
    async def customer_calls(request: Request, customer_id: str, paging: Paging, sort: CallSort,
                             who: Principal = require("agent", "supervisor")) -> Page[Any]:
        await hold_to_scope(request, who, customer_id=customer_id)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            await _known(conn, customer_id)
            rows = await store.customer_calls(conn, customer_id, sort, paging.cursor, paging.limit + 1)
        return make_page(rows, paging.limit, sort, lambda c: (c["attempted_at"], c["attempt_id"]))

    @r.post("/v1/customers/{customer_id}/conversation/claim", response_model=m.ConversationClaimed,
            responses=problems(404, 409, 412),
            summary="Take all the customer's follow-ups due in the same days to call them once (one claim)")
    async def claim_conversation(request: Request, response: Response, customer_id: str, if_match: IfMatch = None,
                                 who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await hold_to_scope(request, who, customer_id=customer_id)
        days = _rules(request).conversation_days
        try:
            async with runtime_of(request).transaction() as uow:
                await check_conversation(uow.conn, customer_id, uow.now(), days, if_match)
                taken = await calls.claim_conversation(uow, customer_id, who.subject,
                                                       supervisor=who.role == "supervisor")
                response.headers["ETag"] = await current_conversation_etag(uow.conn, customer_id, uow.now(), days)
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return taken | {"followups": [{k: f[k] for k in ("followup_id", "kind", "due_from", "due_by")}
                                      for f in taken["followups"]]}

    @r.post("/v1/customers/{customer_id}/conversation/release", response_model=m.ConversationReleased,
            responses=problems(404, 409, 412), summary="Give the customer's claimed follow-ups back to the queue")
    async def release_conversation(request: Request, response: Response, customer_id: str, if_match: IfMatch = None,
                                   who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await hold_to_scope(request, who, customer_id=customer_id)
        days = _rules(request).conversation_days
        try:
            async with runtime_of(request).transaction() as uow:
                await _known(uow.conn, customer_id)
                await check_conversation(uow.conn, customer_id, uow.now(), days, if_match)
                released = await calls.release_conversation(uow, customer_id, who.subject,
                                                            supervisor=who.role == "supervisor")
                response.headers["ETag"] = await current_conversation_etag(uow.conn, customer_id, uow.now(), days)
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return {"customer_id": customer_id, "released": released}

    @r.post("/v1/customers/{customer_id}/calls", status_code=201, response_model=m.CallRecorded,
            responses=problems(404, 409, 412),
            summary="Record one call to the customer with each follow-up's outcome (the conversation's record)")
    async def record_call(request: Request, response: Response, customer_id: str, body: calls.ConversationCallIn,
                          if_match: IfMatch = None, who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        """Each follow-up gets its attempt (FollowUpAttemptRecorded, and FollowUpCompleted when it
        completes, each with the call's `call_id`); every follow-up of the claim needs an outcome;
        a refused outcome stores nothing. `If-Match`: the conversation's ETag (from its GET or
        claim)."""
        await hold_to_scope(request, who, customer_id=customer_id)
        days = _rules(request).conversation_days
        try:
            async with runtime_of(request).transaction() as uow:
                await _known(uow.conn, customer_id)
                await check_conversation(uow.conn, customer_id, uow.now(), days, if_match)
                recorded = await calls.record_call(uow, customer_id, who.subject, body)
                response.headers["ETag"] = await current_conversation_etag(uow.conn, customer_id, uow.now(), days)
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        for f in recorded["followups"]:  # counted once the call is stored
            if f["lost_reason"] is not None:
                metrics.LOST_CUSTOMER_REASONS.labels(f["lost_reason"]).inc()
        return recorded

    @r.post("/v1/inbound-calls", status_code=201, response_model=m.InboundCallRecorded,
            summary="Record a call the customer made (consultation, complaint, request) with the person who took it")
    async def record_inbound_call(request: Request, body: inbound.InboundCallIn,
                                  who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        """A consultation schedules the first tracking call (3-7 days); a complaint with no
        `complaint_id` files one (ComplaintFiled, channel hotline). The same Idempotency-Key
        records the call once (also beyond the stored response's 24 hours: the key names the call)."""
        key = request.headers.get("Idempotency-Key")
        try:
            async with runtime_of(request).transaction() as uow:
                return await inbound.record_inbound_call(uow, who.subject, body, key[:200] if key else None)
        except calls.CallRefused as exc:
            raise _refused(exc) from None

    @r.get("/v1/register/calls", response_model=Page[m.RegisterCall], responses=page_doc(m.RegisterCall),
           summary="The phone register: every call made (attempts) and taken (inbound), by customer, agent and date")
    async def call_register(
        request: Request, paging: Paging, sort: RegisterSort, customer: str | None = None, agent: str | None = None,
        since: datetime | None = Query(None, alias="from"), until: datetime | None = Query(None, alias="to"),
        direction: Literal["inbound", "outbound"] | None = None,
        who: Principal = require("agent", "supervisor", "ops"),
    ) -> Page[Any]:
        """A scoped agent's register holds their customers' calls; an agent of the whole group names
        the `customer` or the `agent`."""
        check_moments(**{"from": since, "to": until})
        narrowed(who, customer=customer, agent=agent)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            regions, dealers = who.scope_params()
            rows = await store.call_register(conn, customer=customer, agent=agent, since=since, until=until,
                                             direction=direction, regions=regions, dealers=dealers,
                                             sort=sort, cursor=paging.cursor, limit=paging.limit + 1)
        return make_page(rows, paging.limit, sort, lambda c: (c["attempted_at"], c["call_id"]))

    @r.get("/v1/register/letters", response_model=Page[m.Letter], responses=page_doc(m.Letter),
           summary="The letter register: every notice and invitation letter requested")
    async def letter_register(
        request: Request, paging: Paging, sort: LetterSort, customer: str | None = None, agent: str | None = None,
        since: datetime | None = Query(None, alias="from"), until: datetime | None = Query(None, alias="to"),
        who: Principal = require("agent", "supervisor", "ops"),
    ) -> Page[Any]:
        """A scoped agent's register holds their customers' letters; an agent of the whole group
        names the `customer` or the `agent`."""
        check_moments(**{"from": since, "to": until})
        narrowed(who, customer=customer, agent=agent)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            regions, dealers = who.scope_params()
            rows = await store.letter_register(conn, customer=customer, agent=agent, since=since, until=until,
                                               regions=regions, dealers=dealers,
                                               sort=sort, cursor=paging.cursor, limit=paging.limit + 1)
        return make_page(rows, paging.limit, sort, lambda x: (x["requested_at"], x["letter_id"]))

    @r.get("/v1/kpis", response_model=m.Kpis,
           summary="Warranty return-visit rate, satisfaction rate, open and overdue follow-ups, calls per agent")
    async def kpis(
        request: Request, since: datetime | None = Query(None, alias="from"),
        until: datetime | None = Query(None, alias="to"), region: str | None = None, dealer: str | None = None,
        who: Principal = require("supervisor", "ops"),
    ) -> dict[str, Any]:
        check_moments(**{"from": since, "to": until})
        runtime = runtime_of(request)
        rules = _rules(request)
        until = until or runtime.clock.now()
        since = since or until - timedelta(days=rules.kpi_window_days)
        if since >= until:
            raise HTTPException(422, f"from ({since.isoformat()}) must be before to ({until.isoformat()})")
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            figures = await store.kpis(conn, since, until, region, dealer, rules.satisfied_score)
        return figures_with_rates(figures) | {"from": since, "to": until, "region": region, "dealer": dealer}

    @r.get("/v1/reports/lost-reasons", response_model=m.LostReasons,
           summary="Why lost customers stopped coming: the lost-customer calls that reached them, by reason")
    async def lost_reasons(
        request: Request, since: datetime | None = Query(None, alias="from"),
        until: datetime | None = Query(None, alias="to"), region: str | None = None, dealer: str | None = None,
        who: Principal = require("supervisor", "ops"),
    ) -> dict[str, Any]:
        """Counts by reason of the lost-customer calls completed (reached) in [from, to), default the
        last 30 days; `not_given` counts those recorded without a reason."""
        check_moments(**{"from": since, "to": until})
        runtime = runtime_of(request)
        until = until or runtime.clock.now()
        since = since or until - timedelta(days=_rules(request).kpi_window_days)
        if since >= until:
            raise HTTPException(422, f"from ({since.isoformat()}) must be before to ({until.isoformat()})")
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            reasons = await store.lost_reasons(conn, since, until, region=region, dealer=dealer)
        return {"from": since, "to": until, "region": region, "dealer": dealer, "reasons": reasons,
                "total": sum(reasons.values()), "known_reasons": list(LOST_REASONS)}

    @r.get("/v1/customers/at-risk", response_model=Page[m.AtRiskCustomer], responses=page_doc(m.AtRiskCustomer),
           summary="Customers at risk of being lost before the 12-month mark: overdue maintenance or falling visits")
    async def customers_at_risk(request: Request, paging: Paging, sort: AtRiskSort, region: str | None = None,
                                dealer: str | None = None,
                                who: Principal = require("agent", "supervisor")) -> Page[Any]:
        """Customers with a visit in the last 12 months and a sign of leaving (docs/followup.md):
        by default the nearest to their 12-month mark first. A scoped agent's: their customers; an
        agent of the whole group names a `region` or `dealer`."""
        narrowed(who, region=region, dealer=dealer)
        runtime = runtime_of(request)
        rules = _rules(request)
        now = runtime.clock.now()
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = await store.at_risk_candidates(conn, now, add_months(now, -rules.lost_after_months),
                                                  region=region, dealer=dealer)
            if who.scoped:  # a scoped agent's customers only
                mine = await store.customers_in_scope(conn, [row["customer_id"] for row in rows], *who.scope_params())
                rows = [row for row in rows if row["customer_id"] in mine]
        found = [{"customer_id": risk.customer_id, "region": row["region"], "signs": risk.signs,
                  "last_visit_at": risk.last_visit_at, "lost_at": risk.lost_at,
                  "days_since_last_visit": risk.days_since_last_visit,
                  "average_interval_days": risk.average_interval_days,
                  "maintenance_due_at": risk.maintenance_due_at,
                  "vehicles": sorted(v["vin"] for v in row["vehicles"] or [])}
                 for row in rows if (risk := _at_risk(row, now, rules)) is not None]
        return page_of(found, sort, paging, lambda c: [moment_key(c["lost_at"]), c["customer_id"]])

    @r.get("/v1/reports/weekly", response_model=m.WeeklyReport, responses=problems(404),
           summary="The weekly written report (visits done and missed, satisfaction, feedback); a department "
                   "person gets the headline and its own part only")
    async def weekly(request: Request, week: str = Query(max_length=20, examples=["2026-W47"]),
                     who: Principal = require("supervisor", "ops", "department")) -> dict[str, Any]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            report = await store.weekly_report(conn, week)
        if report is None:
            raise HTTPException(404, f"no weekly report for {week!r} (weeks look like 2026-W48; reports are made "
                                     "on Mondays for the week before)")
        if who.role == "department":  # the part that concerns it, as its e-mail
            figures = report["figures"]
            if not who.department or "voices" not in figures:
                raise HTTPException(404, f"no department part in the weekly report for {week!r}")
            part = figures["voices"].get(who.department, {"total": 0, "answered": 0, "open": 0, "complaints": 0,
                                                           "items": []})
            return report | {"department": who.department, "figures": department_part(
                figures | {"voices": {who.department: part}}, who.department)}
        return report

    @r.get("/v1/reports/return-visits", response_model=m.ReturnVisits,
           summary="Return visits due and reached, satisfaction and dissatisfied customers in a period (the weekly "
                   "report's headline, any period)")
    async def return_visits(request: Request, since: datetime = Query(alias="from"),
                            until: datetime = Query(alias="to"),
                            who: Principal = require("supervisor", "ops")) -> dict[str, Any]:
        check_moments(**{"from": since, "to": until})
        if since >= until:
            raise HTTPException(422, f"from ({since.isoformat()}) must be before to ({until.isoformat()})")
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            figures = await return_visit_headline(conn, since, until, _rules(request).satisfied_score)
        return figures | {"from": since, "to": until}

    return r


def _at_risk(row: dict[str, Any], now: datetime, rules: FollowUpRules) -> AtRisk | None:
    """The at-risk rules on one customer's row: each vehicle's next service as the maintenance
    reminder estimates it (by date or by km, whichever first)."""
    def moment(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    due = []
    for v in row["vehicles"] or []:
        last_visit, first_at = moment(v["last_visit_at"]), moment(v["first_reading_at"])
        if last_visit is None or v["last_mileage_km"] is None:
            continue
        history = [(first_at, v["first_reading_km"])] if first_at and v["first_reading_km"] is not None else []
        due.append(maintenance_due(last_visit, v["last_mileage_km"], moment(v["next_service_due_at"]),
                                   v["next_service_due_km"], history, rules).estimated_due_at)
    return at_risk(row["customer_id"], row["last_contact_at"], list(row["visits"] or []), due, now, rules)


def _conversation_followup(f: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**{k: f[k] for k in ("followup_id", "kind", "vin", "dealer_id", "region", "campaign_id", "complaint_id",
                                 "due_from", "due_by", "priority", "attempts", "status", "next_attempt_at",
                                 "claimed_by", "reason_type")},
            "overdue": f["due_by"] < now, "due_now": f["due_from"] <= now, "attempts_made": f["attempts_made"]}


def figures_with_rates(f: dict[str, Any]) -> dict[str, Any]:
    """Rates beside the counts they come from (None when there is nothing to divide)."""
    return f | {
        "warranty_return_visit_rate": f["warranty_visited"] / f["warranty_pickups"] if f["warranty_pickups"] else None,
        "satisfaction_rate": f["satisfied_calls"] / f["scored_calls"] if f["scored_calls"] else None,
        "targets": {"warranty_return_visit_rate": 1.0, "satisfaction_rate": 0.98},
    }
