"""Tracking owners (issue 16): each customer has an agent who follows them ("a tracking salesman
designated by department heads for each customer", the work plan), and a supervisor may assign
an open call to an agent.

- The owner rules (owners.yaml): the dealer of the customer's vehicle, else their region, else
  the default. They name the owner when the customer first appears on follow-up (registered,
  sold, picked up, consulted); a more specific rule matching later (the dealer, once known after
  the region) moves a rule-made owner; an owner a supervisor chose is never moved by a rule.
- A supervisor sets or changes an owner (with a reason), and assigns or reassigns an open call.
- Every assignment and change is an event: CustomerOwnerAssigned, FollowUpAssigned.
- The queue puts the calling agent's calls first: those assigned to them, and those of their
  customers that are not assigned to someone else. A call assigned to an agent waits for that
  agent: another agent may take it only once it is overdue and nobody holds it (a supervisor may).

The owner tables are this module's (migration 0004_customer_owners.sql), so their SQL lives here
beside the rules rather than in store.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from services.followup.config import FollowUpDeps
from services.followup.store import CUSTOMER_IN_SCOPE
from shared.api import Sort, keyset
from shared.events import Event
from shared.events import canonical as c
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.uow import UnitOfWork

Uow = UnitOfWork[FollowUpDeps]
RULES_FILE = Path(__file__).parent / "owners.yaml"
AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SUPERVISOR = "supervisor"
SYSTEM = "system"
# how specific a rule is: what a rule gave gives way only to a more specific rule
RANK = {"rule:default": 0, "rule:region": 1, "rule:dealer": 2}


class OwnerRulesError(ValueError):
    """The rules file cannot be used as it is; the message names the entry."""


@dataclass(frozen=True)
class OwnerRules:
    default: str
    dealers: Mapping[str, str]
    regions: Mapping[str, str]

    @classmethod
    def parse(cls, document: Any, where: str = "owners.yaml") -> OwnerRules:
        if not isinstance(document, dict):
            raise OwnerRulesError(f"{where}: expected a mapping with default, dealers and regions")
        unknown = set(document) - {"default", "dealers", "regions"}
        if unknown:
            raise OwnerRulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                                  "use default, dealers and regions")
        default = document.get("default")
        if not isinstance(default, str) or not AGENT_ID.match(default):
            raise OwnerRulesError(f"{where}: default must be an agent id (letters, digits, . _ -), got {default!r}")
        tables: dict[str, dict[str, str]] = {}
        for name in ("dealers", "regions"):
            table = document.get(name) or {}
            if not isinstance(table, dict):
                raise OwnerRulesError(f"{where}: {name} must map a {name[:-1]} to an agent id")
            for key, agent in table.items():
                if not isinstance(agent, str) or not AGENT_ID.match(agent):
                    raise OwnerRulesError(f"{where}: {name}.{key} must be an agent id, got {agent!r}")
            tables[name] = {str(k): v for k, v in table.items()}
        return cls(default, tables["dealers"], tables["regions"])

    @classmethod
    def load(cls, path: Path | None = None) -> OwnerRules:
        path = path or Path(os.environ.get("AFTERSALES_FOLLOWUP_OWNER_RULES") or RULES_FILE)
        return cls.parse(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)


@cache
def owner_rules() -> OwnerRules:
    return OwnerRules.load()


@dataclass(frozen=True)
class Choice:
    owner: str
    source: str  # rule:dealer, rule:region, rule:default, supervisor
    reason: str

    @property
    def rank(self) -> int:
        return RANK[self.source]


def owner_by_rules(rules: OwnerRules, region: str | None, dealer_id: str | None) -> Choice:
    """The customer's owner by the first rule that matches: dealer, region, default."""
    if dealer_id and dealer_id in rules.dealers:
        return Choice(rules.dealers[dealer_id], "rule:dealer", f"dealer {dealer_id}")
    if region and region in rules.regions:
        return Choice(rules.regions[region], "rule:region", f"region {region}")
    return Choice(rules.default, "rule:default", "default owner")


def replaces(current_source: str | None, choice: Choice) -> bool:
    """A rule's choice takes the customer when nobody owns them, or when the owner came from a
    less specific rule; a supervisor's choice is never overwritten by a rule."""
    return current_source is None or (current_source != SUPERVISOR and RANK[current_source] < choice.rank)


def mine(agent: str, owner: str | None, assigned_to: str | None) -> bool:
    """A call is the agent's: assigned to them, or their customer's and assigned to nobody else."""
    return (assigned_to or owner) == agent


def claim_refusal(f: Mapping[str, Any], agent: str, now: datetime, *, supervisor: bool) -> str | None:
    """Why this agent may not take a call a supervisor assigned to someone else (None: they may).
    The assigned agent has it until it is overdue; then anyone may take it if nobody holds it."""
    assigned = f.get("assigned_to")
    if supervisor or assigned is None or assigned == agent:
        return None
    held = f.get("claimed_by") not in (None, agent) and f.get("claim_expires_at") and f["claim_expires_at"] > now
    if f["due_by"] < now and not held:
        return None
    return (f"follow-up {f['followup_id']} is assigned to {assigned} by a supervisor; another agent may take it "
            f"once it is overdue ({f['due_by'].isoformat()}) and unclaimed, or ask a supervisor to reassign it")


# -- storage ---------------------------------------------------------------------------------------

_OWNER_COLUMNS = ("customer_id, owner, source, reason, assigned_by, assigned_at, region, dealer_id, rule_owner, "
                  "rule_source, rule_rank")


async def owners_of(conn: asyncpg.Connection, customer_ids: Iterable[str], *, lock: bool = False
                    ) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {_OWNER_COLUMNS} FROM customer_owners WHERE customer_id = ANY($1::text[])"
                            f"{' FOR UPDATE' if lock else ''}", list(set(customer_ids)))
    return {r["customer_id"]: dict(r) for r in rows}


async def _record_changes(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    await conn.executemany(
        """INSERT INTO customer_owner_changes (customer_id, owner, previous_owner, source, reason, assigned_by,
                                              assigned_at) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        [(r["customer_id"], r["owner"], r["previous_owner"], r["source"], r["reason"], r["assigned_by"],
          r["assigned_at"]) for r in rows])


async def _write_rules(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> dict[str, str]:
    """What the rules give, for each row's customer, when more specific than what they gave
    before; the owner follows unless a supervisor chose them. Returns {customer: owner now} of
    the customers written (two replicas: only one writes a given upgrade)."""
    if not rows:
        return {}
    columns = ("customer_id", "owner", "source", "reason", "assigned_at", "region", "dealer_id", "rank", "cause")
    written = await conn.fetch(
        """INSERT INTO customer_owners AS o (customer_id, owner, source, reason, assigned_by, assigned_at, region,
                                             dealer_id, rule_owner, rule_source, rule_rank, rule_cause)
           SELECT n.customer_id, n.owner, n.source, n.reason, 'system', n.assigned_at, n.region, n.dealer_id,
                  n.owner, n.source, n.rank, n.cause
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
                         $8::int[], $9::uuid[])
                  AS n (customer_id, owner, source, reason, assigned_at, region, dealer_id, rank, cause)
           ON CONFLICT (customer_id) DO UPDATE SET
               rule_owner = EXCLUDED.rule_owner, rule_source = EXCLUDED.rule_source,
               rule_rank = EXCLUDED.rule_rank, rule_cause = EXCLUDED.rule_cause,
               region = coalesce(EXCLUDED.region, o.region), dealer_id = coalesce(EXCLUDED.dealer_id, o.dealer_id),
               owner = CASE WHEN o.source = 'supervisor' THEN o.owner ELSE EXCLUDED.owner END,
               source = CASE WHEN o.source = 'supervisor' THEN o.source ELSE EXCLUDED.source END,
               reason = CASE WHEN o.source = 'supervisor' THEN o.reason ELSE EXCLUDED.reason END,
               assigned_by = CASE WHEN o.source = 'supervisor' THEN o.assigned_by ELSE EXCLUDED.assigned_by END,
               assigned_at = CASE WHEN o.source = 'supervisor' THEN o.assigned_at ELSE EXCLUDED.assigned_at END
           WHERE o.rule_rank < EXCLUDED.rule_rank
           RETURNING customer_id, owner""",
        *([row[k] for row in rows] for k in columns))
    return {w["customer_id"]: w["owner"] for w in written}


# -- commands ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sighting:
    """A fact naming a customer with what the rules match on."""

    event: Event[Any]
    customer_id: str
    region: str | None
    dealer_id: str | None


async def assign_by_rules(uow: Uow, sightings: Iterable[Sighting]) -> None:
    """Owners for the customers these facts name, by the rules: a new customer gets one; a
    rule-made owner moves to a more specific rule's agent (a supervisor's stays). The first fact
    of the poll giving a customer's most specific match is the cause, and its time the moment of
    the assignment (the same on replay)."""
    rules = owner_rules()
    best: dict[str, tuple[Choice, Sighting]] = {}
    for s in sightings:
        choice = owner_by_rules(rules, s.region, s.dealer_id)
        if s.customer_id not in best or choice.rank > best[s.customer_id][0].rank:
            best[s.customer_id] = (choice, s)
    if not best:
        return
    current = await owners_of(uow.conn, best)
    rows = []
    for customer_id, (choice, s) in sorted(best.items()):
        held = current.get(customer_id)
        if held is not None and held["rule_rank"] >= choice.rank:
            continue  # nothing more specific than what the rules gave already
        rows.append({"customer_id": customer_id, "owner": choice.owner, "source": choice.source,
                     "reason": choice.reason, "assigned_by": SYSTEM, "assigned_at": s.event.occurred_at,
                     "region": s.region,
                     "dealer_id": s.dealer_id, "rank": choice.rank, "cause": s.event.event_id,
                     "previous_owner": held["owner"] if held else None, "event": s.event,
                     "moves": replaces(held["source"] if held else None, choice)})
    written = await _write_rules(uow.conn, rows)
    # an event when the owner changed (a supervisor's choice stays; the same agent by a finer rule is no change)
    changed = [r for r in rows if r["moves"] and written.get(r["customer_id"]) == r["owner"]
               and r["previous_owner"] != r["owner"]]
    await _record_changes(uow.conn, changed)
    for row in changed:
        _announce(uow, row, cause=row["event"])


def _announce(uow: Uow, row: dict[str, Any], cause: Any) -> None:
    """The assignment's event. A rule's is the same whichever fact named the customer first (facts
    on other partitions may arrive in any order, live or on replay): its id is the customer's and
    the rule's, and its data only what the rule matched; its envelope's time is the fact's."""
    by_rule = row["assigned_by"] == SYSTEM
    uow.publish("CustomerOwnerAssigned", c.CustomerOwnerAssigned(
        customer_id=row["customer_id"], owner=row["owner"], previous_owner=row["previous_owner"],
        source=row["source"], reason=row["reason"], assigned_by=row["assigned_by"],
        assigned_at=None if by_rule else row["assigned_at"],
        region=row["region"] if not by_rule or row["source"] == "rule:region" else None,
        dealer_id=row["dealer_id"] if not by_rule or row["source"] == "rule:dealer" else None,
    ), cause=cause, occurred_at=row["assigned_at"],
        event_id=uuid5(AFTERSALES_NAMESPACE, f"owner:{row['customer_id']}:{row['source']}") if by_rule else None)


class OwnerRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def set_owner(uow: Uow, customer_id: str, owner: str, reason: str, by: str) -> dict[str, Any]:
    """A supervisor names the customer's owner; the rules never move it afterwards."""
    customer = await uow.conn.fetchrow("SELECT customer_id, region FROM customers WHERE customer_id = $1",
                                       customer_id)
    if customer is None:
        raise OwnerRefused(404, f"no customer {customer_id!r} on follow-up's file (customers appear here with "
                                "their registration, a sale, a pickup or a consultation)")
    held = (await owners_of(uow.conn, [customer_id], lock=True)).get(customer_id)
    if held is not None and held["owner"] == owner:
        raise OwnerRefused(409, f"{owner} already owns customer {customer_id}")
    row = {"customer_id": customer_id, "owner": owner, "source": SUPERVISOR, "reason": reason, "assigned_by": by,
           "assigned_at": uow.now(), "region": held["region"] if held else customer["region"],
           "dealer_id": held["dealer_id"] if held else None, "previous_owner": held["owner"] if held else None}
    await uow.conn.execute(
        """INSERT INTO customer_owners (customer_id, owner, source, reason, assigned_by, assigned_at, region)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (customer_id) DO UPDATE SET owner = EXCLUDED.owner, source = EXCLUDED.source,
               reason = EXCLUDED.reason, assigned_by = EXCLUDED.assigned_by, assigned_at = EXCLUDED.assigned_at""",
        customer_id, owner, SUPERVISOR, reason, by, row["assigned_at"], row["region"])
    await _record_changes(uow.conn, [row])
    _announce(uow, row, cause=None)
    return {k: row[k] for k in ("customer_id", "owner", "previous_owner", "source", "reason", "assigned_by",
                                "assigned_at")}


async def assign_call(uow: Uow, followup_id: str, agent: str, reason: str, by: str) -> dict[str, Any]:
    """A supervisor assigns an open call to an agent. Refused while another agent is on the call
    (their claim is live): the supervisor releases it first, so nobody is cut off mid-call."""
    f = await uow.conn.fetchrow(
        """SELECT followup_id, kind, customer_id, status, due_by, claimed_by, claim_expires_at, assigned_to,
                  correlation_id, scheduled_event_id FROM followups WHERE followup_id = $1 FOR UPDATE""", followup_id)
    if f is None:
        raise OwnerRefused(404, f"no follow-up {followup_id!r}")
    if f["status"] not in ("scheduled", "due"):
        raise OwnerRefused(409, f"follow-up {followup_id} is {f['status']}; only an open call can be assigned")
    now = uow.now()
    if f["claimed_by"] not in (None, agent) and f["claim_expires_at"] and f["claim_expires_at"] > now:
        raise OwnerRefused(409, f"{f['claimed_by']} is calling this customer now (claim until "
                                f"{f['claim_expires_at'].isoformat()}); release the call first, then assign it")
    if f["assigned_to"] == agent:
        raise OwnerRefused(409, f"follow-up {followup_id} is already assigned to {agent}")
    await uow.conn.execute(
        """UPDATE followups SET assigned_to = $2, assigned_by = $3, assigned_at = $4, assign_reason = $5
            WHERE followup_id = $1""", followup_id, agent, by, now, reason)
    event = c.FollowUpAssigned(followup_id=followup_id, kind=f["kind"], customer_id=f["customer_id"], agent=agent,
                               previous_agent=f["assigned_to"], reason=reason, assigned_by=by, assigned_at=now,
                               due_by=f["due_by"])
    uow.publish("FollowUpAssigned", event, cause=None, occurred_at=now)
    return {"followup_id": followup_id, "customer_id": f["customer_id"], "assigned_to": agent,
            "previous_agent": f["assigned_to"], "reason": reason, "assigned_by": by, "assigned_at": now}


async def listing(conn: asyncpg.Connection, *, owner: str | None, customer: str | None, sort: Sort,
                  cursor: dict[str, Any] | None, limit: int, regions: list[str] | None = None,
                  dealers: list[str] | None = None) -> list[dict[str, Any]]:
    """Customers with their owner and their open calls (those assigned to someone, to whom), in
    `sort` order after `cursor` (shared.api.keyset); with `regions` / `dealers` (a scoped agent's),
    their customers only (store.CUSTOMER_IN_SCOPE)."""
    page = keyset(sort, "o.customer_id", cursor, 6)
    rows = await conn.fetch(
        """SELECT o.customer_id, o.owner, o.source, o.reason, o.assigned_by, o.assigned_at, o.region, o.dealer_id,
                   o.rule_owner, o.rule_source,
                   coalesce((SELECT jsonb_agg(jsonb_build_object('followup_id', f.followup_id, 'kind', f.kind,
                                  'due_by', f.due_by, 'assigned_to', f.assigned_to, 'claimed_by', f.claimed_by)
                                  ORDER BY f.due_by)
                               FROM followups f WHERE f.customer_id = o.customer_id
                                AND f.status IN ('scheduled', 'due')), '[]'::jsonb) AS open_calls
              FROM customer_owners o
             WHERE ($1::text IS NULL OR o.owner = $1) AND ($2::text IS NULL OR o.customer_id = $2) AND """
        + CUSTOMER_IN_SCOPE.format(customer="o.customer_id", regions="$4", dealers="$5")
        + f" AND {page.where} ORDER BY {page.order_by} LIMIT $3", owner, customer, limit, regions, dealers,
        *page.params)
    return [dict(r) for r in rows]


async def history(conn: asyncpg.Connection, customer_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT owner, previous_owner, source, reason, assigned_by, assigned_at FROM customer_owner_changes
            WHERE customer_id = $1 ORDER BY assigned_at, change_id""", customer_id)
    return [dict(r) for r in rows]
