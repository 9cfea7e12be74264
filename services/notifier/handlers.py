"""Notifier's handlers: keep the contact and campaign projections, and turn matching events into
notifications (one per rule, source event and recipient)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec
import orjson

from services.notifier import store
from services.notifier.config import NotifierDeps, NotifierSettings
from services.notifier.directory import StaffDirectory
from services.notifier.dispatcher import publish_outcome
from services.notifier.domain import (
    ConsentFact,
    consent_changes,
    customer_ids_in,
    notification_id,
    outside_quiet_hours,
    scrub,
)
from services.notifier.rules import Rule, RuleTable, fill
from shared.events import Event
from shared.events import canonical as c
from shared.uow import UnitOfWork

Uow = UnitOfWork[NotifierDeps]
# Any canonical event a rule of the table names (the rules, not the code, choose the types).
E = TypeVar("E", bound=c.Data)
# What a contact starts with when the event does not say (the contacts table's defaults).
DEFAULT_LOCALE, DEFAULT_TIMEZONE = "zh-CN", "Asia/Shanghai"
DEFAULT_CONSENT = {"sms": True, "email": True, "letter": True}


def _erased(erased: dict[str, datetime], customer_id: str, occurred_at: datetime) -> bool:
    """The event is about an erased customer and occurred at or before the erasure (a replay, a
    late delivery): it files no personal value and sends nothing."""
    erased_at = erased.get(customer_id)
    return erased_at is not None and occurred_at <= erased_at


async def on_customer_changed(uow: Uow, events: list[Event[c.CustomerRegistered | c.CustomerUpdated]]) -> None:
    """CustomerRegistered / CustomerUpdated → the contact projection (and the consent log for each
    channel whose consent the file changed); waiting notifications go. An erased customer's fact
    from before the erasure brings no name, phone, e-mail, address or reason back."""
    erased = await store.erasures(uow.conn, [e.data.customer_id for e in events])
    gone = {e.event_id for e in events if _erased(erased, e.data.customer_id, e.occurred_at)}
    facts = [ConsentFact(customer_id=d.customer_id, consent=msgspec.to_builtins(d.consent) if d.consent else DEFAULT_CONSENT,
                         at=event.occurred_at, by=getattr(d, "corrected_by", None) or event.envelope.source,
                         reason=None if event.event_id in gone else getattr(d, "reason", None),
                         source=event.event_type, event_id=event.event_id)
             for event in events for d in [event.data]]
    changes = consent_changes(await store.consents(uow.conn, [f.customer_id for f in facts]), facts)
    await store.log_consent(uow.conn, [
        {"customer_id": f.customer_id, "channel": channel, "granted": granted, "changed_at": f.at, "changed_by": f.by,
         "reason": f.reason, "source": f.source, "event_id": f.event_id, "recorded_at": uow.now()}
        for f, channel, granted in changes])
    await store.merge_contacts(uow.conn, [
        {"customer_id": d.customer_id, "name": d.name, "phone": d.phone, "email": d.email, "address": d.address,
         "locale": d.locale or DEFAULT_LOCALE, "timezone": d.timezone or DEFAULT_TIMEZONE,
         "consent": msgspec.to_builtins(d.consent) if d.consent is not None else DEFAULT_CONSENT,
         "contact_flags": msgspec.to_builtins(d.contact_flags) if d.contact_flags is not None else None,
         "region": d.region, "updated_at": event.occurred_at}
        | ({"name": None, "phone": None, "email": None, "address": None, "contact_flags": None}
           if event.event_id in gone else {})
        for event in events for d in [event.data]
    ])
    await store.release_awaiting(uow.conn, [e.data.customer_id for e in events], uow.now())
    await on_event(uow, events)


async def on_customer_erased(uow: Uow, events: list[Event[c.CustomerErased]]) -> None:
    """CustomerErased → every personal value of the customer (and of the phone-only files it
    merged) is gone from the notifier: the contact's name, phone, e-mail, address and flags; the
    address each notification went to, its reason (it may quote an address or an opt-out's
    words) and its event's free text (for staff notices about the customer too); the letters'
    addressee, address, subject and body; opt-out and consent-log reasons; the same in outcome
    events not published yet and in stored POST answers. Ids, channels, states, attempts and
    times stay, so delivery counts stay. What was not sent yet is suppressed ("customer erased")
    with its NotificationSuppressed. A redelivery finds nothing left to change."""
    now = uow.now()
    for event in events:
        d = event.data
        ids = sorted({d.customer_id, *d.merged_customer_ids})
        await store.record_erasure(uow.conn, ids, d.erasure_id, d.erased_at)
        await store.scrub_contacts(uow.conn, ids, d.erased_at)
        await store.scrub_free_text(uow.conn, ids, d.erased_at)
        rows, letters = [], []
        for n in await store.notifications_about(uow.conn, ids, d.erased_at):
            n["context"] = {**n["context"], "data": scrub(n["context"].get("data"))}
            if n["recipient_kind"] == "customer" and n["recipient"] in ids:
                letters.append(n["notification_id"])
                n["address"] = None
                if n["status"] in store.UNSENT:
                    n.update(status="suppressed", last_error=store.ERASED, finished_at=now, sending_since=None)
                    publish_outcome(uow, n, "NotificationSuppressed", error=store.ERASED, at=now,
                                    locale=n["locale"] or uow.deps.settings.default_locale)
                elif n["last_error"] != store.ERASED:
                    n["last_error"] = None
            rows.append(n)
        await store.rewrite_notifications(uow.conn, rows)
        await store.scrub_letters(uow.conn, letters)
        outbox = []
        for row in await store.unsent_outcomes(uow.conn, ids):
            envelope = orjson.loads(row["payload"])
            if envelope.get("data", {}).get("reason") not in (None, store.ERASED):
                envelope["data"]["reason"] = None
                outbox.append((row["id"], orjson.dumps(envelope)))
        await store.rewrite_outbox(uow.conn, outbox)
        for answer in await store.stored_answers(uow.conn, d.erased_at):
            try:
                body = orjson.loads(answer["body"])
            except orjson.JSONDecodeError:
                continue
            if customer_ids_in(body) & set(ids) and (scrubbed := scrub(body)) != body:
                await store.rewrite_answer(uow.conn, answer["key"], answer["credential"], orjson.dumps(scrubbed))
        uow.log.info("customer erased from the notifier", erasure_id=d.erasure_id, customers=len(ids),
                     notifications=len(rows), letters=len(letters))


async def on_vehicle(uow: Uow, events: list[Event[c.VehicleSold | c.VehiclePickedUp]]) -> None:
    """VehicleSold / VehiclePickedUp → the customer's regions and dealers (a scoped agent's reach,
    docs/security.md); then any rule naming the event."""
    await store.add_customer_scope(uow.conn, [
        (d.customer.customer_id, d.region, d.dealer_id) for event in events for d in [event.data]])
    await on_event(uow, events)


async def on_campaign(uow: Uow, events: list[Event[c.CampaignAnnounced]]) -> None:
    """CampaignAnnounced → what an invitation needs to say (title, dates, address)."""
    await store.upsert_campaigns(uow.conn, [
        {"campaign_id": d.campaign_id, "title": d.title, "kind": d.kind, "starts_at": d.starts_at,
         "ends_at": d.ends_at, "address": d.address, "updated_at": event.occurred_at}
        for event in events for d in [event.data]
    ])
    await on_event(uow, events)


def first_send_time(
    rule: Rule, event: Event[E], now: datetime, contact: dict[str, Any] | None, settings: NotifierSettings
) -> datetime:
    due = max(now, event.occurred_at + rule.delay_td)
    if rule.channel == "sms" and rule.recipient_kind == "customer" and contact is not None:
        due = outside_quiet_hours(due, contact["timezone"], settings.quiet_hours_start, settings.quiet_hours_end)
    return due


def staff_recipient(rule: Rule, data: dict[str, Any], directory: StaffDirectory) -> str:
    """The rule's recipient with the event's fields filled in; its fallback when the first names
    nobody in the staff directory (the dispatcher reports it if neither does)."""
    primary = fill(rule.recipient, data)
    if primary and directory.people_for(primary):
        return primary
    fallback = fill(rule.fallback_recipient, data) if rule.fallback_recipient else None
    if fallback and directory.people_for(fallback):
        return fallback
    return primary or fallback or rule.recipient


async def on_event(uow: Uow, events: list[Event[E]]) -> None:
    """Every rule that matches an event makes one notification per recipient: the batch's
    customers' contacts are read in one query and its notifications written in one statement."""
    table: RuleTable = uow.deps.rules
    directory: StaffDirectory = uow.deps.directory
    settings: NotifierSettings = uow.deps.settings
    decided: list[tuple[Event[E], dict[str, Any], Rule, str, str]] = []
    for event in events:
        data = msgspec.to_builtins(event.data)
        logical_topic = event.topic.removeprefix(uow.settings.topic_prefix)
        for rule in table.matching(event.event_type, logical_topic, data):
            if rule.recipient_kind == "customer":
                recipient = data.get("customer_id")
                if not recipient:
                    uow.log.warning("rule needs a customer_id the event lacks", rule=rule.id, event_type=event.event_type)
                    continue
                kind = "customer"
            else:
                recipient = staff_recipient(rule, data, directory)
                kind = recipient.split(":", 1)[0]
            decided.append((event, data, rule, recipient, kind))
    if not decided:
        return
    contacts = await store.contacts(uow.conn, [recipient for *_, recipient, kind in decided if kind == "customer"])
    erased = await store.erasures(uow.conn, {cid for _, data, *_ in decided for cid in customer_ids_in(data)})
    now = uow.now()
    rows = []
    for event, data, rule, recipient, kind in decided:
        contact = contacts.get(recipient) if kind == "customer" else None
        # An erased customer's event from before the erasure: its free text is not kept, and a
        # message to them is suppressed at once (a replay or a late delivery sends nothing).
        gone = any(_erased(erased, cid, event.occurred_at) for cid in customer_ids_in(data))
        silenced = kind == "customer" and _erased(erased, recipient, event.occurred_at)
        rows.append({
            "notification_id": notification_id(rule.id, event.event_id, recipient),
            "rule": rule.id,
            "source_event_id": event.event_id,
            "source_event_type": event.event_type,
            "correlation_id": event.correlation_id,
            "recipient": recipient,
            "recipient_kind": kind,
            "channel": rule.channel,
            "template": rule.template,
            "locale": contact["locale"] if contact else None,
            "context": {"data": scrub(data) if gone else data, "occurred_at": event.occurred_at.isoformat(),
                        "delay": rule.delay},
            # A customer whose contact (intake's customer events) is not on file yet: it waits for it.
            "status": "suppressed" if silenced else "awaiting_contact" if kind == "customer" and contact is None
            else "pending",
            "due_at": first_send_time(rule, event, now, contact, settings),
            "created_at": now,
            **({"last_error": store.ERASED, "finished_at": now} if silenced else {}),
        })
    for n in await store.insert_notifications(uow.conn, rows):
        if n["status"] == "suppressed":
            publish_outcome(uow, n, "NotificationSuppressed", error=store.ERASED, at=now,
                            locale=n["locale"] or settings.default_locale)
