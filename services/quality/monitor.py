"""The early warning, applied: gathers a cell's evidence from the store, asks the domain, and
stores and publishes what it decides.

- On each report's arrival (`on_arrivals`): its cells are marked for the next look; the burst
  rule runs on batch cells; an open alert of the cell is updated with the new report.
- At each scheduled look (`look`, a durable timer at the end of every look interval, daily by
  default): the Poisson test (sequential by default: every report since monitoring started
  against the boundary; or the repeated test of the count at the look) runs on every cell with
  new reports, with all units and reports known then, and raises an alert where it alarms.
  On batch cells (sequential test) the likelihood-ratio tests of issue 20 run beside it
  (services/quality/warning.py: the 3x test on the count and one test per failure mode), each
  at its share of the budget; an alarm of any of them raises the alert (rule `poisson`; the
  alert's details name the test that crossed, `likelihood_ratio`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from services.quality import store
from services.quality.config import QualityDeps, QualityRules
from services.quality.domain import (
    BaselineRates,
    Burst,
    Cell,
    CellEvidence,
    Decision,
    MonitorPolicy,
    PoissonLook,
    alert_id_for,
    cell_look,
    decide,
    find_burst,
)
from services.quality.warning import (
    EarlyWarning,
    LrCrossing,
    burst_applies,
    crossing_details,
    likelihood_ratio_crossings,
    window_expected,
)
from shared.events import canonical as c
from shared.timers import Timer
from shared.uow import UnitOfWork

Uow = UnitOfWork[QualityDeps]


@dataclass(frozen=True)
class EventRef:
    """An event as a cause: what the alert events name as their causation and correlation."""

    event_id: uuid.UUID
    correlation_id: uuid.UUID


@dataclass(frozen=True)
class Arrival:
    """A report newly counted in some cells."""

    report_id: str
    cell_keys: tuple[str, ...]
    reported_at: datetime
    cause: EventRef


def rules(uow: UnitOfWork[QualityDeps]) -> QualityRules:
    return uow.deps.rules


def rates(uow: UnitOfWork[QualityDeps]) -> BaselineRates:
    return uow.deps.rates


def policy(uow: UnitOfWork[QualityDeps]) -> MonitorPolicy:
    return uow.deps.policy


def _just_after(moment: datetime) -> datetime:
    # Evidence windows are half-open (since, until); "as of a report" includes that report.
    return moment + timedelta(microseconds=1)


async def on_arrivals(uow: Uow, arrivals: list[Arrival]) -> None:
    by_cell: dict[str, list[Arrival]] = defaultdict(list)
    for arrival in arrivals:
        for key in arrival.cell_keys:
            by_cell[key].append(arrival)
    if not by_cell:
        return
    keys = sorted(by_cell)
    cells = await store.lock_cells(uow.conn, [Cell.from_key(k) for k in keys], uow.now())
    latest = {k: max(by_cell[k], key=lambda a: (a.reported_at, a.report_id)) for k in keys}
    await store.mark_arrivals(uow.conn, {k: (a.cause.event_id, a.cause.correlation_id) for k, a in latest.items()})
    opened = await store.open_alerts(uow.conn, keys)
    p = policy(uow)
    threshold: float | None = None
    for key in keys:
        cell, row = Cell.from_key(key), cells[key]
        burst = None
        if cell.kind == "batch" and p.burst_reports:
            points = await store.cell_reports(uow.conn, cell, row.since, None)
            burst = find_burst(points, [a.report_id for a in by_cell[key]], p.burst_reports, p.burst_window)
            if burst is not None and not await _burst_applies(uow, cell, row.since, burst.last_at):
                burst = None
        decision = decide(key in opened, None, burst)
        if decision.action == "none":
            continue
        # As of the cell's newest report: another replica, or a late report, may have stored a
        # newer one than those arriving here.
        as_of = latest[key].reported_at
        evidence = await store.cell_evidence(uow.conn, cell, row.since, _just_after(as_of))
        if evidence.latest and evidence.latest > as_of:
            as_of = evidence.latest
            evidence = await store.cell_evidence(uow.conn, cell, row.since, _just_after(as_of))
        if threshold is None:
            threshold = await _threshold(uow)
        figures, crossings = await _figures(uow, cell, evidence, threshold)
        await _publish(uow, cell, row, opened.get(key), decision, figures, as_of, _just_after(as_of), burst,
                       latest[key].cause, crossings)


async def look(uow: Uow, at: datetime, fallback_cause: Timer) -> int:
    """The scheduled look at `at` over every cell with new reports; returns the alerts raised."""
    keys = await store.dirty_cells(uow.conn)
    if not keys:
        return 0
    cells = await store.locked_cells(uow.conn, keys)
    opened = await store.open_alerts(uow.conn, keys)
    threshold = await _threshold(uow)
    modes_by_category: dict[str, dict[str, float]] = {}
    still_dirty: dict[str, bool] = {}
    raised = 0
    for key in sorted(cells):
        cell, row = Cell.from_key(key), cells[key]
        evidence = await store.cell_evidence(uow.conn, cell, row.since, at)
        figures, crossings = await _figures(uow, cell, evidence, threshold, modes_by_category)
        # Keep the cell for the next look when reports lie beyond this one, or when none of its
        # units is known to be in service yet (a report that came before its sale).
        still_dirty[key] = bool(evidence.latest and evidence.latest >= at) or (
            figures.expected == 0 and evidence.observed > 0
        )
        if key in opened:
            continue  # an open alert is updated as each report arrives
        decision = decide(False, figures, None)
        if decision.action == "raise":
            cause: EventRef | Timer = (EventRef(row.last_event_id, row.last_correlation_id)
                                       if row.last_event_id and row.last_correlation_id else fallback_cause)
            await _publish(uow, cell, row, None, decision, figures, at, at, None, cause, crossings)
            raised += 1
    await store.finish_looks(uow.conn, still_dirty, at)
    return raised


async def _threshold(uow: Uow) -> float:
    p = policy(uow)
    return p.threshold(await store.monitored_cells(uow.conn) if p.control_across_cells else 1)


def early_warning(uow: Uow) -> EarlyWarning:
    """The likelihood-ratio tests' settings (read once per rules object: they load the shares file)."""
    rules_ = rules(uow)
    found = _WARNINGS.get(id(rules_))
    if found is None or found[0] is not rules_:
        found = _WARNINGS[id(rules_)] = (rules_, rules_.early_warning())
    return found[1]


_WARNINGS: dict[int, tuple[QualityRules, EarlyWarning]] = {}


async def _burst_applies(uow: Uow, cell: Cell, since: datetime | None, at: datetime) -> bool:
    """The burst rule applies to a batch whose baseline makes its count of reports in a window
    rare anyway (warning.burst_applies); larger batches are left to the per-mode tests."""
    p, r = policy(uow), rates(uow)
    evidence = await store.cell_evidence(uow.conn, cell, since, _just_after(at))
    expected = window_expected(r.rate(cell.category), evidence.exposure.units(_just_after(at).timestamp()),
                               p.burst_window_days, r.unit_month_days)
    return burst_applies(early_warning(uow), expected, p.burst_reports)


async def mode_counts(uow: Uow, category: str) -> dict[str, int]:
    """The category's counted reports by failure mode (all cells, all time): what its baseline
    failure-mode shares are estimated from once there are enough of them."""
    rows = await uow.conn.fetch(
        "SELECT failure_mode, count(*) AS n FROM reports WHERE counted AND category = $1 GROUP BY failure_mode",
        category,
    )
    return {r["failure_mode"]: int(r["n"]) for r in rows}


async def _figures(uow: Uow, cell: Cell, evidence: CellEvidence, threshold: float,
                   modes_by_category: dict[str, dict[str, float]] | None = None,
                   ) -> tuple[PoissonLook, list[LrCrossing]]:
    """The configured test on a cell; on batch cells with the sequential test, the sequential
    test at its share of the budget and the likelihood-ratio tests beside it (an alarm of any
    raises the alert)."""
    r, p = rates(uow), policy(uow)
    rate = r.rate(cell.category)
    if cell.kind != "batch" or p.test != "sequential":
        return cell_look(p, evidence, rate, r.unit_month_days, threshold), []
    warning = early_warning(uow)
    figures = cell_look(p, evidence, rate, r.unit_month_days, threshold * warning.sequential_share)
    if not evidence.report_times or figures.expected <= 0:
        return figures, []
    cache = modes_by_category if modes_by_category is not None else {}
    if cell.category not in cache:
        cache[cell.category] = warning.shares_for(cell.category, await mode_counts(uow, cell.category))
    points = await store.cell_reports(uow.conn, cell, evidence.since, evidence.until)
    since = evidence.since.timestamp() if evidence.since else None
    month_seconds = r.unit_month_days * 86_400.0
    times = [pt.reported_at.timestamp() for pt in points]
    expected_at = [rate * evidence.exposure.unit_seconds(since, t) / month_seconds for t in times]
    window_at = [window_expected(rate, evidence.exposure.units(t), p.window_days, r.unit_month_days) for t in times]
    crossings = likelihood_ratio_crossings(warning, threshold, times, [pt.failure_mode for pt in points],
                                           expected_at, window_at, cache[cell.category], p.min_reports)
    if crossings and not figures.alarm:
        figures = replace(figures, alarm=True)
    return figures, crossings


async def _publish(
    uow: Uow, cell: Cell, row: store.CellRow, current: dict[str, Any] | None, decision: Decision,
    figures: PoissonLook, as_of: datetime, until: datetime, burst: Burst | None, cause: EventRef | Timer,
    crossings: list[LrCrossing] | None = None,
) -> None:
    """Raise a new alert or update the open one with the evidence as of `as_of` (the reports
    in (since, until)), and publish it."""
    p = policy(uow)
    points = await store.cell_reports(uow.conn, cell, row.since, until, limit=rules(uow).alert_listed_reports_max)
    vins = list(dict.fromkeys(pt.vin for pt in points if pt.vin))
    # Reports of vehicles already inspected in a recall of the category: not counted, shown apart.
    apart = await store.cell_reports(uow.conn, cell, row.since, until, limit=rules(uow).alert_listed_reports_max,
                                     after_inspection=True)
    now = uow.now()
    reopened = None
    if current is None:
        # A closed alert of the cell is reopened with the new evidence (the reports since it was
        # closed), not raised afresh: one alert per cell keeps its history and its people.
        reopened = (await store.last_closed_alerts(uow.conn, [cell.key])).get(cell.key)
    if reopened is not None:
        history = list((reopened.get("details") or {}).get("reopenings") or [])
        history.append({"at": now.isoformat(), "closed_at": _iso(reopened.get("closed_at")),
                        "closed_by": reopened.get("closed_by"), "close_note": reopened.get("close_note"),
                        "acknowledged_at": _iso(reopened.get("acknowledged_at")),
                        "acknowledged_by": reopened.get("acknowledged_by"),
                        "previous_observed": reopened["observed"], "previous_since": _iso(reopened.get("since"))})
        await store.reopen_alert(uow.conn, reopened["alert_id"])
        alert: dict[str, Any] = {**reopened, "state": "raised", "rule": decision.rule,
                                 "revision": reopened["revision"] + 1}
    elif current is None:
        alert = {
            "alert_id": alert_id_for(cell.key, row.since), "cell_key": cell.key, "cell": cell.as_dict(),
            "category": cell.category, "rule": decision.rule, "state": "raised", "revision": 0, "raised_at": now,
        }
    else:
        alert = {**current, "revision": current["revision"] + 1}
    alert.update(
        observed=figures.observed, expected=figures.expected, statistic=figures.statistic, p_value=figures.p_value,
        threshold=figures.threshold, as_of=as_of, since=row.since, report_ids=[pt.report_id for pt in points],
        vins=vins, updated_at=now,
        details={
            "units": figures.units, "unit_months": figures.unit_months, "baseline_rate": figures.rate,
            "alpha_month": p.alpha_month, "test": figures.test, "look_interval_days": p.look_interval_days,
            "looks_per_month": p.looks_per_month, "window_days": p.window_days,
            "expected_per_window": figures.expected_per_window, "tail_p_value": figures.tail_p_value,
            "crossed_at": figures.crossed_at.isoformat() if figures.crossed_at else None,
            "critical_count": figures.critical_count, "rules_firing": list(decision.firing),
            "likelihood_ratio": crossing_details(crossings or []),
            "after_inspection": {"count": len(apart), "report_ids": [pt.report_id for pt in apart],
                                 "vins": list(dict.fromkeys(pt.vin for pt in apart if pt.vin))},
            "burst": _burst_details(burst, p) if burst else (current or {}).get("details", {}).get("burst"),
            "reopenings": history if reopened is not None else (current or {}).get("details", {}).get("reopenings",
                                                                                                     []),
        },
    )
    envelope = uow.publish(
        "QualityAlertRaised", alert_event(alert, updated=current is not None or reopened is not None), cause=cause,
        occurred_at=as_of,
        discriminator=f"{alert['alert_id']}:{alert['revision']}",
    )
    alert["last_event_id"] = envelope.event_id
    alert["correlation_id"] = envelope.correlation_id
    await store.save_alert(uow.conn, alert)
    uow.log.info("quality alert " + ("updated" if current else "reopened" if reopened else "raised"),
                 alert_id=alert["alert_id"],
                 cell=cell.label, observed=figures.observed, expected=round(figures.expected, 3), rule=alert["rule"])


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _burst_details(burst: Burst, p: MonitorPolicy) -> dict[str, Any]:
    return {"failure_mode": burst.failure_mode, "count": burst.count, "threshold": p.burst_reports,
            "window_days": p.burst_window_days, "first_at": burst.first_at.isoformat(),
            "last_at": burst.last_at.isoformat(), "report_ids": list(burst.report_ids)}


def alert_title(alert: dict[str, Any]) -> str:
    cell = Cell.from_key(alert["cell_key"])
    p = f", p = {alert['p_value']:.2g}" if alert.get("p_value") is not None else ""
    burst = (alert.get("details") or {}).get("burst")
    if alert["rule"] == "failure_mode_burst" and burst:
        return (f"{cell.label}: {burst['count']} reports of {burst['failure_mode']} within "
                f"{burst['window_days']} days ({alert['observed']} reports vs {alert['expected']:.2f} expected{p})")
    return f"{cell.label}: {alert['observed']} reports vs {alert['expected']:.2f} expected{p}"


def _real(value: float | None) -> float | None:
    return None if value is None else float(value)


def alert_event(alert: dict[str, Any], *, updated: bool) -> c.QualityAlertRaised:
    """QualityAlertRaised data for an alert row."""
    details = alert.get("details") or {}
    burst = details.get("burst") or {}
    return c.QualityAlertRaised(
        alert_id=alert["alert_id"], cell=alert["cell"], rule=alert["rule"], observed=alert["observed"],
        expected=float(alert["expected"]), statistic=_real(alert["statistic"]), p_value=_real(alert["p_value"]),
        threshold=_real(alert["threshold"]), report_ids=alert["report_ids"], vins=alert["vins"],
        raised_at=alert["raised_at"], updated=updated, state=alert["state"], title=alert_title(alert),
        as_of=alert["as_of"], since=alert["since"], units=details.get("units"),
        unit_months=_real(details.get("unit_months")), baseline_rate=_real(details.get("baseline_rate")),
        alpha_month=_real(details.get("alpha_month")), critical_count=details.get("critical_count"),
        rules_firing=details.get("rules_firing"), failure_mode=burst.get("failure_mode"),
        burst_count=burst.get("count"), burst_window_days=burst.get("window_days"), revision=alert["revision"],
    )
