"""One conversation per customer: the rules that put a customer's open follow-ups into one call.
No I/O here.

The work plan asks for calls that "avoid repetition and be targeted": a customer with a first
return visit, a maintenance reminder and a campaign call open is called once, by one agent, who
sets each follow-up's outcome on that one call.

- **Due in the same days**: a customer's open follow-up (scheduled or due) joins the customer's
  conversation at `now` when its call window has started (``due_from <= now``), or, for the calls
  whose timing is an invitation rather than a rule (`conversation_early_kinds`: maintenance
  reminder, campaign call, lost customer), when it starts within `conversation_days` (default 3)
  days. The calls tied to a moment are never brought forward: a first visit is 3 days after the
  pickup, a second visit is never the day of the first, a confirmation waits for the solution.
  A follow-up waiting for a retry or a call-back joins too (the customer is called once; its own
  retry would be a second call). A follow-up due later than that is left for its own days.
- **In the queue**: a conversation is listed when at least one of its follow-ups is callable now
  (the queue's rules: due, in calling hours on a calling day, not waiting for a retry); it takes
  the place of its first follow-up in the queue's order, so whatever orders the queue (overdue,
  loyalty, own customers first) orders the conversations.
- **One agent per customer**: a conversation is held while any of its follow-ups carries an
  unexpired claim; it is then shown only to the agent holding it, and nobody else can claim any
  of the customer's follow-ups (a supervisor can take it over).
- **One claim, one record**: claiming the conversation claims all its follow-ups under one
  `call_id`; the call is recorded once with each follow-up's outcome (every follow-up of the
  claim must have one), in one transaction: all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

OPEN = ("scheduled", "due")


# the kinds of call that may be made a few days before their window when the customer is on the line
EARLY_KINDS = ("maintenance_reminder", "campaign_call", "lost_customer")


def joins(followup: Mapping[str, Any], now: datetime, days: int, early_kinds: Iterable[str] = EARLY_KINDS) -> bool:
    """Whether an open follow-up belongs to its customer's conversation at `now`."""
    if followup["status"] not in OPEN:
        return False
    if followup["due_from"] <= now:
        return True
    return followup["kind"] in tuple(early_kinds) and followup["due_from"] <= now + timedelta(days=days)


def holder(followups: Iterable[Mapping[str, Any]], now: datetime) -> Mapping[str, Any] | None:
    """The follow-up whose unexpired claim holds the customer (the latest claim), if any."""
    held = [f for f in followups if f.get("claimed_by") and f.get("claim_expires_at") and f["claim_expires_at"] > now]
    return max(held, key=lambda f: f["claim_expires_at"]) if held else None


def held_by_another(followups: Iterable[Mapping[str, Any]], agent: str, now: datetime) -> Mapping[str, Any] | None:
    """The follow-up another agent holds this customer by (None: the agent may call them)."""
    others = [f for f in followups if f.get("claimed_by") not in (None, agent)]
    return holder(others, now)


@dataclass
class Conversation:
    """A customer's conversation: the follow-ups worked on one call."""

    customer_id: str
    followups: list[dict[str, Any]] = field(default_factory=list)  # callable ones in queue order, then the rest
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    call_id: str | None = None

    @property
    def followup_ids(self) -> list[str]:
        return [f["followup_id"] for f in self.followups]


def members(open_followups: Iterable[Mapping[str, Any]], now: datetime, days: int,
            first: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The follow-ups of one customer's conversation: those in `first` (the queue's order) first,
    then the others that join by their window (earliest due first)."""
    joined = [dict(f) for f in open_followups if joins(f, now, days)]
    rank = {fid: i for i, fid in enumerate(first)}
    return sorted(joined, key=lambda f: (rank.get(f["followup_id"], len(rank)), f["due_by"], f["followup_id"]))


def conversation_of(customer_id: str, open_followups: Iterable[Mapping[str, Any]], now: datetime, days: int,
                    first: Sequence[str] = ()) -> Conversation:
    """The customer's conversation at `now`, with who holds it (from its follow-ups' claims)."""
    rows = list(open_followups)
    held = holder(rows, now)
    return Conversation(customer_id, members(rows, now, days, first),
                        claimed_by=held["claimed_by"] if held else None,
                        claim_expires_at=held["claim_expires_at"] if held else None,
                        call_id=held.get("call_id") if held else None)


def group_queue(callable_in_order: Sequence[Mapping[str, Any]], open_by_customer: Mapping[str, list[Mapping[str, Any]]],
                now: datetime, days: int, agent: str) -> list[Conversation]:
    """The queue as conversations: one per customer with a callable follow-up, in the order of
    each customer's first callable follow-up; a customer another agent holds is left out."""
    order: dict[str, list[str]] = {}
    for f in callable_in_order:
        order.setdefault(f["customer_id"], []).append(f["followup_id"])
    grouped = []
    for customer_id, first in order.items():
        rows = list(open_by_customer.get(customer_id) or [])
        known = {r["followup_id"] for r in rows}
        rows += [f for f in callable_in_order if f["customer_id"] == customer_id and f["followup_id"] not in known]
        if held_by_another(rows, agent, now) is not None:
            continue
        grouped.append(conversation_of(customer_id, rows, now, days, first))
    return grouped


def missing_outcomes(claimed: Iterable[str], given: Iterable[str]) -> list[str]:
    """The follow-ups of the claim the call record gives no outcome for."""
    have = set(given)
    return [f for f in claimed if f not in have]


def duplicates(given: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({f for f in given if f in seen or seen.add(f)})  # type: ignore[func-returns-value]
