"""Quality's handlers: one per consumed event type and one per timer kind. Each takes its
batch: load what it needs, apply the domain, store, publish."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from services.quality import erasure, erasure_store, figures, monitor, recalls, store
from services.quality.config import QualityDeps
from services.quality.domain import (
    Counting,
    DefectReport,
    cells_for,
    count_once,
    next_weekly_report_at,
    resolve,
    week_bounds,
    week_label,
)
from services.quality.monitor import Arrival, EventRef, rules
from shared.events import Event
from shared.events import canonical as c
from shared.timers import Timer
from shared.uow import UnitOfWork

Uow = UnitOfWork[QualityDeps]

LOOK = "look"
WEEKLY_REPORTS = "weekly_reports"
# A defect report, from intake (dealers, warehouse, field service) or from a complaint.
Reported = Event[c.PartDefectReported] | Event[c.ComplaintPartDefectReported]


# ---------------------------------------------------------------------------------------
# Units in service


async def on_vehicle_sold(uow: Uow, events: list[Event[c.VehicleSold]]) -> None:
    """Units in service from the parts list; reports that waited for this sale are resolved."""
    latest: dict[str, Event[c.VehicleSold]] = {}
    for event in events:
        seen = latest.get(event.data.vin)
        if seen is None or event.occurred_at >= seen.occurred_at:
            latest[event.data.vin] = event
    await store.lock_vehicles(uow.conn, latest)
    written = await store.upsert_vehicles(uow.conn, [
        {"vin": vin, "model": e.data.model, "sold_at": e.data.sold_at, "dealer_id": e.data.dealer_id,
         "region": e.data.region, "event_id": e.event_id, "occurred_at": e.occurred_at, "parts": e.data.parts}
        for vin, e in latest.items()
    ], uow.now())
    await recalls.keep_sale_owners(uow, list(latest.values()))
    waiting = await store.unresolved_reports_of(uow.conn, written)
    if not waiting:
        return
    fitted = await store.fitted_parts(uow.conn, written)
    changed = []
    for row in waiting:
        model, parts = fitted[row["vin"]]
        resolved = resolve(store.as_reported(row), model, parts)
        if (resolved.batch, resolved.supplier_id, resolved.model, resolved.part_no, resolved.resolution) != (
            row["batch"], row["supplier_id"], row["model"], row["part_no"], row["resolution"]
        ):
            changed.append(resolved)
    await store.update_resolutions(uow.conn, changed)
    arrivals = await _recount(uow, {(r.vin, r.category) for r in changed if r.vin}, new_ids=set())
    await monitor.on_arrivals(uow, arrivals)


# ---------------------------------------------------------------------------------------
# Defect reports


async def on_part_defect_reported(uow: Uow, events: list[Event[c.PartDefectReported]]) -> None:
    """From dealers, the after-sale warehouse and field service (through intake)."""
    await _receive(uow, [(event, DefectReport(
        report_id=d.report_id, source="intake", category=d.category, failure_mode=d.failure_mode,
        reported_at=d.reported_at, reported_by=d.reported_by, vin=d.vin, part_no=d.part_no, batch=d.batch,
        supplier_id=d.supplier_id, model=d.model, mileage_km=d.mileage_km, description=d.description,
    )) for event in events for d in [event.data]])


async def on_complaint_part_defect(uow: Uow, events: list[Event[c.ComplaintPartDefectReported]]) -> None:
    """From product-quality complaints: batch and supplier often unknown, taken from the vehicle."""
    await _receive(uow, [(event, DefectReport(
        report_id=d.report_id, source="complaints", category=d.category, failure_mode=d.failure_mode,
        reported_at=d.reported_at, reported_by=d.reported_by, vin=d.vin, part_no=d.part_no, batch=d.batch,
        supplier_id=d.supplier_id, model=d.model, mileage_km=d.mileage_km, complaint_id=d.complaint_id,
        description=d.description,
    )) for event in events for d in [event.data]])


async def _receive(uow: Uow, items: list[tuple[Reported, DefectReport]]) -> None:
    vins = {report.vin for _, report in items if report.vin}
    await store.lock_vehicles(uow.conn, vins)  # serialises with the vehicle's sale and its other reports
    items = await _without_erased_texts(uow, items)
    fitted = await store.fitted_parts(uow.conn, vins)
    rows = []
    for event, original in items:
        model, parts = fitted.get(original.vin, (None, None)) if original.vin else (None, None)
        rows.append((original, resolve(original, model, parts), event.event_id, event.correlation_id))
    new_ids = await store.insert_reports(uow.conn, rows, uow.now())
    for _, resolved, _, _ in rows:
        if resolved.report_id in new_ids and resolved.resolution != "as_reported":
            uow.log.info("defect report resolved", report_id=resolved.report_id, resolution=resolved.resolution,
                         note=resolved.resolution_note)
    fresh = [(resolved, event_id, correlation_id) for _, resolved, event_id, correlation_id in rows
             if resolved.report_id in new_ids]
    arrivals = await _recount(uow, {(r.vin, r.category) for r, _, _ in fresh if r.vin}, new_ids)
    arrivals += [
        Arrival(r.report_id, tuple(c.key for c in cells_for(r.category, r.batch, r.supplier_id, r.model)),
                r.reported_at, EventRef(event_id, correlation_id))
        for r, event_id, correlation_id in fresh if not r.vin
    ]
    await monitor.on_arrivals(uow, arrivals)


async def _without_erased_texts(uow: Uow, items: list[tuple[Reported, DefectReport]]
                                ) -> list[tuple[Reported, DefectReport]]:
    """A report on an erased owner's vehicle, or from an erased customer's complaint, that
    occurred at or before the erasure is filed without its free text (it may quote the owner)."""
    by_vin = await erasure_store.erased_by_vin(uow.conn, {r.vin for _, r in items if r.vin and r.description})
    by_complaint = await erasure_store.erased_by_complaint(
        uow.conn, {r.complaint_id for _, r in items if r.complaint_id and r.description})
    if not by_vin and not by_complaint:
        return items
    return [(event, report if erasure.kept(by_vin.get(report.vin or ""), event.occurred_at)
             and erasure.kept(by_complaint.get(report.complaint_id or ""), event.occurred_at)
             else replace(report, description=None)) for event, report in items]


async def _recount(uow: Uow, pairs: set[tuple[str, str]], new_ids: set[str]) -> list[Arrival]:
    """Count each defect of these vehicles' part categories once; return the reports that are
    now counted in cells they were not counted in before."""
    stored = await store.reports_of(uow.conn, pairs)
    countings = count_once([s.report for s in stored], timedelta(days=rules(uow).duplicate_window_days))
    await store.update_countings(uow.conn, [countings[s.report.report_id] for s in stored
                                            if countings[s.report.report_id] != s.counting])
    arrivals = []
    for s in stored:
        after = _cell_keys(s.report.category, countings[s.report.report_id])
        before = set() if s.report.report_id in new_ids else _cell_keys(s.report.category, s.counting)
        if added := tuple(sorted(after - before)):
            arrivals.append(Arrival(s.report.report_id, added, s.report.reported_at,
                                    EventRef(s.event_id, s.correlation_id)))
    return arrivals


def _cell_keys(category: str, counting: Counting) -> set[str]:
    if not counting.counted:
        return set()
    return {c.key for c in cells_for(category, counting.batch, counting.supplier_id, counting.model)}


# ---------------------------------------------------------------------------------------
# Parts shipments and complaints


async def on_part_shipped(uow: Uow, events: list[Event[c.PartShipped]]) -> None:
    latest: dict[str, Event[c.PartShipped]] = {}
    for event in events:  # one shipment sent twice in a batch: the later correction wins
        latest[event.data.shipment_id] = event
    await store.upsert_shipments(uow.conn, [
        {"shipment_id": e.data.shipment_id, "order_id": e.data.order_id, "dealer_id": e.data.dealer_id,
         "shipped_at": e.data.shipped_at, "event_id": e.event_id, "lines": e.data.lines}
        for e in latest.values()
    ], uow.now())


async def on_shipment_discrepancy(uow: Uow, events: list[Event[c.PartShipmentDiscrepancy]]) -> None:
    """Kept even before its shipment is on file; it counts once the line is."""
    await store.insert_discrepancies(uow.conn, [
        {"shipment_id": e.data.shipment_id, "line_no": e.data.line_no, "kind": e.data.kind,
         "reported_at": e.data.reported_at, "notes": e.data.notes, "event_id": e.event_id}
        for e in events
    ])


async def on_complaint_opened(uow: Uow, events: list[Event[c.ComplaintOpened]]) -> None:
    await store.insert_complaints(uow.conn, [
        {"complaint_id": e.data.complaint_id, "customer_id": e.data.customer_id, "category": e.data.category,
         "part_category": e.data.part_category, "vin": e.data.vin, "severity": e.data.severity,
         "filed_at": e.data.filed_at, "event_id": e.event_id}
        for e in events
    ])


# ---------------------------------------------------------------------------------------
# Timers: the scheduled looks and the weekly reports


def schedule_look(uow: Uow, after: datetime) -> None:
    """Arm the look at the end of the look interval holding `after` (a no-op if it is armed)."""
    at = monitor.policy(uow).look_at(after)
    uow.schedule_timer(LOOK, at.isoformat(), at)


async def on_look(uow: Uow, timers: list[Timer]) -> None:
    for timer in sorted(timers, key=lambda t: t.due_at):
        raised = await monitor.look(uow, timer.due_at, timer)
        uow.log.info("early-warning look", at=timer.due_at.isoformat(), alerts_raised=raised)
        schedule_look(uow, timer.due_at)


def schedule_weekly_reports(uow: Uow, week: str) -> None:
    """Arm the weekly reports of `week`: due at the first report time after the week ends."""
    r = rules(uow)
    _, end = week_bounds(week, r.timezone)
    due = next_weekly_report_at(end, r.weekly_report_weekday, r.weekly_report_time, r.timezone)
    uow.schedule_timer(WEEKLY_REPORTS, week, due, {"week": week})


async def on_weekly_reports(uow: Uow, timers: list[Timer]) -> None:
    """QualityWeeklyReport and PartsAccuracyReport for the past week, then arm the next week's."""
    r = rules(uow)
    for timer in timers:
        week = str(timer.payload["week"])
        start, end = week_bounds(week, r.timezone)
        for event_type, data in (
            ("QualityWeeklyReport", await figures.quality_weekly(uow.conn, week, r)),
            ("PartsAccuracyReport", await figures.parts_accuracy_week(uow.conn, week, r)),
        ):
            uow.publish(event_type, c.WeeklyReport(week=week, week_start=start.date(), generated_at=uow.now(),
                                                   figures=data), cause=timer, occurred_at=timer.due_at)
        schedule_weekly_reports(uow, week_label(end + timedelta(days=1), r.timezone))
