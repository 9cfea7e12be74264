"""Notifier rules as pure functions: identity, quiet hours, retry schedule, error classes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.timeutil import next_time_within


def notification_id(rule: str, source_event_id: uuid.UUID | str, recipient: str) -> uuid.UUID:
    """One notification per (rule, source event, recipient)."""
    return uuid5(AFTERSALES_NAMESPACE, f"notification:{rule}:{source_event_id}:{recipient}")


def outside_quiet_hours(moment: datetime, zone: str, quiet_start: time, quiet_end: time) -> datetime:
    """The earliest instant >= moment that is not in quiet hours (e.g. 21:00-08:00 local)."""
    return next_time_within(moment, zone, quiet_end, quiet_start)


def next_retry(attempts: int, schedule: list[float], now: datetime) -> datetime | None:
    """After `attempts` failed tries: when to try again, or None when the schedule is spent."""
    if attempts > len(schedule):
        return None
    return now + timedelta(seconds=schedule[attempts - 1])


@dataclass(frozen=True)
class SendResult:
    ok: bool
    permanent: bool = False
    provider_ref: str | None = None
    error: str | None = None


CONSENT_CHANNELS = ("sms", "email", "letter")


@dataclass(frozen=True)
class ConsentFact:
    """A customer-file event's consent, as the notifier receives it."""

    customer_id: str
    consent: dict[str, bool]
    at: datetime
    by: str
    reason: str | None
    source: str
    event_id: uuid.UUID


def consent_changes(current: dict[str, tuple[dict[str, bool], datetime]],
                    facts: list[ConsentFact]) -> list[tuple[ConsentFact, str, bool]]:
    """(fact, channel, granted) for each channel a fact changes, in order. A customer not yet on
    file starts from the default (every channel granted), so a "no" at registration is logged
    and a plain registration is not. A fact older than what the contact holds changes nothing
    now (the projection keeps the newer consent), so it is not logged as a change."""
    state = {k: (dict(v[0]), v[1]) for k, v in current.items()}
    changes = []
    for fact in facts:
        consent, at = state.get(fact.customer_id, ({c: True for c in CONSENT_CHANNELS}, None))
        if at is not None and fact.at < at:
            continue
        for channel in CONSENT_CHANNELS:
            granted = fact.consent.get(channel, True)
            if consent.get(channel, True) != granted:
                changes.append((fact, channel, granted))
        state[fact.customer_id] = ({c: fact.consent.get(c, True) for c in CONSENT_CHANNELS}, fact.at)
    return changes


# -- erasure (issue 19) -----------------------------------------------------------------------

# What an erased customer's event data keeps: ids, references, times, codes and states (a key
# ending in one of the suffixes, or one of the names), numbers and flags. Every other text (names,
# phones, addresses, notes, solutions, titles: whatever a field may say about the person) is NULL.
KEPT_SUFFIXES = ("_id", "_ids", "_ref", "_refs", "_at", "_on", "_no")
KEPT_KEYS = frozenset({
    "at", "deadline", "next_deadline", "vin", "vins", "kind", "outcome", "state", "status", "basis", "channel",
    "region", "regions", "severity",
    "category", "department", "role", "level", "level_name", "told_by", "closed_as", "breach", "escalated_to",
    "owner", "handler", "person", "actor", "recorded_by", "changed_by", "printed_by", "rule", "template", "locale",
    "timezone", "source", "registered_from", "campaign_kind", "lost_reason", "week", "week_start", "month",
})


def _kept(key: str) -> bool:
    return key in KEPT_KEYS or key.endswith(KEPT_SUFFIXES)


def scrub(value: Any, key: str = "") -> Any:
    """`value` (an event's data, a stored answer) with every text not under a kept key set to
    None, recursively; numbers, flags and the structure stay."""
    if isinstance(value, dict):
        return {k: scrub(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, key) for v in value]
    if isinstance(value, str):
        return value if _kept(key) else None
    return value


def customer_ids_in(value: Any) -> set[str]:
    """Every `customer_id` named in a document, at any depth (an event's customer, a sale's buyer)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "customer_id" and isinstance(v, str):
                found.add(v)
            else:
                found |= customer_ids_in(v)
    elif isinstance(value, list):
        for v in value:
            found |= customer_ids_in(v)
    return found
