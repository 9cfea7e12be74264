"""Complaint cases as plain Python: the lifecycle state machine and the case aggregate.

A case decides; it records what happened to it (facts, with world times) and the events it
caused, and never touches a database, a broker or a clock of its own: the time of every
decision is passed in. The SLA figures come from `sla.compute` over the facts.

Lifecycle (DESIGN.md §4):

    opened ─acknowledge→ acknowledged ─assign→ assigned ─resolve→ resolved ─close→ closed
                                               │  ▲  ↺assign                  │        │
                                           pend│  │resume                reopen│  reopen│
                                               ▼  │                            ▼        ▼
                                         pending_customer ─resolve→ …       reopened ─acknowledge→ acknowledged
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.complaints.config import ComplaintRules, SlaPolicy
from services.complaints.sla import SLA_KINDS, SlaFact, SlaFigures, Step, compute
from services.complaints.tables import Classification
from shared.events import canonical as c
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5

# ---------------------------------------------------------------------------------------
# The state machine

STATES: tuple[str, ...] = (
    "opened", "acknowledged", "assigned", "pending_customer", "resolved", "closed", "reopened",
)
ACTIONS: tuple[str, ...] = ("acknowledge", "assign", "pend", "resume", "resolve", "close", "reopen")

TRANSITIONS: dict[str, dict[str, str]] = {
    "opened": {"acknowledge": "acknowledged"},
    "acknowledged": {"assign": "assigned"},
    "assigned": {"assign": "assigned", "pend": "pending_customer", "resolve": "resolved"},
    "pending_customer": {"resume": "assigned", "resolve": "resolved"},
    "resolved": {"close": "closed", "reopen": "reopened"},
    "closed": {"reopen": "reopened"},
    "reopened": {"acknowledge": "acknowledged"},
}
# Open = somebody still has to act on it (KPIs "open cases per level").
OPEN_STATES = frozenset({"opened", "acknowledged", "assigned", "pending_customer", "reopened"})

# The fact each action records, and the catalog event it publishes.
FACT_OF: dict[str, str] = {
    "acknowledge": "acknowledged", "assign": "assigned", "pend": "pended", "resume": "resumed",
    "resolve": "resolved", "close": "closed", "reopen": "reopened",
}
EVENT_OF: dict[str, str] = {
    "acknowledge": "ComplaintAcknowledged", "assign": "ComplaintAssigned", "resolve": "ComplaintResolved",
    "close": "ComplaintClosed", "reopen": "ComplaintReopened", "pend": "ComplaintPended", "resume": "ComplaintResumed",
}
# The catalog structure of each lifecycle event (shared/events/canonical.py).
EVENT_DATA: dict[str, type[c.ComplaintEvent]] = {
    "ComplaintOpened": c.ComplaintOpened, "ComplaintAcknowledged": c.ComplaintEvent,
    "ComplaintAssigned": c.ComplaintAssigned, "ComplaintEscalated": c.ComplaintEscalated,
    "ComplaintResolved": c.ComplaintResolved, "ComplaintClosed": c.ComplaintClosed,
    "ComplaintReopened": c.ComplaintReopened, "ComplaintPended": c.ComplaintPended,
    "ComplaintResumed": c.ComplaintResumed,
}


class IllegalTransition(Exception):
    """The action is not allowed from the case's current state; the message names what is."""

    def __init__(self, state: str, action: str) -> None:
        self.state, self.action = state, action
        self.allowed = sorted(TRANSITIONS[state])
        super().__init__(
            f"cannot {action} a case that is {state}; from {state} the allowed "
            f"{'action is' if len(self.allowed) == 1 else 'actions are'}: {', '.join(self.allowed)}"
        )


def next_state(state: str, action: str) -> str:
    """The state after `action`, or IllegalTransition naming the allowed ones."""
    if state not in TRANSITIONS:
        raise ValueError(f"unknown state {state!r}; the states are: {', '.join(STATES)}")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; the actions are: {', '.join(ACTIONS)}")
    target = TRANSITIONS[state].get(action)
    if target is None:
        raise IllegalTransition(state, action)
    return target


class Refused(Exception):
    """A command that is well-formed but cannot be applied as given (the message says why)."""


# ---------------------------------------------------------------------------------------
# The case


def complaint_id_for(complaint_ref: str) -> str:
    """One case per complaint_ref, with the same id on every replica and every replay."""
    return str(uuid5(AFTERSALES_NAMESPACE, f"complaint:{complaint_ref}"))


def defect_report_id(complaint_id: str) -> str:
    return str(uuid5(AFTERSALES_NAMESPACE, f"complaint-defect:{complaint_id}"))


@dataclass
class Fact:
    """One line of a case's history: what happened, when in the world, who, and details."""

    seq: int
    kind: str
    at: datetime
    recorded_at: datetime
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Escalation:
    """An escalation that was announced (ComplaintEscalated published)."""

    round: int
    level: int
    level_name: str
    role: str
    person: str | None
    breach: str
    deadline: datetime
    announced_at: datetime

    @property
    def key(self) -> tuple[int, int]:
        return (self.round, self.level)


@dataclass
class Document:
    document_id: str
    kind: str
    title: str
    filename: str | None
    content_type: str
    size_bytes: int
    sha256: str
    path: str  # relative to the documents root; always chosen by the service
    added_by: str | None
    added_at: datetime
    filed_at: datetime | None = None
    erased_at: datetime | None = None  # erased with its customer: the file is gone (store.erase_customers)


# What of a history line's detail a person wrote (a comment, a step's note, a pend's or reopen's
# reason, a resolution, a document's title): erased with the customer. The notes the service
# writes itself (a repeated filing, a confirmation call's outcome) say nothing of the customer.
PERSONAL_DETAIL = ("text", "note", "reason", "resolution", "title")
SERVICE_NOTES = frozenset({"note", "confirmation"})  # the fact kinds whose `note` the service wrote


def erase_detail(kind: str, detail: dict[str, Any]) -> dict[str, Any]:
    """The detail with every personal value set to None (the keys stay, so the timeline still
    says a reason was given) and the phone a repeated filing learned removed."""
    erased = {k: (None if k in PERSONAL_DETAIL and not (k == "note" and kind in SERVICE_NOTES) else v)
              for k, v in detail.items()}
    learned = erased.get("learned")
    if isinstance(learned, dict) and "phone" in learned:
        erased["learned"] = {k: v for k, v in learned.items() if k != "phone"}
    return erased


@dataclass
class Outgoing:
    """An event the case caused, to publish on aftersales.complaints."""

    event_type: str
    data: c.ComplaintEvent | c.ComplaintPartDefectReported
    occurred_at: datetime
    discriminator: str = ""


@dataclass
class Intake:
    """What a filing says (ComplaintFiled, or a handler's POST)."""

    complaint_ref: str
    customer_id: str | None
    phone: str | None
    vin: str | None
    channel: str
    description: str
    filed_at: datetime
    followup_id: str | None
    source: str  # aftersales.intake, aftersales.followup, or http
    dealer_id: str | None = None  # the vehicle's dealer and region, when the filing names them
    region: str | None = None


Who = Callable[[str, str], str | None]  # (department, role) -> person


@dataclass
class Case:
    complaint_id: str
    complaint_ref: str
    customer_id: str | None
    phone: str | None
    vin: str | None
    channel: str
    category: str
    severity: str
    department: str
    description: str
    part_category: str | None
    followup_id: str | None
    source: str
    category_source: str
    severity_source: str
    state: str
    policy: SlaPolicy
    created_at: datetime
    correlation_id: uuid.UUID
    last_event_id: uuid.UUID | None = None
    assignee: str | None = None
    resolution: str | None = None
    satisfied: bool | None = None
    confirmation: str | None = None
    timer_ref: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    history: list[Fact] = field(default_factory=list)
    escalations: dict[tuple[int, int], Escalation] = field(default_factory=dict)
    documents: list[Document] = field(default_factory=list)
    # What this unit of work added (the store writes these; the service publishes outgoing).
    new_facts: list[Fact] = field(default_factory=list)
    new_escalations: list[Escalation] = field(default_factory=list)
    new_documents: list[Document] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    figures: SlaFigures | None = None
    # Set when this unit of work closed the case: the complaint form is then written and all
    # handling documents are filed ("sort out the complaint form and file the documents").
    closed_at: datetime | None = None

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(
        cls, filing: Intake, classification: Classification, policy: SlaPolicy, *, now: datetime,
        correlation_id: uuid.UUID, actor: str | None = None, handler: str | None = None,
    ) -> Case:
        """A new case: the filing starts the clock; ComplaintOpened names its deadlines and the
        handler of the department it is routed to (both are told), and a product-quality
        complaint naming a part also reports the defect to quality."""
        k = classification
        case = cls(
            complaint_id=complaint_id_for(filing.complaint_ref), complaint_ref=filing.complaint_ref,
            customer_id=filing.customer_id, phone=filing.phone, vin=filing.vin, channel=filing.channel,
            category=k.category, severity=k.severity, department=k.department, description=filing.description,
            part_category=k.part_category, followup_id=filing.followup_id, source=filing.source,
            category_source=k.category_source, severity_source=k.severity_source, state="opened", policy=policy,
            created_at=now, correlation_id=correlation_id, dealer_id=filing.dealer_id, region=filing.region,
        )
        case._record("filed", filing.filed_at, now, actor or filing.source, {
            "source": filing.source, "channel": filing.channel, "followup_id": filing.followup_id,
        })
        figures = case.refresh(now)
        case._emit("ComplaintOpened", filing.filed_at, actor or filing.source, {
            "vin": filing.vin, "channel": filing.channel, "category": k.category, "severity": k.severity,
            "description": filing.description, "filed_at": filing.filed_at,
            "ack_due_at": figures.current.ack_due_at, "resolve_due_at": figures.current.resolve_due_at,
            "part_category": k.part_category, "followup_id": filing.followup_id, "handler": handler,
            "dealer_id": filing.dealer_id, "region": filing.region,
        })
        if k.category == "product_quality" and k.part_category:
            case.outgoing.append(Outgoing("PartDefectReported", c.ComplaintPartDefectReported(
                report_id=defect_report_id(case.complaint_id), category=k.part_category, vin=filing.vin,
                failure_mode=k.failure_mode, reported_by="complaint", reported_at=filing.filed_at,
                complaint_id=case.complaint_id, description=filing.description,
            ), filing.filed_at))
        return case

    def file_again(self, filing: Intake, now: datetime) -> bool:
        """The same complaint_ref filed again (another channel, or a replay under a new id) is
        the same case. An earlier filing time moves the start of the clock back, as if the
        filings had arrived in order; otherwise it is only noted. True if the clock moved."""
        first_filed = min(f.at for f in self.history if f.kind == "filed")
        moved = filing.filed_at < first_filed
        # What the first filing did not know (a call's copy may lack the VIN the CRM has).
        learned = {}
        for name in ("vin", "phone", "customer_id", "followup_id", "dealer_id", "region"):
            if getattr(self, name) is None and getattr(filing, name) is not None:
                learned[name] = getattr(filing, name)
                setattr(self, name, learned[name])
        self._record("filed" if moved else "note", filing.filed_at if moved else now, now, filing.source, {
            "note": f"filed again via {filing.source} (filed_at {filing.filed_at.isoformat()})"
            + ("; the clock now starts at this earlier filing" if moved else "; same case"),
            "source": filing.source, "followup_id": filing.followup_id, **({"learned": learned} if learned else {}),
        })
        if moved:
            self.refresh(now)
        return moved

    # -- handling -----------------------------------------------------------------------
    def act(self, action: str, *, at: datetime, now: datetime, actor: str | None, **detail: Any) -> None:
        """Apply a lifecycle action at world time `at` (≤ now; not before the last step)."""
        target = next_state(self.state, action)
        self._check_time(at, now)
        fields: dict[str, Any] = {}
        if action == "assign":
            assignee = (detail.get("assignee") or "").strip()
            if not assignee:
                raise Refused("assign needs an assignee: the handler who will work the case")
            self.assignee = assignee
            fields["assignee"] = assignee
        elif action == "pend":
            if not (detail.get("reason") or "").strip():
                raise Refused("pend needs a reason: what the case waits for from the customer")
        elif action == "resolve":
            resolution = (detail.get("resolution") or "").strip()
            if not resolution:
                raise Refused("resolve needs the resolution text: what was done for the customer")
            self.resolution = resolution
        elif action == "close":
            self.satisfied = detail.get("satisfied")
            self.confirmation = detail.get("confirmation") or "closed_by_supervisor"
        elif action == "reopen":
            if not (detail.get("reason") or "").strip():
                raise Refused("reopen needs a reason: why the customer is not satisfied")
            self.satisfied, self.confirmation, self.resolution = None, None, None
        self.state = target
        self._record(FACT_OF[action], at, now, actor, {k: v for k, v in detail.items() if v is not None})
        figures = self.refresh(now)
        event_type = EVENT_OF.get(action)
        if event_type is None:
            return
        data: dict[str, Any] = dict(fields)
        if action == "resolve":
            data.update(resolution=self.resolution, vin=self.vin, pauses=list(figures.current.pauses))
        elif action == "close":
            self.closed_at = at
            data.update(satisfied=self.satisfied, confirmation=self.confirmation,
                        followup_id=detail.get("followup_id"), documents=len(self.documents) + 1)  # + the form
        elif action == "reopen":
            data.update(reason=detail["reason"].strip(), followup_id=detail.get("followup_id"),
                        ack_due_at=figures.current.ack_due_at, resolve_due_at=figures.current.resolve_due_at)
        elif action == "pend":  # the clock pauses: with ComplaintResumed the log holds every pause
            data.update(reason=(detail.get("reason") or "").strip() or None)
        elif action == "resume":  # the clock runs again: the deadlines moved by the pause
            data.update(ack_due_at=figures.current.ack_due_at, resolve_due_at=figures.current.resolve_due_at)
        self._emit(event_type, at, actor, data)

    def comment(self, text: str, *, at: datetime, now: datetime, actor: str | None) -> Fact:
        if not text.strip():
            raise Refused("a comment needs text")
        return self._record("comment", at, now, actor, {"text": text.strip()})

    def attach(self, document: Document, now: datetime) -> Fact:
        self.documents.append(document)
        self.new_documents.append(document)
        return self._record("document", document.added_at, now, document.added_by, {
            "document_id": document.document_id, "kind": document.kind, "title": document.title,
        })

    def confirm(
        self, *, outcome: str, satisfied: bool | None, satisfaction: int | None, at: datetime, now: datetime,
        followup_id: str | None, rules: ComplaintRules,
    ) -> str:
        """The customer's answer at the complaint_confirmation call (follow-up). Satisfied →
        closed; not satisfied → reopened with the clocks restarted; never reached → as the
        rules say (closed as unconfirmed by default). Returns what was done."""
        at = min(at, now)  # another service's clock may run a little ahead of ours
        if satisfied is None and satisfaction is not None:
            satisfied = satisfaction >= rules.satisfied_min_score
        resolved_at = max((f.at for f in self.history if f.kind == "resolved"), default=None)
        detail = {"outcome": outcome, "satisfied": satisfied, "satisfaction": satisfaction, "followup_id": followup_id}
        if resolved_at is None or at < resolved_at:
            self._record("confirmation", at, now, "followup", {
                **detail, "note": "a confirmation from before the latest resolution; it changes nothing"})
            return "ignored_stale"
        actor = "followup"
        if outcome == "reached" and satisfied is True:
            action, extra = "close", {"satisfied": True, "confirmation": "confirmed"}
        elif outcome == "reached" and satisfied is False:
            action, extra = "reopen", {"reason": "the customer is not satisfied at the confirmation call"}
        elif outcome == "reached":
            self._record("confirmation", at, now, actor, {
                **detail, "note": "the call reached the customer but recorded no answer; a supervisor decides"})
            return "undecided"
        elif rules.unreachable_confirmation == "close_unconfirmed":
            action, extra = "close", {"satisfied": None, "confirmation": outcome}
        else:
            self._record("confirmation", at, now, actor, {**detail, "note": "not reached; kept resolved"})
            return "kept_resolved"
        if action not in TRANSITIONS[self.state]:
            self._record("confirmation", at, now, actor, {
                **detail, "note": f"the case is {self.state}; the confirmation changes nothing"})
            return f"ignored_{self.state}"
        # Applied no earlier than the last recorded step, so the history stays in order.
        at = max([at] + [f.at for f in self.history if f.kind in SLA_KINDS])
        self._record("confirmation", at, now, actor, detail)
        self.act(action, at=at, now=now, actor=actor, followup_id=followup_id, **extra)
        return "closed" if action == "close" else "reopened"

    # -- the clock ----------------------------------------------------------------------
    def refresh(self, now: datetime) -> SlaFigures:
        """Recompute the SLA figures from the whole history."""
        self.figures = compute(self.sla_facts(), self.policy, now)
        return self.figures

    def announce_due(self, now: datetime, who: Who) -> list[Step]:
        """Announce the escalations the history says are due and were not announced yet
        (each (round, level) once). Steps due after a resolution never appear here."""
        figures = self.refresh(now)
        announced = []
        for step in figures.due_steps():
            if step.key in self.escalations:
                continue
            person = who(self.department, step.role)
            escalation = Escalation(step.round, step.level, step.level_name, step.role, person, step.breach,
                                    step.due, now)
            self.escalations[step.key] = escalation
            self.new_escalations.append(escalation)
            self._record("escalated", step.due, now, "sla", {
                "level": step.level, "level_name": step.level_name, "role": step.role, "person": person,
                "breach": step.breach, "round": step.round,
            })
            self._emit("ComplaintEscalated", step.due, "sla", {
                "level": step.level, "level_name": step.level_name, "role": step.role, "person": person,
                "breach": step.breach, "deadline": step.due, "next_deadline": step.next_due,
            }, discriminator=f"{step.round}:{step.level}")
            announced.append(step)
        return announced

    def next_wakeup(self) -> datetime | None:
        assert self.figures is not None
        return self.figures.next_wakeup(set(self.escalations))

    def sla_facts(self) -> list[SlaFact]:
        return [SlaFact(f.kind, f.at, f.seq) for f in self.history if f.kind in SLA_KINDS]

    @property
    def round(self) -> int:
        return sum(1 for f in self.history if f.kind == "reopened")

    # -- internals ----------------------------------------------------------------------
    def _check_time(self, at: datetime, now: datetime) -> None:
        if at > now:
            raise Refused(f"at {at.isoformat()} is in the future (now is {now.isoformat()}); record what has happened")
        last = max((f for f in self.history if f.kind in SLA_KINDS), key=lambda f: (f.at, f.seq), default=None)
        if last is not None and at < last.at:
            raise Refused(
                f"at {at.isoformat()} is before the case's last step ({last.kind} at {last.at.isoformat()}); "
                "a back-dated step may not go behind one already recorded"
            )

    def _record(self, kind: str, at: datetime, now: datetime, actor: str | None, detail: dict[str, Any]) -> Fact:
        fact = Fact(len(self.history) + 1, kind, at, now, actor, detail)
        self.history.append(fact)
        self.new_facts.append(fact)
        return fact

    def _emit(self, event_type: str, at: datetime, actor: str | None, fields: dict[str, Any],
              discriminator: str = "") -> None:
        """Record a lifecycle event: the case's own fields and the event's (its catalog structure
        refuses a field it does not have)."""
        data = EVENT_DATA[event_type](
            complaint_id=self.complaint_id, complaint_ref=self.complaint_ref, customer_id=self.customer_id, at=at,
            actor=actor, department=self.department, round=self.round, **fields,
        )
        self.outgoing.append(Outgoing(event_type, data, at, discriminator))
