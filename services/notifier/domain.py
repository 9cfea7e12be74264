"""Notifier rules as pure functions: identity, quiet hours, retry schedule, error classes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta

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
