"""Rectification measures: the events their effect is counted from, the due-date reminder
(a durable timer), and the two commands people give (record, verify). Each publishes its
event in the same transaction as the row it changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from services.complaints import measure_store
from services.complaints.config import ComplaintsDeps, MeasureRules
from services.complaints.measure_store import MeasureRow
from services.complaints.measures import (
    Effect,
    MeasureRefused,
    Period,
    Status,
    effect,
    status,
    windows,
)
from shared.events import Event
from shared.events import canonical as c
from shared.timers import Timer
from shared.uow import UnitOfWork

Uow = UnitOfWork[ComplaintsDeps]
MEASURE_DUE_TIMER = "complaint.measure_due"


class MeasureNotFound(LookupError):
    def __init__(self, measure_id: str) -> None:
        super().__init__(f"no rectification measure {measure_id!r}; GET /v1/measures lists them")


class AlreadyVerified(RuntimeError):
    pass


# -- the counts, from events ---------------------------------------------------------------

async def on_vehicle_picked_up(uow: Uow, events: list[Event[c.VehiclePickedUp]]) -> None:
    """A workshop visit: the exposure the rates are per 100 of."""
    await measure_store.add_visits(uow.conn, [
        {"repair_order_id": e.data.repair_order_id, "picked_up_at": e.data.picked_up_at,
         "dealer_id": e.data.dealer_id, "event_id": e.event_id} for e in events])


async def on_part_defect_reported(uow: Uow, events: list[Event[c.PartDefectReported]]) -> None:
    """A defect report from the workshop or the ERP (intake): counted for its part category.
    The complaints naming a part category are our own cases (the PartDefectReported we publish
    for them), counted from the `cases` table."""
    await measure_store.add_defects(uow.conn, [
        {"report_id": e.data.report_id, "category": e.data.category, "reported_at": e.data.reported_at,
         "event_id": e.event_id} for e in events])


async def on_quality_alert_raised(uow: Uow, events: list[Event[c.QualityAlertRaised]]) -> None:
    """An alert a measure may answer: its part category (the cell's)."""
    rows = {}
    for e in events:
        category = e.data.cell.get("category")
        if category:
            rows[e.data.alert_id] = {"alert_id": e.data.alert_id, "category": category, "title": e.data.title,
                                     "raised_at": e.data.raised_at}
    await measure_store.add_alerts(uow.conn, list(rows.values()))


# -- the reminder ---------------------------------------------------------------------------

async def on_measure_due(uow: Uow, timers: list[Timer]) -> None:
    """The due date came: remind the owner (MeasureDue → the notifier's e-mail), unless the
    measure was verified meanwhile."""
    for timer in timers:
        m = await measure_store.measure(uow.conn, timer.ref, lock=True)
        if m is None or m.verified_at is not None or m.reminded_at is not None:
            continue
        uow.publish("MeasureDue", c.MeasureDue(**_identity(m)), cause=timer, occurred_at=timer.due_at)
        await measure_store.mark_reminded(uow.conn, m.measure_id, uow.now())


# -- commands -------------------------------------------------------------------------------

def _identity(m: MeasureRow) -> dict[str, Any]:
    return {"measure_id": m.measure_id, "target_kind": m.target_kind, "category": m.category, "title": m.title,
            "owner": m.owner, "due_at": m.due_at, "alert_id": m.alert_id}


async def record(uow: Uow, m: MeasureRow) -> tuple[MeasureRow, bool]:
    """Store a new measure (the alert's part category filled in), announce it and arm its
    reminder; the same measure_id again returns the stored one."""
    existing = await measure_store.measure(uow.conn, m.measure_id)
    if existing is not None:
        return existing, False
    if m.target_kind == "alert":
        assert m.alert_id is not None
        category = await measure_store.alert_category(uow.conn, m.alert_id)
        if category is None:
            raise MeasureRefused(f"alert {m.alert_id!r} is not known here (no QualityAlertRaised with that alert_id "
                                 "has reached the complaints service); check the id on the quality alerts page")
        m = replace(m, category=category)
    envelope = uow.publish("MeasureRecorded", c.MeasureRecorded(
        **_identity(m), action=m.action, recorded_at=m.recorded_at, recorded_by=m.recorded_by,
    ), cause=None, occurred_at=m.recorded_at, discriminator=m.measure_id)
    m = replace(m, correlation_id=envelope.correlation_id or envelope.event_id)
    if not await measure_store.insert_measure(uow.conn, m):
        stored = await measure_store.measure(uow.conn, m.measure_id)
        assert stored is not None
        return stored, False
    uow.schedule_timer(MEASURE_DUE_TIMER, m.measure_id, m.due_at, {"measure_id": m.measure_id}, cause=envelope)
    return m, True


async def verify(uow: Uow, measure_id: str, *, verdict: str, by: str, note: str, at: datetime) -> MeasureRow:
    """Checked: effective or not, by whom, what was seen; the effect at that moment goes with it."""
    m = await measure_store.measure(uow.conn, measure_id, lock=True)
    if m is None:
        raise MeasureNotFound(measure_id)
    if m.verified_at is not None:
        raise AlreadyVerified(f"measure {measure_id} was verified {m.verdict} by {m.verified_by} at "
                              f"{m.verified_at.isoformat()}; a new check is a new measure")
    if at < m.recorded_at:
        raise MeasureRefused(f"verified_at {at.isoformat()} is before the measure was recorded "
                             f"({m.recorded_at.isoformat()})")
    found = await measured(uow, m, as_of=at)
    await measure_store.mark_verified(uow.conn, measure_id, verdict=verdict, by=by, at=at, note=note)
    uow.publish("MeasureVerified", c.MeasureVerified(
        **_identity(m), verdict=verdict, verified_by=by, verified_at=at, note=note,  # type: ignore[arg-type]
        events_before=found.before.events, visits_before=found.before.visits, events_after=found.after.events,
        visits_after=found.after.visits, rate_ratio=found.rate_ratio, p_value=found.p_value, change=found.change,
    ), cause=None, occurred_at=at, discriminator=measure_id)
    await uow.cancel_timers(measure_id, [MEASURE_DUE_TIMER])
    stored = await measure_store.measure(uow.conn, measure_id)
    assert stored is not None
    return stored


async def measured(uow: Uow | Any, m: MeasureRow, *, as_of: datetime) -> Effect:
    """The measure's effect as of `as_of` (the before window is fixed; the after one grows)."""
    rules: MeasureRules = uow.deps.rules.measures
    before, after = windows(m.recorded_at, m.due_at, as_of, rules.window)
    (eb, vb), (ea, va) = await measure_store.counts(uow.conn, m.target_kind, m.category, (before, after))
    return effect(Period(before.starts_at, before.ends_at, eb, vb), Period(after.starts_at, after.ends_at, ea, va),
                  rules.confidence)


def measure_status(m: MeasureRow, now: datetime, rules: MeasureRules) -> Status:
    return status(due_at=m.due_at, verified=m.verified_at is not None, now=now, due_soon=rules.due_soon)


def view(m: MeasureRow, found: Effect, now: datetime, rules: MeasureRules) -> dict[str, Any]:
    """A measure as the API shows it."""
    def iso(v: datetime | None) -> str | None:
        return None if v is None else v.isoformat()

    return {
        "measure_id": m.measure_id, "target_kind": m.target_kind, "category": m.category, "alert_id": m.alert_id,
        "title": m.title, "action": m.action, "owner": m.owner, "due_at": iso(m.due_at),
        "recorded_at": iso(m.recorded_at), "recorded_by": m.recorded_by, "reminded_at": iso(m.reminded_at),
        "status": measure_status(m, now, rules),
        "verification": None if m.verified_at is None else {
            "verdict": m.verdict, "verified_by": m.verified_by, "verified_at": iso(m.verified_at),
            "note": m.verify_note},
        "effect": found.as_dict(),
    }


async def views(uow: Any, rows: Sequence[MeasureRow], as_of: datetime) -> list[dict[str, Any]]:
    rules: MeasureRules = uow.deps.rules.measures
    return [view(m, await measured(uow, m, as_of=as_of), uow.now(), rules) for m in rows]
