"""Follow-up's HTTP routes for the customer-service agents ("tracking salesmen") and supervisors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request

from services.followup import commands as calls
from services.followup import conversation, inbound, owners, store
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
from services.followup.feedback_api import feedback_router
from services.followup.owners_api import owners_router
from services.followup.weekly import department_part
from services.followup.weekly import headline as return_visit_headline
from shared import metrics
from shared.db import acquire
from shared.http import Principal, check_moments, check_paging, outside_scope, require, runtime_of
from shared.timeutil import add_months


def _rules(request: Request) -> FollowUpRules:
    rules: FollowUpRules = runtime_of(request).deps.rules
    return rules


async def _tiers(conn: Any, customer_ids: list[str], now: datetime, r: FollowUpRules) -> dict[str, str]:
    stats = await store.loyalty_stats(conn, customer_ids, add_months(now, -r.loyalty_window_months))
    return {cid: loyalty_tier(*stats.get(cid, (0, None, 0)), r) for cid in customer_ids}


async def _hold_to_scope(request: Request, who: Principal, *, customer_id: str | None = None,
                         followup_id: str | None = None) -> None:
    """403 when a scoped agent asks for a follow-up or a customer outside their regions and dealers
    (store.CUSTOMER_IN_SCOPE; docs/security.md). Nothing to check for anyone else; an unknown
    follow-up is left to the route (404)."""
    if not who.scoped:
        return
    runtime = runtime_of(request)
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        what = f"customer {customer_id}"
        if followup_id is not None:
            f = await store.get_followup(conn, followup_id)
            if f is None:
                return
            customer_id, what = f["customer_id"], f"follow-up {followup_id} (customer {f['customer_id']})"
        if not await store.customers_in_scope(conn, [customer_id or ""], *who.scope_params()):
            raise outside_scope(who, what)


def _refused(exc: calls.CallRefused) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def router() -> APIRouter:
    r = APIRouter(tags=["return visits"])
    r.include_router(feedback_router())
    r.include_router(owners_router())

    @r.get("/v1/queue", summary="What can be called now: overdue first, then loyalty tier, then due_by")
    async def queue(
        request: Request, kind: str | None = None, region: str | None = None, dealer: str | None = None,
        limit: int = Query(50, ge=1, le=500), who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        runtime = runtime_of(request)
        rules = _rules(request)
        now = runtime.clock.now()
        regions, dealers = who.scope_params()  # a scoped agent's queue: their customers only
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            # candidates in due order (overdue first); the loyalty ordering happens below
            candidates = await store.queue_candidates(
                conn, now, rules.calling_hours_start, rules.calling_hours_end, kind=kind, region=region,
                dealer=dealer, agent=who.subject, limit=max(limit * 10, 500), regions=regions, dealers=dealers)
            # calling hours hold on the calling days of the customer's region only (no holidays)
            deps = runtime_of(request).deps
            candidates = [c for c in candidates if in_calling_hours(
                now, c["timezone"], rules, calling_days(c["region"], rules, deps.calendars))]
            tiers = await _tiers(conn, list({c["customer_id"] for c in candidates}), now, rules)
            flags = await store.contact_flags_of(conn, tiers)
            # one conversation per customer: their other follow-ups due in the same days, their claims
            open_rows = await store.open_followups_of(conn, tiers)
        # the calling agent's own calls first (owners.py), then the queue's order
        ordered = sorted(candidates, key=lambda c: (not owners.mine(who.subject, c["owner"], c["assigned_to"]),
                                                    queue_order(c["due_by"] < now, tiers[c["customer_id"]],
                                                                c["due_by"], c["priority"])))
        # a customer another agent is calling (a claim on any of their follow-ups) is not offered
        ordered = [c for c in ordered
                   if conversation.held_by_another(open_rows.get(c["customer_id"], []), who.subject, now) is None]
        talks = conversation.group_queue(ordered, open_rows, now, rules.conversation_days, who.subject)

        owner_of = {c["customer_id"]: c["owner"] for c in candidates}  # owners.py: the customers' owners

        def item(c: dict[str, Any]) -> dict[str, Any]:
            return {**{k: c.get(k) for k in ("followup_id", "kind", "customer_id", "vin", "dealer_id", "region",
                                             "campaign_id", "complaint_id", "due_from", "due_by", "priority",
                                             "attempts", "claimed_by", "reason_type")},
                    "overdue": c["due_by"] < now, "loyalty_tier": tiers[c["customer_id"]],
                    "contact_flags": flags.get(c["customer_id"], {}),
                    # owners.py: the customer's tracking owner, the agent a supervisor assigned the call to
                    "owner": owner_of.get(c["customer_id"]), "assigned_to": c.get("assigned_to"),
                    "mine": owners.mine(who.subject, owner_of.get(c["customer_id"]), c.get("assigned_to"))}

        callable_ids = {c["followup_id"] for c in ordered}
        return {"now": now, "items": [item(c) for c in ordered[:limit]], "conversations": [
            {"customer_id": t.customer_id, "claimed_by": t.claimed_by, "claim_expires_at": t.claim_expires_at,
             "call_id": t.call_id, "loyalty_tier": tiers[t.customer_id],
             "overdue": any(f["due_by"] < now for f in t.followups),
             # due_now: its window has started (else brought forward); callable_now: not waiting for a retry
             "followups": [item(f) | {"due_now": f["due_from"] <= now, "callable_now": f["followup_id"] in callable_ids}
                           for f in t.followups]}
            for t in talks[:limit]]}

    @r.get("/v1/followups", summary="Follow-ups by customer, status or kind")
    async def list_followups(
        request: Request, customer: str | None = None, status: str | None = None, kind: str | None = None,
        page: int = Query(1, ge=1), page_size: int = Query(50, ge=1, le=200),
        who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        check_paging(page=page)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            regions, dealers = who.scope_params()  # a scoped agent lists their customers' only
            rows = await store.followups_of(conn, customer=customer, status=status, kind=kind, limit=page_size,
                                            offset=(page - 1) * page_size, regions=regions, dealers=dealers)
        return {"page": page, "page_size": page_size, "followups": rows}

    @r.get("/v1/followups/{followup_id}", summary="A follow-up with its call attempts and the customer's loyalty tier")
    async def get_followup(request: Request, followup_id: str,
                           who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await _hold_to_scope(request, who, followup_id=followup_id)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            f = await store.get_followup(conn, followup_id)
            if f is None:
                raise HTTPException(404, f"no follow-up {followup_id!r}")
            attempts = await store.attempts_of(conn, followup_id)
            tier = (await _tiers(conn, [f["customer_id"]], runtime.clock.now(), _rules(request)))[f["customer_id"]]
            flags = (await store.contact_flags_of(conn, [f["customer_id"]])).get(f["customer_id"], {})
        return {**f, "loyalty_tier": tier, "attempts": attempts, "contact_flags": flags}

    @r.post("/v1/followups/{followup_id}/claim",
            summary="Take a follow-up to call it; no other agent can call the customer until the claim expires")
    async def claim(request: Request, followup_id: str, who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await _hold_to_scope(request, who, followup_id=followup_id)
        try:
            async with runtime_of(request).transaction() as uow:
                f = await calls.claim(uow, followup_id, who.subject, supervisor=who.role == "supervisor")
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return {"followup_id": followup_id, "claimed_by": f["claimed_by"], "claim_expires_at": f["claim_expires_at"]}

    @r.post("/v1/followups/{followup_id}/release", summary="Give a claimed follow-up back to the queue")
    async def release(request: Request, followup_id: str,
                      who: Principal = require("agent", "supervisor")) -> dict[str, str]:
        await _hold_to_scope(request, who, followup_id=followup_id)
        try:
            async with runtime_of(request).transaction() as uow:
                await calls.release(uow, followup_id, who.subject, supervisor=who.role == "supervisor")
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return {"followup_id": followup_id, "status": "released"}

    @r.post("/v1/followups/{followup_id}/attempts", status_code=201,
            summary="Record a call: outcome, satisfaction, talking points, requests, a complaint or product issue")
    async def record_attempt(request: Request, followup_id: str, body: calls.AttemptIn,
                             who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await _hold_to_scope(request, who, followup_id=followup_id)
        try:
            async with runtime_of(request).transaction() as uow:
                recorded = await calls.record_attempt(uow, followup_id, who.subject, body)
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        if recorded["lost_reason"] is not None:  # counted once the call is stored
            metrics.LOST_CUSTOMER_REASONS.labels(recorded["lost_reason"]).inc()
        return recorded

    @r.get("/v1/customers/{customer_id}/conversation",
           summary="The customer's conversation: their follow-ups worked on one call, who holds it, their earlier calls")
    async def get_conversation(request: Request, customer_id: str,
                               who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        """The open follow-ups due in the same days (docs/followup.md "One conversation per
        customer"), each with its attempts, and the customer's history: earlier calls on any
        follow-up (talking points, requests, notes) and feedback items not closed yet."""
        await _hold_to_scope(request, who, customer_id=customer_id)
        runtime = runtime_of(request)
        rules = _rules(request)
        now = runtime.clock.now()
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            rows = (await store.open_followups_of(conn, [customer_id])).get(customer_id, [])
            talk = conversation.conversation_of(customer_id, rows, now, rules.conversation_days)
            for f in talk.followups:
                f["attempts_made"] = await store.attempts_of(conn, f["followup_id"])
            history = await store.customer_history(conn, customer_id, limit=100)
            tier = (await _tiers(conn, [customer_id], now, rules))[customer_id]
            flags = (await store.contact_flags_of(conn, [customer_id])).get(customer_id, {})
        return {"now": now, "customer_id": customer_id, "claimed_by": talk.claimed_by,
                "claim_expires_at": talk.claim_expires_at, "call_id": talk.call_id,
                "conversation_days": rules.conversation_days, "loyalty_tier": tier, "contact_flags": flags,
                "followups": [_conversation_followup(f, now) for f in talk.followups], **history}

    @r.get("/v1/customers/{customer_id}/calls",
           summary="The customer's previous calls on every follow-up and their open feedback items")
    async def customer_calls(request: Request, customer_id: str, limit: int = Query(100, ge=1, le=500),
                             who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await _hold_to_scope(request, who, customer_id=customer_id)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            history = await store.customer_history(conn, customer_id, limit=limit)
        return {"customer_id": customer_id, **history}

    @r.post("/v1/customers/{customer_id}/conversation/claim",
            summary="Take all the customer's follow-ups due in the same days to call them once (one claim)")
    async def claim_conversation(request: Request, customer_id: str,
                                 who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await _hold_to_scope(request, who, customer_id=customer_id)
        try:
            async with runtime_of(request).transaction() as uow:
                taken = await calls.claim_conversation(uow, customer_id, who.subject,
                                                       supervisor=who.role == "supervisor")
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return taken | {"followups": [{k: f[k] for k in ("followup_id", "kind", "due_from", "due_by")}
                                      for f in taken["followups"]]}

    @r.post("/v1/customers/{customer_id}/conversation/release",
            summary="Give the customer's claimed follow-ups back to the queue")
    async def release_conversation(request: Request, customer_id: str,
                                   who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        await _hold_to_scope(request, who, customer_id=customer_id)
        try:
            async with runtime_of(request).transaction() as uow:
                released = await calls.release_conversation(uow, customer_id, who.subject,
                                                            supervisor=who.role == "supervisor")
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        return {"customer_id": customer_id, "released": released}

    @r.post("/v1/customers/{customer_id}/calls", status_code=201,
            summary="Record one call to the customer with each follow-up's outcome (the conversation's record)")
    async def record_call(request: Request, customer_id: str, body: calls.ConversationCallIn,
                          who: Principal = require("agent", "supervisor")) -> dict[str, Any]:
        """Each follow-up gets its attempt (FollowUpAttemptRecorded, and FollowUpCompleted when it
        completes, each with the call's `call_id`); every follow-up of the claim needs an outcome;
        a refused outcome stores nothing."""
        await _hold_to_scope(request, who, customer_id=customer_id)
        try:
            async with runtime_of(request).transaction() as uow:
                recorded = await calls.record_call(uow, customer_id, who.subject, body)
        except calls.CallRefused as exc:
            raise _refused(exc) from None
        for f in recorded["followups"]:  # counted once the call is stored
            if f["lost_reason"] is not None:
                metrics.LOST_CUSTOMER_REASONS.labels(f["lost_reason"]).inc()
        return recorded

    @r.post("/v1/inbound-calls", status_code=201,
            summary="Record a call the customer made (consultation, complaint, request) with the person who took it")
    async def record_inbound_call(
        request: Request, body: inbound.InboundCallIn, who: Principal = require("agent", "supervisor"),
        idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
    ) -> dict[str, Any]:
        """A consultation schedules the first tracking call (3-7 days); a complaint with no
        `complaint_id` files one (ComplaintFiled, channel hotline). The same Idempotency-Key
        records the call once."""
        try:
            async with runtime_of(request).transaction() as uow:
                return await inbound.record_inbound_call(uow, who.subject, body, idempotency_key)
        except calls.CallRefused as exc:
            raise _refused(exc) from None

    @r.get("/v1/register/calls",
           summary="The phone register: every call made (attempts) and taken (inbound), by customer, agent and date")
    async def call_register(
        request: Request, customer: str | None = None, agent: str | None = None,
        since: datetime | None = Query(None, alias="from"), until: datetime | None = Query(None, alias="to"),
        direction: Literal["inbound", "outbound"] | None = None,
        page: int = Query(1, ge=1), page_size: int = Query(100, ge=1, le=500),
        who: Principal = require("agent", "supervisor", "ops"),
    ) -> dict[str, Any]:
        fetch = partial(store.call_register, direction=direction)
        return await _register(request, fetch, "calls", who, customer=customer, agent=agent, since=since,
                               until=until, page=page, page_size=page_size)

    @r.get("/v1/register/letters", summary="The letter register: every notice and invitation letter requested")
    async def letter_register(
        request: Request, customer: str | None = None, agent: str | None = None,
        since: datetime | None = Query(None, alias="from"), until: datetime | None = Query(None, alias="to"),
        page: int = Query(1, ge=1), page_size: int = Query(100, ge=1, le=500),
        who: Principal = require("agent", "supervisor", "ops"),
    ) -> dict[str, Any]:
        return await _register(request, store.letter_register, "letters", who, customer=customer, agent=agent,
                               since=since, until=until, page=page, page_size=page_size)

    @r.get("/v1/kpis", summary="Warranty return-visit rate, satisfaction rate, open and overdue follow-ups, calls per agent")
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

    @r.get("/v1/reports/lost-reasons",
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

    @r.get("/v1/customers/at-risk",
           summary="Customers at risk of being lost before the 12-month mark: overdue maintenance or falling visits")
    async def customers_at_risk(
        request: Request, region: str | None = None, dealer: str | None = None,
        limit: int = Query(100, ge=1, le=1000), who: Principal = require("agent", "supervisor"),
    ) -> dict[str, Any]:
        """Customers with a visit in the last 12 months and a sign of leaving (docs/followup.md):
        the nearest to their 12-month mark first."""
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
        found = [(row, risk) for row in rows if (risk := _at_risk(row, now, rules)) is not None]
        found.sort(key=lambda x: (x[1].lost_at, x[1].customer_id))
        return {"now": now, "total": len(found), "customers": [
            {"customer_id": risk.customer_id, "region": row["region"], "signs": risk.signs,
             "last_visit_at": risk.last_visit_at, "lost_at": risk.lost_at,
             "days_since_last_visit": risk.days_since_last_visit, "average_interval_days": risk.average_interval_days,
             "maintenance_due_at": risk.maintenance_due_at,
             "vehicles": sorted(v["vin"] for v in row["vehicles"] or [])}
            for row, risk in found[:limit]]}

    @r.get("/v1/reports/weekly", summary="The weekly written report (visits done and missed, satisfaction, feedback); "
                                         "a department person gets the headline and its own part only")
    async def weekly(request: Request, week: str,
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

    @r.get("/v1/reports/return-visits", summary="Return visits due and reached, satisfaction and dissatisfied "
                                                  "customers in a period (the weekly report's headline, any period)")
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


async def _register(request: Request, fetch: Callable[..., Awaitable[tuple[int, list[dict[str, Any]]]]], key: str,
                    who: Principal, *,
                    customer: str | None, agent: str | None, since: datetime | None, until: datetime | None,
                    page: int, page_size: int) -> dict[str, Any]:
    """One page of a register (calls or letters), filtered by customer, agent and dates; a scoped
    agent's holds their customers' rows only."""
    check_moments(**{"from": since, "to": until})
    check_paging(page=page)
    runtime = runtime_of(request)
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        regions, dealers = who.scope_params()
        total, rows = await fetch(conn, customer=customer, agent=agent, since=since, until=until,
                                  limit=page_size, offset=(page - 1) * page_size, regions=regions, dealers=dealers)
    return {"total": total, "page": page, "page_size": page_size, key: rows}
