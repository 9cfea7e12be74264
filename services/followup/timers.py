"""Follow-up's durable timers. Each handler takes the due timers of its kind (fired once,
whichever replica claims them) and acts only if the follow-up still needs it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.timers import Timer
from shared.timeutil import iso_week, local, week_start
from shared.uow import UnitOfWork

from services.followup import store
from services.followup.domain import followup_id, lost_after, lost_window, next_weekly_report
from services.followup.handlers import _timer_event
from services.followup.scheduling import cancel, rules, schedule

OPEN = ("scheduled", "due")


async def _open(uow: UnitOfWork, timers: list[Timer]) -> list[tuple[Timer, dict[str, Any]]]:
    found = await store.lock_followups(uow.conn, [t.ref for t in timers])
    return [(t, found[t.ref]) for t in timers if t.ref in found and found[t.ref]["status"] in OPEN]


async def on_due(uow: UnitOfWork, timers: list[Timer]) -> None:
    """FollowUpDue at due_from: the call enters the agents' queue."""
    due = await _open(uow, timers)
    await store.set_status(uow.conn, [f["followup_id"] for _, f in due], "status", uow.now(), "due")
    for timer, f in due:
        uow.publish("FollowUpDue", _timer_event(f), cause=timer)


async def on_overdue(uow: UnitOfWork, timers: list[Timer]) -> None:
    """Not completed by due_by: FollowUpOverdue (it goes to the top of the queue)."""
    late = await _open(uow, timers)
    await store.set_status(uow.conn, [f["followup_id"] for _, f in late], "overdue_at", uow.now())
    for timer, f in late:
        uow.publish("FollowUpOverdue", _timer_event(f), cause=timer)


async def on_escalate(uow: UnitOfWork, timers: list[Timer]) -> None:
    """Still open 2 days after it was overdue: FollowUpEscalated to the supervisor."""
    late = await _open(uow, timers)
    await store.set_status(uow.conn, [f["followup_id"] for _, f in late], "escalated_at", uow.now())
    for timer, f in late:
        uow.publish("FollowUpEscalated", _timer_event(f, escalated_to=rules(uow).escalate_to), cause=timer)


async def on_expire(uow: UnitOfWork, timers: list[Timer]) -> None:
    """Hopelessly late: FollowUpExpired (counted as missed)."""
    stale = await _open(uow, timers)
    await store.set_status(uow.conn, [f["followup_id"] for _, f in stale], "status", uow.now(), "expired")
    for timer, f in stale:
        await cancel(uow, f["followup_id"])
        uow.publish("FollowUpExpired", _timer_event(f), cause=timer)


async def on_maintenance(uow: UnitOfWork, timers: list[Timer]) -> None:
    """10 days before the next service: MaintenanceReminderDue (the notifier sends the SMS) and
    a reminder call in the queue."""
    items = []
    for timer in timers:
        p = timer.payload
        estimated = datetime.fromisoformat(p["estimated_due_at"])
        uow.publish("MaintenanceReminderDue", {
            "vin": timer.ref, "customer_id": p["customer_id"], "due_at": p["due_at"], "due_km": p["due_km"],
            "estimated_due_at": estimated, "basis": p["basis"],
            "followup_id": followup_id("maintenance_reminder", f"{timer.ref}:{p['last_visit_at']}"),
        }, cause=timer)
        now = uow.now()
        items.append((timer, {
            "followup_id": followup_id("maintenance_reminder", f"{timer.ref}:{p['last_visit_at']}"),
            "kind": "maintenance_reminder", "customer_id": p["customer_id"], "vin": timer.ref,
            "dealer_id": p["dealer_id"], "region": p["region"], "reason_event_id": str(timer.event_id),
            "due_from": now, "due_by": max(estimated, now + timedelta(days=1)),
            "priority": rules(uow).priority_maintenance_reminder, "timezone": p["timezone"] or "Asia/Shanghai",
            "event_at": estimated,
        }))
    await schedule(uow, items)


async def on_lost(uow: UnitOfWork, timers: list[Timer]) -> None:
    """No visit for 12 months: a lost-customer call asks why."""
    r = rules(uow)
    contacts = await store.last_contact(uow.conn, [t.ref for t in timers])
    zones = await store.customer_zones(uow.conn, [t.ref for t in timers])
    items = []
    for timer in timers:
        last = contacts.get(timer.ref)
        if last is None or lost_after(last, r) > uow.now():
            continue  # a visit since: the check was re-armed
        window = lost_window(uow.now(), r)
        zone = zones.get(timer.ref, {})
        items.append((timer, {
            "followup_id": followup_id("lost_customer", f"{timer.ref}:{last.isoformat()}"), "kind": "lost_customer",
            "customer_id": timer.ref, "region": zone.get("region"), "reason_event_id": str(timer.event_id),
            "due_from": window.due_from, "due_by": window.due_by, "priority": r.priority_lost_customer,
            "timezone": zone.get("timezone") or "Asia/Shanghai", "event_at": last,
        }))
    await schedule(uow, items)


async def on_weekly_report(uow: UnitOfWork, timers: list[Timer]) -> None:
    """Every Monday: visits done and missed, satisfaction, feedback by category, per region,
    dealer and agent, sent to the departments in writing (by the notifier)."""
    r = rules(uow)
    for timer in timers:
        until = timer.due_at
        since = until - timedelta(days=7)
        began = local(since, r.weekly_report_timezone)  # the report zone's week: UTC's may still be Sunday
        week = iso_week(began)
        figures = await store.weekly_figures(uow.conn, since, until, r.satisfied_score)
        figures["period"] = {"from": since.isoformat(), "to": until.isoformat()}
        if await store.save_weekly_report(uow.conn, week, uow.now(), figures):
            uow.publish("FollowUpWeeklyReport", {"week": week, "week_start": week_start(began),
                                                 "generated_at": uow.now(), "figures": figures},
                        cause=timer, occurred_at=until)
        following = next_weekly_report(until, r)
        uow.schedule_timer("report.weekly", iso_week(following - timedelta(days=7)), following)


def ensure_weekly_report(uow: UnitOfWork) -> None:
    """Arm the next weekly report (once; a running schedule keeps itself going)."""
    following = next_weekly_report(uow.now(), rules(uow))
    uow.schedule_timer("report.weekly", iso_week(following - timedelta(days=7)), following)


TIMERS = {
    "followup.due": on_due, "followup.overdue": on_overdue, "followup.escalate": on_escalate,
    "followup.expire": on_expire, "maintenance.remind": on_maintenance, "customer.lost": on_lost,
    "report.weekly": on_weekly_report,
}
