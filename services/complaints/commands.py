"""The application layer: load the cases a message touches (locked), let the domain decide,
then publish what the cases caused, re-arm their SLA timers and store them — the same steps
for the event handlers, the timer handlers and the HTTP commands.

Causation: an event caused by a consumed event names it; any other event on a case names the
case's previous event (`last_event_id`) and carries the case's correlation id, so one chain
runs from the ComplaintFiled (or the handler's POST) through every step of the case.

SLA timers: one pending durable timer per case, at the next instant its figures change by
themselves (`Case.next_wakeup`). Its ref names the case and the instant, so re-arming after a
change is `schedule_timer(..., replace=True)` of the new ref plus cancelling the old one; a
timer that fires recomputes from the history and announces only what is due."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.complaints import store
from services.complaints.config import ComplaintRules, ComplaintsDeps
from services.complaints.documents import DocumentFiles
from services.complaints.domain import Case, Document, Intake, complaint_id_for
from services.complaints.reports import complaint_form
from services.complaints.sla import LEVELS, Round
from services.complaints.tables import Tables
from shared.events import Event
from shared.events import canonical as c
from shared.events.envelope import uuid5
from shared.uow import UnitOfWork

Uow = UnitOfWork[ComplaintsDeps]

SLA_TIMER = "complaint.sla"
WEEKLY_REPORT_TIMER = "complaint.weekly_report"
ERASE_FILES_TIMER = "complaint.erase_files"  # an erased customer's document files, deleted after commit


# The consumed events a case's steps are caused by: a filing, or the customer's confirmation call.
CaseCause = Event[c.ComplaintFiled] | Event[c.FollowUpCompleted]


@dataclass(frozen=True)
class ChainCause:
    """The case's previous event as the cause of its next one."""

    event_id: uuid.UUID
    correlation_id: uuid.UUID


def rules(uow: UnitOfWork[ComplaintsDeps]) -> ComplaintRules:
    return uow.deps.rules


def tables(uow: UnitOfWork[ComplaintsDeps]) -> Tables:
    return uow.deps.tables


def files(uow: UnitOfWork[ComplaintsDeps]) -> DocumentFiles:
    return uow.deps.documents


async def load(uow: Uow, ids: Iterable[str], *, lock: bool = True) -> dict[str, Case]:
    return await store.load_cases(uow.conn, ids, rules(uow).sla.for_severity, lock=lock)


# ---------------------------------------------------------------------------------------
# Filing


@dataclass(frozen=True)
class Filing:
    intake: Intake
    category: str | None
    severity: str | None
    part_category: str | None
    cause: Event[c.ComplaintFiled] | None = None
    actor: str | None = None
    # The text to classify when the filing's description is not kept (an erased customer's
    # replayed filing): the case is classified as it was, and the text is not stored.
    classify_from: str | None = None


async def file_complaints(uow: Uow, filings: Sequence[Filing]) -> list[tuple[Case, bool]]:
    """A case for every filing; the same complaint_ref again is the same case. Returns each
    filing's case and whether this filing opened it."""
    now = uow.now()
    ids = [complaint_id_for(f.intake.complaint_ref) for f in filings]
    cases = await load(uow, ids)
    opened: dict[str, Case] = {}
    first_filing: dict[str, int] = {}
    for i, (filing, cid) in enumerate(zip(filings, ids, strict=True)):
        if cid in cases or cid in opened:
            continue
        classification = tables(uow).classify(
            filing.classify_from or filing.intake.description, category=filing.category, severity=filing.severity,
            part_category=filing.part_category,
        )
        correlation = filing.cause.correlation_id if filing.cause else uuid.uuid4()
        opened[cid] = Case.open(
            filing.intake, classification, rules(uow).sla.for_severity(classification.severity), now=now,
            correlation_id=correlation, actor=filing.actor,
            handler=tables(uow).person_for(classification.department, "handler"),
        )
        first_filing[cid] = i
    inserted = await store.insert_cases(uow.conn, list(opened.values()), now)
    lost = [cid for cid in opened if cid not in inserted]  # another transaction opened it first
    for cid in lost:
        del opened[cid], first_filing[cid]
    cases.update(await load(uow, lost))
    cases.update(opened)
    results: list[tuple[Case, bool]] = []
    for i, (filing, cid) in enumerate(zip(filings, ids, strict=True)):
        case = cases[cid]
        created = first_filing.get(cid) == i
        if not created:
            case.file_again(filing.intake, now)
        emit(uow, case, filing.cause)
        results.append((case, created))
    await commit(uow, cases.values())
    return results


# ---------------------------------------------------------------------------------------
# Publishing, timers, storing


def emit(uow: Uow, case: Case, cause: CaseCause | None = None) -> None:
    """Publish what the case caused so far, caused by `cause` or by the case's previous event."""
    for out in case.outgoing:
        by: CaseCause | ChainCause | None = cause
        if by is None and case.last_event_id is not None:
            by = ChainCause(case.last_event_id, case.correlation_id)
        envelope = uow.publish(
            out.event_type, out.data, cause=by, occurred_at=out.occurred_at, discriminator=out.discriminator
        )
        if by is None:  # a case opened over HTTP starts its own chain
            case.correlation_id = envelope.correlation_id
        if out.event_type != "PartDefectReported":
            case.last_event_id = envelope.event_id
    case.outgoing.clear()


async def commit(uow: Uow, cases: Iterable[Case], *, firing: frozenset[str] = frozenset()) -> None:
    """Publish, file the complaint form of a case just closed, re-arm the SLA timers, store."""
    now = uow.now()
    touched = list(cases)
    stale: list[str] = []
    for case in touched:
        if case.closed_at is not None:
            await _file_complaint_form(uow, case)
        emit(uow, case)
        case.refresh(now)
        stale += _arm(uow, case, firing)
    if stale:  # one statement for the batch's cases (each case's old and new refs differ)
        await uow.cancel_timers(stale, kinds=[SLA_TIMER])
    await store.save_cases(uow.conn, touched, now)


def _arm(uow: Uow, case: Case, firing: frozenset[str]) -> list[str]:
    """Arm the case's SLA timer at its next wake-up; return the ref of the timer it replaces,
    to be cancelled (unless that one is firing now)."""
    wake = case.next_wakeup()
    ref = f"{case.complaint_id}@{wake.astimezone(UTC).isoformat()}" if wake is not None else None
    if ref == case.timer_ref:
        return []
    stale = [case.timer_ref] if case.timer_ref is not None and case.timer_ref not in firing else []
    if ref is not None and wake is not None:
        cause = ChainCause(case.last_event_id, case.correlation_id) if case.last_event_id else None
        uow.schedule_timer(SLA_TIMER, ref, wake, {"complaint_id": case.complaint_id}, cause=cause, replace=True)
    case.timer_ref = ref
    return stale


async def _file_complaint_form(uow: Uow, case: Case) -> None:
    """At closing: write the complaint form and file it with the handling documents."""
    assert case.closed_at is not None
    document_id = str(uuid5(uuid.UUID(case.complaint_id), f"complaint-form:{case.round}"))
    if any(d.document_id == document_id for d in case.documents):
        return
    text = complaint_form(case, rules(uow).report_timezone)
    written = await files(uow).write(case.complaint_id, document_id, text, "text/markdown")
    case.attach(Document(
        document_id=document_id, kind="complaint_form", title=f"Complaint form {case.complaint_ref} (round {case.round})",
        filename=f"complaint-form-{case.round}.md", content_type="text/markdown", size_bytes=written.size_bytes,
        sha256=written.sha256, path=written.path, added_by="complaints", added_at=case.closed_at,
        filed_at=case.closed_at,
    ), uow.now())


# ---------------------------------------------------------------------------------------
# HTTP commands


class CaseNotFound(Exception):
    def __init__(self, complaint_id: str) -> None:
        super().__init__(f"no complaint case {complaint_id!r}; list cases with GET /v1/complaints")


Apply = Callable[[Uow, Case], Awaitable[None]]
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


async def on_case(transaction: Callable[[], Any], complaint_id: str, apply: Apply, *, attempts: int = 3) -> Case:
    """Run one command on one case in its own transaction (the case row locked). A deadlock
    with a timer firing on the same case at that instant is retried."""
    for attempt in range(1, attempts + 1):
        try:
            async with transaction() as uow:
                case = (await load(uow, [complaint_id])).get(complaint_id)
                if case is None:
                    raise CaseNotFound(complaint_id)
                await apply(uow, case)
                await commit(uow, [case])
                return case
        except _RETRYABLE:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def view_escalations(case: Case) -> list[dict[str, Any]]:
    """Announced escalations, each with whether the history (as now known) still has it due:
    a back-dated step can withdraw one that was announced before it was known."""
    assert case.figures is not None
    due = {s.key for s in case.figures.steps if s.due <= case.figures.now}
    return [
        {"round": e.round, "level": e.level, "level_name": e.level_name, "role": e.role, "person": e.person,
         "breach": e.breach, "deadline": e.deadline, "announced_at": e.announced_at, "still_due": e.key in due}
        for e in sorted(case.escalations.values(), key=lambda e: e.key)
    ]


def case_view(case: Case) -> dict[str, Any]:
    """The case as the API shows it: its fields, the current SLA figures, the full timeline,
    escalations and documents."""
    figures = case.figures
    assert figures is not None
    current = figures.current
    return {
        "complaint_id": case.complaint_id, "complaint_ref": case.complaint_ref, "customer_id": case.customer_id,
        "vin": case.vin, "channel": case.channel, "description": case.description,
        "category": case.category, "category_source": case.category_source, "severity": case.severity,
        "severity_source": case.severity_source, "department": case.department,
        "part_category": case.part_category, "followup_id": case.followup_id, "source": case.source,
        "dealer_id": case.dealer_id, "region": case.region,
        "state": case.state, "assignee": case.assignee, "resolution": case.resolution,
        "satisfied": case.satisfied, "confirmation": case.confirmation,
        "sla": {
            "round": current.number, "clock": case.policy.clock, "clock_started_at": current.started_at,
            "ack_due_at": current.ack_due_at,
            "resolve_due_at": current.resolve_due_at, "paused": current.paused,
            "level": figures.level, "level_name": _level_name(figures.level),
            "ack_breached": figures.ack_breached, "resolve_breached": figures.resolve_breached,
            "next_due_at": case.next_wakeup(),
            "breaches": [{"round": r, "breach": b, "deadline": d} for r, b, d in figures.breaches()],
            "rounds": [
                {"round": r.number, "started_at": r.started_at, "ack_due_at": r.ack_due_at,
                 "resolve_due_at": r.resolve_due_at, "acknowledged_at": r.acknowledged_at,
                 "resolved_at": r.resolved_at, "paused_seconds": _paused_seconds(r, figures.now),
                 "ack_breached": r.breached("acknowledge", figures.now),
                 "resolve_breached": r.breached("resolve", figures.now), "level": r.level_at(figures.now)}
                for r in figures.rounds
            ],
            "escalation_schedule": [
                {"level": s.level, "level_name": s.level_name, "due_at": s.due, "breach": s.breach}
                for s in current.steps
            ],
        },
        "timeline": [
            {"seq": f.seq, "kind": f.kind, "at": f.at, "recorded_at": f.recorded_at, "actor": f.actor,
             "detail": f.detail}
            for f in sorted(case.history, key=lambda f: (f.at, f.seq))
        ],
        "escalations": view_escalations(case),
        "documents": [document_view(d) for d in case.documents],
    }


def document_view(d: Document) -> dict[str, Any]:
    return {"document_id": d.document_id, "kind": d.kind, "title": d.title, "filename": d.filename,
            "content_type": d.content_type, "size_bytes": d.size_bytes, "sha256": d.sha256, "added_by": d.added_by,
            "added_at": d.added_at, "filed_at": d.filed_at, "erased_at": d.erased_at}


def _level_name(level: int) -> str:
    return LEVELS[level]


def _paused_seconds(r: Round, now: datetime) -> float:
    total = 0.0
    for p0, p1 in r.pauses:
        total += ((p1 or now) - p0).total_seconds()
    return max(total, 0.0)
