"""The complaints service's handlers: one per consumed event type, and one per timer kind.
Each takes a batch: load the cases it touches → domain → publish + re-arm + store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from services.complaints import commands, store
from services.complaints.commands import ERASE_FILES_TIMER, WEEKLY_REPORT_TIMER, Filing
from services.complaints.config import ComplaintsDeps
from services.complaints.domain import Intake
from services.complaints.reports import next_report_at, reported_week, weekly_figures
from shared.errors import PermanentError
from shared.events import Event
from shared.events import canonical as c
from shared.timers import Timer
from shared.uow import UnitOfWork

Uow = UnitOfWork[ComplaintsDeps]


def on_complaint_filed(source: str) -> Callable[[Uow, list[Event[c.ComplaintFiled]]], Awaitable[None]]:
    """ComplaintFiled from `source` (aftersales.intake, or aftersales.followup when a return
    visit call raised it): a case for every complaint_ref."""

    async def handler(uow: Uow, events: list[Event[c.ComplaintFiled]]) -> None:
        erased = await store.erasures(uow.conn, {e.data.customer_id for e in events})

        def guarded(e: Event[c.ComplaintFiled]) -> bool:
            """The customer was erased after this filing happened (a replay, a late delivery):
            its phone and description are not kept again. A later filing is the customer's new word."""
            at = erased.get(e.data.customer_id)
            return at is not None and e.occurred_at <= at

        await commands.file_complaints(uow, [
            Filing(
                Intake(
                    complaint_ref=e.data.complaint_ref, customer_id=e.data.customer_id,
                    phone=None if guarded(e) else e.data.phone, vin=e.data.vin, channel=e.data.channel,
                    description="" if guarded(e) else e.data.description,
                    filed_at=e.data.filed_at, followup_id=e.data.followup_id, source=source,
                    dealer_id=e.data.dealer_id, region=e.data.region,
                ),
                category=e.data.category, severity=e.data.severity, part_category=e.data.part_category, cause=e,
                classify_from=e.data.description if guarded(e) else None,
            )
            for e in events
        ])

    handler.__name__ = f"on_complaint_filed_from_{source.rsplit('.', 1)[-1]}"
    return handler


async def on_customer_erased(uow: Uow, events: list[Event[c.CustomerErased]]) -> None:
    """intake erased a customer (issue 19, docs/complaints.md "Erasure"): the personal values of
    the customer and of the files it took over leave every case (store.erase_customers); ids,
    categories, states and SLA figures stay. Their document files are deleted by a timer, so
    after this transaction commits: a rolled-back erasure deletes nothing. A customer erased
    already (a redelivery) is left as it is: what it filed since is its new word."""
    for e in events:
        fresh = await store.record_erasure(uow.conn, [e.data.customer_id, *e.data.merged_customer_ids],
                                           e.data.erasure_id, e.data.erased_at)
        if not fresh:
            uow.log.info("customer erasure applied before", erasure_id=e.data.erasure_id)
            continue
        erased = await store.erase_customers(uow.conn, fresh, uow.now())
        if erased.document_paths:
            uow.schedule_timer(ERASE_FILES_TIMER, e.data.erasure_id, uow.now(), {"paths": erased.document_paths},
                               cause=e)
        uow.log.info("customer erased", erasure_id=e.data.erasure_id, customers=len(fresh),
                     cases=len(erased.complaint_ids), documents=len(erased.document_paths))


async def on_erase_files(uow: Uow, timers: list[Timer]) -> None:
    """Delete the document files an erasure cleared (only those whose row says erased)."""
    files = commands.files(uow)
    for timer in timers:
        paths = await store.erased_documents(uow.conn, list(timer.payload.get("paths") or []))
        deleted = [path for path in paths if await files.delete(path)]
        uow.log.info("erased document files deleted", erasure_id=timer.ref, deleted=len(deleted),
                     gone_before=len(paths) - len(deleted))


async def on_followup_completed(uow: Uow, events: list[Event[c.FollowUpCompleted]]) -> None:
    """The customer's answer at the complaint_confirmation call: satisfied → closed, not
    satisfied → reopened (clocks restart); other follow-up kinds are not ours."""
    confirmations = [e for e in events if e.data.kind == "complaint_confirmation"]
    if not confirmations:
        return
    for e in confirmations:
        if not e.data.complaint_id:
            raise PermanentError(
                f"data.complaint_id is missing; a complaint_confirmation FollowUpCompleted (followup "
                f"{e.data.followup_id}) must name the complaint it confirms", "ValidationFailed",
            )
    cases = await commands.load(uow, {e.data.complaint_id for e in confirmations if e.data.complaint_id})
    now = uow.now()
    for e in confirmations:
        case = cases.get(e.data.complaint_id or "")
        if case is None:
            raise PermanentError(
                f"data.complaint_id {e.data.complaint_id!r} names no complaint case; the confirmation call "
                f"{e.data.followup_id} must confirm a case this service opened", "UnknownComplaint",
            )
        done = case.confirm(
            outcome=e.data.outcome, satisfied=e.data.satisfied, satisfaction=e.data.satisfaction,
            at=e.data.completed_at, now=now, followup_id=e.data.followup_id, rules=commands.rules(uow),
        )
        uow.log.info("complaint confirmation applied", complaint_id=case.complaint_id, result=done)
        commands.emit(uow, case, e)
    await commands.commit(uow, cases.values())


async def on_sla_timer(uow: Uow, timers: list[Timer]) -> None:
    """A case's next SLA instant came: recompute from its history and announce exactly the
    escalations that are due (none if it was resolved meanwhile), then re-arm."""
    cases = await commands.load(uow, {t.payload.get("complaint_id") or t.ref.split("@", 1)[0] for t in timers})
    now = uow.now()
    who = commands.tables(uow).person_for
    for case in cases.values():
        case.announce_due(now, who)
    await commands.commit(uow, cases.values(), firing=frozenset(t.ref for t in timers))


async def on_weekly_report(uow: Uow, timers: list[Timer]) -> None:
    """Every week (Monday 08:00 Shanghai by default): ComplaintWeeklyReport for the week that
    ended, by category and department; then the next week's timer. A service that was down
    catches up one week at a time, since each report schedules the one after its own."""
    rules = commands.rules(uow)
    for timer in timers:
        week = reported_week(timer.due_at, rules.report_timezone)
        figures = weekly_figures(week, *await store.week_rows(uow.conn, week.starts_at, week.ends_at))
        uow.publish("ComplaintWeeklyReport", c.WeeklyReport(
            week=week.week, week_start=week.week_start, generated_at=uow.now(), figures=figures,
        ), cause=timer, occurred_at=timer.due_at)
        schedule_weekly_report(uow, after=timer.due_at)


def schedule_weekly_report(uow: Uow, *, after: datetime) -> None:
    """Arm the next weekly report (once per reported week: its ref is the week)."""
    rules = commands.rules(uow)
    due = next_report_at(after, rules.weekly_report_weekday, rules.weekly_report_time, rules.report_timezone)
    uow.schedule_timer(WEEKLY_REPORT_TIMER, reported_week(due, rules.report_timezone).week, due)
