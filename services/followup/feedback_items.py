"""Feedback items (customer concerns), the application side: opened by a reached call (the
agent's `record_attempt`), answered through the API by the owner or a supervisor, escalated by a
deadline on the row, confirmed by the `feedback_confirmation` call. Load → `feedback` rules →
save + publish, like the rest of follow-up; every step is a FeedbackItem* event on
aftersales.followup (the notifier mails the department and the supervisor and texts the
customer from its rule table; complaints opens a case from the ComplaintFiled of a serious one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson
from pydantic import BaseModel, Field

from services.followup import store
from services.followup.config import FollowUpDeps, FollowUpRules
from services.followup.domain import NewFollowUp, calling_days, followup_id
from services.followup.feedback import (
    FeedbackRefused,
    Item,
    answer_call_window,
    confirmation_window,
    escalate_at,
    item_id,
    opening,
)
from services.followup.handlers import RowCause, schedule
from shared.api import Sort, keyset
from shared.bulk import Table
from shared.events import canonical as c
from shared.events.types import ComplaintCategory
from shared.uow import UnitOfWork
from shared.workcal import WorkingCalendar

Uow = UnitOfWork[FollowUpDeps]

FEEDBACK_ITEMS = Table("feedback_items", {
    "item_id": "text", "followup_id": "text", "attempt_no": "int", "customer_id": "text", "vin": "text",
    "dealer_id": "text", "region": "text", "timezone": "text", "owner": "text", "department": "text",
    "reasons": "text[]", "satisfaction": "int", "requests": "text", "category": "text", "serious": "boolean",
    "complaint_ref": "text", "state": "text", "closed_as": "text", "opened_at": "timestamptz",
    "due_at": "timestamptz", "escalated_at": "timestamptz", "answered_at": "timestamptz", "answered_by": "text",
    "answered_in_time": "boolean", "solution": "text", "told_by": "text", "confirmation_followup_id": "text",
    "closed_at": "timestamptz", "history": "jsonb", "correlation_id": "uuid", "cause_event_id": "uuid",
})
_STEP_COLUMNS = ("state", "closed_as", "due_at", "escalated_at", "answered_at", "answered_by", "answered_in_time",
                 "solution", "told_by", "confirmation_followup_id", "closed_at", "history")


class FeedbackIn(BaseModel):
    """What the agent says about the customer's concern on the call (all optional: a score at or
    below the threshold, or a request, opens an item anyway)."""

    answered_on_call: bool = Field(False, description="the agent answered it on the call: the item closes at once")
    answer: str | None = Field(None, max_length=4000, description="the answer given on the call")
    serious: bool = Field(False, description="serious: it becomes a complaint case (a score of 1 always is)")
    category: ComplaintCategory | None = Field(None, description="what it is about; picks the department")
    department: str | None = Field(None, min_length=1, max_length=100,
                                   description="the responsible department, when not the category's")


class SolutionIn(BaseModel):
    solution: str = Field(min_length=1, max_length=4000, description="the solution the customer is told")
    tell_by: Literal["sms", "call"] | None = Field(
        None, description="sms: the notifier texts the customer today; call: a call task due today (a customer "
                          "without a mobile number, or who asked to be called); unset: sms, or a call when the "
                          "phone on the customer's file is flagged as unusable")


@dataclass(frozen=True)
class Call:
    """The call an item comes from, as `record_attempt` knows it."""

    followup: dict[str, Any]
    agent: str
    attempt_no: int
    attempt_id: str
    satisfaction: int | None
    requests: str | None
    talking_points: str | None
    cause: Any  # the call's cause (event_id, correlation_id)


def calendar_for(region: str | None, rules: FollowUpRules) -> WorkingCalendar | None:
    """The working calendar the item's deadline runs on (its region's), or None: around the clock."""
    return WorkingCalendar.load(region) if rules.feedback_deadline_clock == "working" else None


def _item(row: dict[str, Any]) -> Item:
    history = row["history"]
    return Item(item_id=row["item_id"], state=row["state"], owner=row["owner"], opened_at=row["opened_at"],
                due_at=row["due_at"], answered_at=row["answered_at"], closed_as=row["closed_as"],
                history=orjson.loads(history) if isinstance(history, str) else list(history))


def _cause(row: dict[str, Any], step: str) -> RowCause:
    return RowCause(row["cause_event_id"], row["correlation_id"], f"feedback:{row['item_id']}:{step}")


def _base(row: dict[str, Any], at: datetime, actor: str) -> dict[str, Any]:
    return {"item_id": row["item_id"], "customer_id": row["customer_id"], "at": at, "state": row["state"],
            "owner": row["owner"], "department": row["department"], "followup_id": row["followup_id"],
            "vin": row["vin"], "dealer_id": row["dealer_id"], "region": row["region"], "actor": actor}


async def _save(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    await FEEDBACK_ITEMS.update(conn, rows, key=("item_id",), columns=_STEP_COLUMNS)


def _with(row: dict[str, Any], item: Item, **more: Any) -> dict[str, Any]:
    return row | {"state": item.state, "closed_as": item.closed_as, "due_at": item.due_at,
                  "answered_at": item.answered_at, "history": orjson.dumps(item.history).decode()} | more


# -- opened by a call ------------------------------------------------------------------------------
async def open_from_call(uow: Uow, call: Call, feedback: FeedbackIn | None,
                         complaint_refs: list[str]) -> dict[str, Any] | None:
    """A reached call scored at or below the threshold, or with a request, opens an item owned by
    the agent: answered on the call it closes at once; serious, it becomes a complaint case (the
    complaint raised on the call, or a ComplaintFiled of its own); otherwise the supervisor is
    asked if it is not answered within 2 days. Returns the item, or None."""
    r, now, f = uow.deps.rules, uow.now(), call.followup
    fb = feedback or FeedbackIn()
    found = opening(f["kind"], call.satisfaction, call.requests, category=fb.category, serious_flag=fb.serious,
                    answered_on_call=fb.answered_on_call, department=fb.department, rules=r)
    if found is None:
        return None
    ident = item_id(call.attempt_id)
    item = Item(ident, "open", call.agent, now, escalate_at(now, r, calendar_for(f["region"], r)))
    item.note(now, "opened", call.agent, reasons=",".join(found.reasons))
    complaint_ref = None
    if found.serious:
        complaint_ref = complaint_refs[0] if complaint_refs else f"FI-{ident[:8]}"
        if not complaint_refs:  # no complaint raised on the call: the item files one (the existing path)
            uow.publish("ComplaintFiled", c.ComplaintFiled(
                complaint_ref=complaint_ref, customer_id=f["customer_id"], channel="return_visit",
                description=call.requests or call.talking_points or f"score {call.satisfaction} on a return visit",
                filed_at=now, vin=f["vin"], category=fb.category, severity="high", followup_id=f["followup_id"],
                dealer_id=f["dealer_id"], region=f["region"],
            ), cause=call.cause, occurred_at=now, discriminator=complaint_ref)
        item.close_at_once(now, call.agent, "complaint")
    elif found.answered_on_call:
        item.close_at_once(now, call.agent, "answered_on_call")
    row = {
        "item_id": ident, "followup_id": f["followup_id"], "attempt_no": call.attempt_no,
        "customer_id": f["customer_id"], "vin": f["vin"], "dealer_id": f["dealer_id"], "region": f["region"],
        "timezone": f["timezone"], "owner": call.agent, "department": found.department, "reasons": found.reasons,
        "satisfaction": call.satisfaction, "requests": call.requests, "category": fb.category,
        "serious": found.serious, "complaint_ref": complaint_ref, "state": item.state, "closed_as": item.closed_as,
        "opened_at": now, "due_at": item.due_at, "escalated_at": None,
        "answered_at": now if found.answered_on_call and not found.serious else None,
        "answered_by": call.agent if item.closed_as == "answered_on_call" else None,
        "answered_in_time": True if item.closed_as == "answered_on_call" else None,
        "solution": fb.answer if item.closed_as == "answered_on_call" else None,
        "told_by": "on_call" if item.closed_as == "answered_on_call" else None, "confirmation_followup_id": None,
        "closed_at": now if item.state == "closed" else None, "history": orjson.dumps(item.history).decode(),
        "correlation_id": call.cause.correlation_id, "cause_event_id": call.cause.event_id,
    }
    if not await FEEDBACK_ITEMS.insert(uow.conn, [row], on_conflict="(item_id) DO NOTHING", returning="item_id"):
        return None  # this call's item exists already
    opened_row = row | {"state": "open"}
    uow.publish("FeedbackItemOpened", c.FeedbackItemOpened(
        **_base(opened_row, now, call.agent), reasons=found.reasons, attempt_no=call.attempt_no,
        due_at=item.due_at, satisfaction=call.satisfaction, requests=call.requests,
        talking_points=call.talking_points, category=fb.category, serious=found.serious,
        answered_on_call=item.closed_as == "answered_on_call", complaint_ref=complaint_ref,
    ), cause=_cause(row, "opened"), occurred_at=now)
    if item.closed_as == "answered_on_call":
        uow.publish("FeedbackItemAnswered", c.FeedbackItemAnswered(
            **_base(row | {"state": "answered"}, now, call.agent), solution=fb.answer or "answered on the call",
            told_by="on_call", in_time=True, opened_at=now,
        ), cause=_cause(row, "answered"), occurred_at=now)
    if item.closed_as is not None:
        uow.publish("FeedbackItemClosed", c.FeedbackItemClosed(
            **_base(row, now, call.agent), closed_as=item.closed_as, complaint_ref=complaint_ref,
        ), cause=_cause(row, "closed"), occurred_at=now)
    return row


# -- answered: the owner or a supervisor records the solution ------------------------------------------
async def get(conn: asyncpg.Connection, ident: str, *, lock: bool = False) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT * FROM feedback_items WHERE item_id = $1{' FOR UPDATE' if lock else ''}", ident)
    return dict(row) if row else None


async def record_solution(uow: Uow, ident: str, who: str, supervisor: bool, body: SolutionIn) -> dict[str, Any]:
    """The customer is told the same day (the notifier's SMS, or a call task due today) and a
    confirmation call is scheduled a few days later."""
    r, now = uow.deps.rules, uow.now()
    row = await get(uow.conn, ident, lock=True)
    if row is None:
        raise FeedbackRefused(404, f"no feedback item {ident!r}")
    item = _item(row)
    opened_at = row["opened_at"]
    in_time = item.answer(now, who, supervisor=supervisor)
    tell_by = body.tell_by or await _how_to_tell(uow.conn, row["customer_id"])
    round_ = sum(1 for h in item.history if h["action"] == "answered")
    confirm_id = followup_id("feedback_confirmation", f"{ident}:{round_}")
    answer_id = followup_id("feedback_answer", f"{ident}:{round_}") if tell_by == "call" else None
    saved = _with(row, item, answered_by=who, answered_in_time=in_time, solution=body.solution,
                  told_by=tell_by, confirmation_followup_id=confirm_id)
    await _save(uow.conn, [saved])
    answered = uow.publish("FeedbackItemAnswered", c.FeedbackItemAnswered(
        **_base(saved, now, who), solution=body.solution, told_by=tell_by, in_time=in_time,
        opened_at=opened_at, confirmation_followup_id=confirm_id, answer_followup_id=answer_id,
    ), cause=_cause(row, f"answered:{round_}"), occurred_at=now)
    calls = [(confirm_id, "feedback_confirmation", confirmation_window(now, r), r.priority_feedback_confirmation)]
    if answer_id is not None:  # told on a call due today, not by SMS
        days = calling_days(row["region"], r, uow.deps.calendars)
        calls.insert(0, (answer_id, "feedback_answer", answer_call_window(now, row["timezone"], r, days),
                         r.priority_feedback_answer))
    await schedule(uow, [(answered, NewFollowUp(
        followup_id=fid, kind=kind, customer_id=row["customer_id"], vin=row["vin"],  # type: ignore[arg-type]
        dealer_id=row["dealer_id"], region=row["region"], reason_event_id=str(answered.event_id),
        due_from=window.due_from, due_by=window.due_by, priority=prio, timezone=row["timezone"], event_at=now,
    )) for fid, kind, window, prio in calls])
    return public(saved)


async def _how_to_tell(conn: asyncpg.Connection, customer_id: str) -> Literal["sms", "call"]:
    """By SMS, unless the phone on the customer's file failed its check (intake flagged it): then an
    agent calls (and corrects the number first), since a text would not arrive today."""
    flags = (await store.contact_flags_of(conn, [customer_id])).get(customer_id) or {}
    if isinstance(flags, str):
        flags = orjson.loads(flags)
    return "call" if "phone" in flags else "sms"


# -- the confirmation call -------------------------------------------------------------------------------
async def after_confirmation(uow: Uow, f: dict[str, Any], agent: str, outcome: str,
                             satisfied: bool | None) -> dict[str, Any] | None:
    """The confirmation call completed: satisfied (or unreachable) closes the item; not satisfied
    reopens it with a new 2-day deadline."""
    if f["kind"] != "feedback_confirmation":
        return None
    row = await uow.conn.fetchrow("SELECT * FROM feedback_items WHERE confirmation_followup_id = $1 FOR UPDATE",
                                  f["followup_id"])
    if row is None:
        uow.log.warning("a feedback confirmation call names no item", followup_id=f["followup_id"])
        return None
    row = dict(row)
    now = uow.now()
    item = _item(row)
    if item.state != "answered":
        return None  # answered again since; this confirmation is for an earlier round
    closed_as = item.confirm(now, agent, satisfied, outcome == "reached", uow.deps.rules,
                             calendar_for(row["region"], uow.deps.rules))
    saved = _with(row, item, closed_at=now if closed_as else None)
    await _save(uow.conn, [saved])
    step = f"confirmation:{f['followup_id']}"
    if closed_as is None:
        uow.publish("FeedbackItemReopened", c.FeedbackItemReopened(
            **_base(saved, now, agent), reason="not satisfied with the solution on the confirmation call",
            due_at=item.due_at,  # type: ignore[arg-type]
        ), cause=_cause(row, step), occurred_at=now)
    else:
        uow.publish("FeedbackItemClosed", c.FeedbackItemClosed(
            **_base(saved, now, agent), closed_as=closed_as, satisfied=satisfied,
        ), cause=_cause(row, step), occurred_at=now)
    return saved


# -- the escalation deadline on the row ------------------------------------------------------------------
@dataclass(frozen=True)
class DueItem:
    item_id: str
    due_at: datetime


@dataclass
class FeedbackEscalations:
    """Not answered within 2 days: escalated to the business supervisor (the notifier mails them)."""

    name: str = "feedback.escalate"

    async def claim(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueItem]:
        rows = await conn.fetch(
            """SELECT item_id, due_at FROM feedback_items WHERE state = 'open' AND due_at <= $1
                ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""", now, limit)
        return [DueItem(r["item_id"], r["due_at"]) for r in rows]

    async def fire(self, uow: Uow, due: list[DueItem]) -> None:
        r, now = uow.deps.rules, uow.now()
        rows = await uow.conn.fetch("SELECT * FROM feedback_items WHERE item_id = ANY($1::text[])",
                                    [d.item_id for d in due])
        saved = []
        for record in rows:
            row = dict(record)
            item = _item(row)
            deadline = row["due_at"]
            if not item.escalate(now, r.feedback_escalate_to):
                continue
            changed = _with(row, item, escalated_at=now)
            changed["due_at"] = None
            saved.append(changed)
            uow.publish("FeedbackItemEscalated", c.FeedbackItemEscalated(
                **_base(changed, now, "system"), escalated_to=r.feedback_escalate_to, due_at=deadline,
                opened_at=row["opened_at"], requests=row["requests"], satisfaction=row["satisfaction"],
            ), cause=_cause(row, f"escalated:{deadline.isoformat()}"), occurred_at=now)
        await _save(uow.conn, saved)

    async def park(self, conn: asyncpg.Connection, row: DueItem, error: str) -> None:
        await conn.execute("UPDATE feedback_items SET due_at = NULL WHERE item_id = $1", row.item_id)

    async def backlog(self, conn: asyncpg.Connection, now: datetime) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM feedback_items WHERE state = 'open' AND due_at <= $1",
                                       now))


DEADLINES = (FeedbackEscalations(),)


# -- reading -----------------------------------------------------------------------------------------
def public(row: dict[str, Any]) -> dict[str, Any]:
    """An item as the API shows it."""
    history = row["history"]
    shown = {k: v for k, v in row.items() if k not in ("history", "correlation_id", "cause_event_id")}
    return shown | {"history": orjson.loads(history) if isinstance(history, str) else history}


async def listing(conn: asyncpg.Connection, *, owner: str | None, state: str | None, department: str | None,
                  customer: str | None, sort: Sort, cursor: dict[str, Any] | None, limit: int) -> list[dict[str, Any]]:
    """Items in `sort` order after `cursor` (shared.api.keyset)."""
    page = keyset(sort, "item_id", cursor, 6)
    rows = await conn.fetch(
        """SELECT * FROM feedback_items
            WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR state = $2)
              AND ($3::text IS NULL OR department = $3) AND ($4::text IS NULL OR customer_id = $4)"""
        + f" AND {page.where} ORDER BY {page.order_by} LIMIT $5", owner, state, department, customer, limit,
        *page.params)
    return [public(dict(r)) for r in rows]


async def unanswered(conn: asyncpg.Connection) -> dict[str, int]:
    """How many items wait for a solution now, by state (open, escalated)."""
    rows = await conn.fetch("""SELECT state, count(*) AS n FROM feedback_items
                                WHERE state IN ('open', 'escalated') GROUP BY state""")
    return {"open": 0, "escalated": 0} | {r["state"]: r["n"] for r in rows}


async def figures(conn: asyncpg.Connection, since: datetime, until: datetime) -> dict[str, Any]:
    """Items opened in [since, until): how many, why, answered in time, escalated, still open,
    serious ones handed to complaints, and the written notices the departments were sent (one
    per item that is not a complaint case: the notifier's rule feedback_item_department_notice)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS opened,
                  count(*) FILTER (WHERE 'low_score' = ANY(reasons)) AS low_score,
                  count(*) FILTER (WHERE 'request' = ANY(reasons)) AS with_request,
                  count(*) FILTER (WHERE closed_as = 'answered_on_call') AS answered_on_call,
                  count(*) FILTER (WHERE answered_in_time) AS answered_in_time,
                  count(*) FILTER (WHERE answered_at IS NOT NULL AND NOT answered_in_time) AS answered_late,
                  count(*) FILTER (WHERE escalated_at IS NOT NULL) AS escalated,
                  count(*) FILTER (WHERE state IN ('open', 'escalated')) AS still_open,
                  count(*) FILTER (WHERE closed_as = 'confirmed') AS confirmed,
                  count(*) FILTER (WHERE serious) AS complaints,
                  count(*) FILTER (WHERE NOT serious) AS departments_notified
             FROM feedback_items WHERE opened_at >= $1 AND opened_at < $2""", since, until)
    by_department = await conn.fetch(
        """SELECT department, count(*) AS n FROM feedback_items
            WHERE opened_at >= $1 AND opened_at < $2 AND NOT serious GROUP BY department ORDER BY department""",
        since, until)
    out = dict(row)
    answered = out["answered_in_time"] + out["answered_late"]
    return out | {"answered_in_time_rate": out["answered_in_time"] / answered if answered else None,
                  "by_department": {r["department"]: r["n"] for r in by_department}}


__all__ = ["DEADLINES", "FEEDBACK_ITEMS", "Call", "FeedbackIn", "FeedbackRefused", "SolutionIn", "after_confirmation",
           "figures", "get", "listing", "open_from_call", "public", "record_solution"]
