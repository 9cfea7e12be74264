"""Return-visit rules as pure functions: when each call is due."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.events.envelope import AFTERSALES_NAMESPACE

from services.followup.config import FollowUpRules


@dataclass(frozen=True)
class Window:
    due_from: datetime
    due_by: datetime


def followup_id(kind: str, reason: str) -> str:
    """One follow-up per (kind, reason): a replayed or repeated cause schedules nothing new."""
    return str(uuid.uuid5(AFTERSALES_NAMESPACE, f"followup:{kind}:{reason}"))


def first_visit_window(picked_up_at: datetime, rules: FollowUpRules) -> Window:
    """First return visit: between pickup + 3 days and pickup + 7 days."""
    return Window(
        picked_up_at + timedelta(days=rules.first_visit_after_days),
        picked_up_at + timedelta(days=rules.first_visit_within_days),
    )
