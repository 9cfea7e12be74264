"""The agents' desk, as rules: the order of the list (my calls first, then the pool in the
queue's own order), why a call is due and how late it is, the script for each kind of call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SCRIPTS = Path(__file__).parent / "scripts.yaml"
KINDS = ("first_visit", "second_visit", "complaint_confirmation", "campaign_call", "lost_customer",
         "maintenance_reminder", "feedback_answer", "feedback_confirmation")


@dataclass(frozen=True)
class Lateness:
    overdue: bool
    by: timedelta  # how late (overdue) or how long is left (not yet)


def lateness(due_by: datetime, now: datetime) -> Lateness:
    return Lateness(due_by < now, abs(now - due_by))


def desk_order(items: list[dict[str, Any]], me: str) -> list[dict[str, Any]]:
    """The calls I hold first, then the pool; each part keeps the queue's order."""
    mine = [i for i in items if i.get("claimed_by") == me]
    return mine + [i for i in items if i.get("claimed_by") != me]


@cache
def _scripts() -> dict[str, dict[str, list[str]]]:
    document = yaml.safe_load(SCRIPTS.read_text(encoding="utf-8"))
    missing = [kind for kind in KINDS if kind not in document]
    if missing:
        raise ValueError(f"{SCRIPTS.name} has no script for {', '.join(missing)}")
    return document  # type: ignore[no-any-return]


def script(kind: str, locale: str) -> list[str]:
    """The talking points for this kind of call, in the reader's language."""
    scripts = _scripts().get(kind) or {}
    return list(scripts.get(locale) or scripts.get("zh-CN") or [])


def conversation_rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The queue as the desk lists it: one row per customer conversation (a page of the follow-up
    service's GET /v1/queue/conversations: the customer's follow-ups due in the same days, worked on
    one call), each row the conversation's first follow-up with all of them under `followups`."""
    talks = answer["items"]
    return [t["followups"][0] | {"followups": t["followups"], "claimed_by": t["claimed_by"],
                                 "call_id": t.get("call_id"), "overdue": t["overdue"]}
            for t in talks if t["followups"]]


def call_url(row: dict[str, Any]) -> str:
    """Where a row's call is made: the conversation's page when it has several follow-ups."""
    from urllib.parse import quote
    if len(row.get("followups") or [row]) > 1:
        return f"/desk/customers/{quote(row['customer_id'], safe='')}/call"
    return f"/desk/calls/{quote(row['followup_id'], safe='')}"
