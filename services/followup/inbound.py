"""Inbound calls: a customer phones the department (a consultation, a complaint, a request) and
the agent who takes it records it on the phone register. A consultation schedules the first
tracking call, as a CRM consultation does; a complaint nobody has filed yet becomes a
ComplaintFiled (the complaints service opens the case). One transaction: the register row, the
follow-up and the events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.followup import store
from services.followup.commands import CallRefused
from services.followup.config import FollowUpDeps
from services.followup.domain import NewFollowUp, consultation_window, followup_id
from services.followup.handlers import schedule
from services.followup.store import Projections
from shared.events import canonical as c
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.types import ComplaintCategory
from shared.http import Moment
from shared.uow import UnitOfWork

Uow = UnitOfWork[FollowUpDeps]
InboundKind = Literal["consultation", "complaint", "request", "other"]


class InboundCallIn(BaseModel):
    """A call the customer made, as the agent who took it records it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^[^\s]+$")
    kind: InboundKind
    summary: str = Field(min_length=1, max_length=4000, description="what the customer wanted, in a sentence or two")
    received_at: Moment | None = Field(None, description="when the call came in (default: now)")
    vin: str | None = Field(None, min_length=17, max_length=17)
    region: str | None = Field(None, max_length=200, description="the customer's region, if follow-up does not know it")
    complaint_id: str | None = Field(None, max_length=64,
                                     description="the case already filed for this call (else a complaint call files one)")
    category: ComplaintCategory | None = Field(None, description="a complaint's category, when it files one")


@dataclass(frozen=True)
class _Cause:
    """An inbound call starts its own chain: its id is the cause and the correlation of what it causes."""

    event_id: uuid.UUID
    correlation_id: uuid.UUID


def call_id_for(agent: str, idempotency_key: str | None) -> str:
    """The same Idempotency-Key from the same agent names the same call: a retried POST records it once."""
    if idempotency_key:
        return str(uuid5(AFTERSALES_NAMESPACE, f"inbound-call:{agent}:{idempotency_key}"))
    return str(uuid.uuid4())


async def record_inbound_call(uow: Uow, agent: str, body: InboundCallIn, idempotency_key: str | None) -> dict[str, Any]:
    r, now = uow.deps.rules, uow.now()
    at = body.received_at or now
    if at > now:
        raise CallRefused(422, f"received_at {at.isoformat()} is in the future (now {now.isoformat()})")
    call_id = call_id_for(agent, idempotency_key)
    existing = await store.inbound_call(uow.conn, call_id)
    if existing is not None:
        return _view(existing) | {"duplicate": True, "events": []}
    files = uow.batch(Projections)
    await files.load(customers=[body.customer_id])
    customer = files.customer(body.customer_id)  # follow-up's view of the file, opened if it had none
    if customer.updated_at is None:
        customer.updated_at, customer.region = at, body.region
    cause_id = uuid5(AFTERSALES_NAMESPACE, f"inbound-call:{call_id}")
    cause = _Cause(cause_id, cause_id)
    scheduled = None
    if body.kind == "consultation":
        window = consultation_window(at, r)
        scheduled = followup_id("first_visit", f"inbound:{call_id}")
        await schedule(uow, [(cause, NewFollowUp(
            followup_id=scheduled, kind="first_visit", customer_id=body.customer_id, vin=body.vin,
            region=customer.region, reason_event_id=str(cause_id), due_from=window.due_from, due_by=window.due_by,
            priority=r.priority_first_visit, timezone=customer.timezone, under_warranty=False, event_at=at,
            reason_type="InboundCallRecorded",
        ))])
    complaint_ref = None
    if body.kind == "complaint" and body.complaint_id is None:
        complaint_ref = f"IC-{call_id[:8]}"
        uow.publish("ComplaintFiled", c.ComplaintFiled(
            complaint_ref=complaint_ref, customer_id=body.customer_id, channel="hotline", description=body.summary,
            filed_at=at, vin=body.vin, category=body.category, region=customer.region,
            dealer_id=await store.complaint_dealer(uow.conn, body.customer_id, body.vin, at),  # the scorecards'
        ), cause=cause, occurred_at=at)
    row = {"call_id": call_id, "customer_id": body.customer_id, "kind": body.kind, "summary": body.summary,
           "handled_by": agent, "received_at": at, "vin": body.vin, "complaint_id": body.complaint_id,
           "followup_id": scheduled, "region": customer.region, "recorded_at": now}
    await store.record_inbound_call(uow.conn, row)
    uow.publish("InboundCallRecorded", c.InboundCallRecorded(
        call_id=call_id, customer_id=body.customer_id, kind=body.kind, summary=body.summary, handled_by=agent,
        received_at=at, vin=body.vin, complaint_id=body.complaint_id, followup_id=scheduled,
    ), cause=cause, occurred_at=at)
    return _view(row) | {"duplicate": False, "complaint_ref": complaint_ref,
                         "events": [e.event_type for e in uow.published]}


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("call_id", "customer_id", "kind", "summary", "handled_by", "received_at", "vin",
                                "complaint_id", "followup_id")}
