"""The console's read model handlers: one per consumed event type, each handed every event of
its type in a poll. Thin: turn the events into rows, one store call per table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from services.console import scorecard_store, store
from services.console.config import ConsoleDeps
from services.console.search import pinyin, plate_key
from shared.events import Event
from shared.events import canonical as c
from shared.uow import UnitOfWork

Uow = UnitOfWork[ConsoleDeps]


def _plain(data: msgspec.Struct) -> dict[str, Any]:
    """An event's fields as a mapping (times stay datetimes, for the columns they go to)."""
    return {name: getattr(data, name) for name in data.__struct_fields__}

_CONTACT = ("name", "phone", "email", "address", "region", "person_in_charge", "locale", "timezone")
_PERSONAL = ("name", "phone", "email", "address", "person_in_charge")  # the last: a company's contact person


# -- erasure ---------------------------------------------------------------------------------------------


async def on_customer_erased(uow: Uow, events: list[Event[c.CustomerErased]]) -> None:
    """Intake erased the customer (and the phone-only files it took over): their personal values
    leave every table of the console; ids, dates, states and counts stay. A redelivery does nothing."""
    for e in events:
        d = e.data
        await store.erase_customers(uow.conn, [d.customer_id, *d.merged_customer_ids], d.erasure_id, d.erased_at)


async def _erased(uow: Uow, events: list[Event[Any]],
                  customer_of: Callable[[Any], str | None] = lambda d: d.customer_id) -> Callable[[Event[Any]], bool]:
    """The replay guard: whether an event is about an erased customer and occurred before the
    erasure (a replay, a rebuild, a late delivery), so its personal values are not written.
    What occurred after it is filed normally: the customer came back and gave them again."""
    at = await store.erased(uow.conn, (customer_of(e.data) for e in events))
    if not at:
        return lambda e: False

    def gone(e: Event[Any]) -> bool:
        erased_at = at.get(customer_of(e.data) or "")
        return erased_at is not None and e.occurred_at <= erased_at
    return gone


def _customer_row(d: c.CustomerRegistered | c.CustomerUpdated, at: Any, registered: bool,
                  erased: bool = False) -> dict[str, Any]:
    row = {field: None if erased and field in _PERSONAL else getattr(d, field, None) for field in _CONTACT}
    row["name_pinyin"], row["name_initials"] = pinyin(row["name"])
    consent = getattr(d, "consent", None)
    flags = None if erased else getattr(d, "contact_flags", None)
    return row | {"customer_id": d.customer_id, "consent": msgspec.to_builtins(consent) if consent else None,
                  "contact_flags": None if flags is None else msgspec.to_builtins(flags),
                  "registered_at": at if registered else None, "updated_at": at}


async def on_customer_registered(uow: Uow, events: list[Event[c.CustomerRegistered]]) -> None:
    # The file as registered is the file itself (and registered_at); history starts with its changes.
    gone = await _erased(uow, events)
    await store.upsert_customers(uow.conn, [_customer_row(e.data, e.occurred_at, True, gone(e)) for e in events])
    await store.add_phones(uow.conn, [(e.data.customer_id, e.data.phone, e.occurred_at) for e in events
                                      if e.data.phone and not gone(e)])


async def on_customer_updated(uow: Uow, events: list[Event[c.CustomerUpdated]]) -> None:
    merged = {old: e.data.customer_id for e in events for old in (e.data.merged_customer_ids or [])}
    if merged:
        await store.merge_customers(uow.conn, merged)
    gone = await _erased(uow, events)
    await store.upsert_customers(uow.conn, [_customer_row(e.data, e.occurred_at, False, gone(e)) for e in events])
    await store.add_phones(uow.conn, [(e.data.customer_id, e.data.phone, e.occurred_at) for e in events
                                      if e.data.phone and not gone(e)])
    await store.add_changes(uow.conn, [
        (e.event_id, field, e.data.customer_id, e.occurred_at, *((None, None) if gone(e) and field not in store.NEUTRAL_CHANGES
                                                                 else (_text(change.old), _text(change.new))))
        for e in events for field, change in e.data.changes.items()])


async def on_inbound_call(uow: Uow, events: list[Event[c.InboundCallRecorded]]) -> None:
    """The phone register's inbound calls (follow-up keeps the register), on the customer's story."""
    gone = await _erased(uow, events)
    await store.add_inbound_calls(uow.conn, [{
        "call_id": e.data.call_id, "customer_id": e.data.customer_id, "at": e.data.received_at,
        "handled_by": e.data.handled_by, "kind": e.data.kind, "summary": None if gone(e) else e.data.summary,
        "complaint_id": e.data.complaint_id} for e in events])


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _vehicle_row(d: c.VehicleSold | c.VehiclePickedUp, at: Any) -> dict[str, Any]:
    plate = getattr(d, "plate", None)
    return {"vin": d.vin, "customer_id": d.customer.customer_id, "plate": plate, "plate_key": plate_key(plate),
            "model": getattr(d, "model", None), "dealer_id": d.dealer_id, "region": getattr(d, "region", None),
            "sold_at": getattr(d, "sold_at", None), "warranty_months": getattr(d, "warranty_months", None),
            "warranty_km": getattr(d, "warranty_km", None), "updated_at": at}


async def on_vehicle_sold(uow: Uow, events: list[Event[c.VehicleSold]]) -> None:
    await store.upsert_vehicles(uow.conn, [_vehicle_row(e.data, e.data.sold_at) for e in events])


async def on_vehicle_picked_up(uow: Uow, events: list[Event[c.VehiclePickedUp]]) -> None:
    await store.upsert_vehicles(uow.conn, [_vehicle_row(e.data, e.data.picked_up_at) for e in events])
    await store.insert_visits(uow.conn, [{
        "repair_order_id": d.repair_order_id, "vin": d.vin, "customer_id": d.customer.customer_id,
        "dealer_id": d.dealer_id, "picked_up_at": d.picked_up_at, "service_type": d.service_type,
        "items": msgspec.to_builtins(d.items), "mileage_km": d.mileage_km, "advisor_id": d.advisor_id,
        "next_service_due_at": d.next_service_due_at, "next_service_due_km": d.next_service_due_km,
    } for d in (e.data for e in events)])


async def on_receipt_recorded(uow: Uow, events: list[Event[c.ReceiptRecorded]]) -> None:
    gone = await _erased(uow, events)
    await store.insert_receipts(uow.conn, [
        _plain(e.data) | ({"comments": None, "comments_erased": bool((e.data.comments or "").strip())} if gone(e) else {})
        for e in events])


async def on_part_shipped(uow: Uow, events: list[Event[c.PartShipped]]) -> None:
    """The lines shipped to each dealer: the scorecards' parts-shipment accuracy."""
    await scorecard_store.upsert_shipments(uow.conn, [
        {"shipment_id": d.shipment_id, "dealer_id": d.dealer_id, "shipped_at": d.shipped_at, "line_no": line.line_no,
         "part_no": line.part_no, "category": line.category, "qty": line.qty}
        for d in (e.data for e in events) for line in d.lines])


async def on_part_discrepancy(uow: Uow, events: list[Event[c.PartShipmentDiscrepancy]]) -> None:
    await scorecard_store.insert_discrepancies(uow.conn, [_plain(e.data) for e in events])


async def on_followup_scheduled(uow: Uow, events: list[Event[c.FollowUpScheduled]]) -> None:
    await store.upsert_followups(uow.conn, [_plain(e.data) | {"scheduled_at": e.occurred_at,
                                                                    "updated_at": e.occurred_at} for e in events])


_STATUS = {"FollowUpDue": "due", "FollowUpOverdue": "overdue", "FollowUpEscalated": "escalated",
           "FollowUpExpired": "expired"}


async def on_followup_status(uow: Uow, events: list[Event[c.FollowUpTimerEvent]]) -> None:
    await store.set_followup_status(uow.conn, [_plain(e.data) | {"status": _STATUS[e.event_type],
                                                                      "at": e.occurred_at} for e in events])


async def on_attempt_recorded(uow: Uow, events: list[Event[c.FollowUpAttemptRecorded]]) -> None:
    gone = await _erased(uow, events)
    await store.insert_calls(uow.conn, [_plain(e.data) | ({"talking_points": None, "requests": None, "notes": None}
                                                          if gone(e) else {}) for e in events])


async def on_followup_completed(uow: Uow, events: list[Event[c.FollowUpCompleted]]) -> None:
    await store.complete_followups(uow.conn, [_plain(e.data) for e in events])


async def on_feedback_recorded(uow: Uow, events: list[Event[c.FeedbackRecorded]]) -> None:
    await store.add_feedback_categories(uow.conn, [(e.data.followup_id, list(e.data.categories)) for e in events])


async def on_complaint_opened(uow: Uow, events: list[Event[c.ComplaintOpened]]) -> None:
    gone = await _erased(uow, events)
    await store.open_complaints(uow.conn, [_plain(e.data) | {"updated_at": e.data.at}
                                           | ({"description": None} if gone(e) else {}) for e in events])
    await on_complaint_step(uow, events)


# What each lifecycle event says about the case (its state after it, and the detail to show).
_STATE = {"ComplaintOpened": "opened", "ComplaintAcknowledged": "acknowledged", "ComplaintAssigned": "assigned",
          "ComplaintPended": "pending_customer", "ComplaintResumed": "assigned", "ComplaintResolved": "resolved",
          "ComplaintClosed": "closed", "ComplaintReopened": "reopened"}
_DETAIL = ("assignee", "level", "level_name", "role", "person", "breach", "deadline", "resolution", "reason",
           "satisfied", "confirmation", "note", "severity", "category")


async def on_complaint_step(uow: Uow, events: list[Event[Any]]) -> None:
    # A step names its customer or not: the case's customer, as the read model has it, then.
    cases = await store.complaint_customers(uow.conn, [e.data.complaint_id for e in events
                                                       if not e.data.customer_id])
    gone = await _erased(uow, events, lambda d: d.customer_id or cases.get(d.complaint_id))
    rows = []
    for e in events:
        d = e.data
        fields = msgspec.to_builtins(d)
        if gone(e):  # the words written about the customer; the step, its state and people stay
            fields = {k: v for k, v in fields.items() if k not in store.ERASED_TEXT_KEYS}
        rows.append({
            "event_id": e.event_id, "complaint_id": d.complaint_id, "customer_id": d.customer_id,
            "event_type": e.event_type, "at": d.at, "actor": d.actor, "department": d.department,
            "detail": {k: fields[k] for k in _DETAIL if fields.get(k) is not None},
            "state": _STATE.get(e.event_type), "level": fields.get("level"), "assignee": fields.get("assignee"),
            "resolution": fields.get("resolution"),
        })
    await store.complaint_steps(uow.conn, rows)


_NOTIFICATION_STATUS = {"NotificationSent": "sent", "NotificationFailed": "failed", "NotificationSuppressed": "suppressed"}


async def on_notification(uow: Uow, events: list[Event[c.NotificationEvent]]) -> None:
    events = [e for e in events if e.data.recipient_kind == "customer"]
    gone = await _erased(uow, events, lambda d: d.recipient)
    await store.upsert_notifications(uow.conn, [
        _plain(e.data) | {"customer_id": e.data.recipient, "status": _NOTIFICATION_STATUS[e.event_type]}
        | ({"reason": None} if gone(e) else {}) for e in events])
