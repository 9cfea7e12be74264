"""Quality: defect reports on important parts, units in service, statistical early-warning
alerts to the quality inspection department, parts-shipment accuracy, the weekly quality report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.quality import erasure, figures, handlers, recalls
from services.quality.api import router
from services.quality.config import QualityDeps, QualityRules, load_baseline_rates
from services.quality.domain import next_weekly_report_at, previous_week
from shared import metrics
from shared.events import COMPLAINTS, FOLLOWUP, INTAKE
from shared.kafka.consumer import Subscription
from shared.replay import Comparison
from shared.runtime import ServiceDefinition, ServiceRuntime


async def _deps(runtime: ServiceRuntime[QualityDeps], overrides: Mapping[str, Any]) -> QualityDeps:
    """The rules (overridable), and the baseline rates and monitoring policy they name."""
    rules: QualityRules = overrides.get("rules") or QualityRules()
    deps = QualityDeps(rules=rules, rates=load_baseline_rates(rules.baseline_rates_file), policy=rules.policy())
    rules.early_warning()  # a budget split or factor that does not add up stops the service here, with the reason
    return replace(deps, **{name: value for name, value in overrides.items() if name != "rules"})


async def _on_start(runtime: ServiceRuntime[QualityDeps]) -> None:
    rules = runtime.deps.rules
    # Arm the next look and the next weekly reports; (kind, ref) is unique, so a replica that
    # starts later, or a restart, arms nothing twice.
    now = runtime.clock.now()
    # The next weekly reports go out at the first report time from now, for the week before it.
    due = next_weekly_report_at(now, rules.weekly_report_weekday, rules.weekly_report_time, rules.timezone)
    week = previous_week(due, rules.timezone)
    async with runtime.transaction() as uow:
        handlers.schedule_look(uow, now)
        handlers.schedule_weekly_reports(uow, week)


async def _kpis(runtime: ServiceRuntime[QualityDeps]) -> None:
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn:
        k = await figures.kpis(conn, runtime.clock.now(), runtime.deps.rules)
    metrics.QUALITY_ALERTS_OPEN.set(k["quality_alerts_open"])
    for state, n in k["quality_alerts_by_state"].items():
        metrics.QUALITY_ALERTS_BY_STATE.labels(state).set(n)
    accuracy = k["parts_shipment_accuracy"]["accuracy"]
    # No lines shipped in the window: "no data" (NaN), not an accuracy of 0 that would raise an alert.
    metrics.PARTS_SHIPMENT_ACCURACY.set(float("nan") if accuracy is None else accuracy)
    for category in set(k["defect_reports"]) | set(runtime.deps.rules.important_categories):
        metrics.QUALITY_DEFECT_REPORTS.labels(category).set(k["defect_reports"].get(category, 0))
    metrics.QUALITY_REPORTS_UNRESOLVED.set(k["reports_unresolved"])


REPLAY = (
    Comparison("vehicles in service", "vehicles", "vin", ("model", "sold_at", "dealer_id", "region"),
               "SELECT vin FROM vehicles WHERE event_id = ANY(:ids)"),
    Comparison("parts in service", "vehicle_parts", "vin || ':' || line",
               ("category", "part_no", "batch", "supplier_id", "model", "sold_at"),
               "SELECT p.vin || ':' || p.line FROM vehicle_parts p JOIN vehicles v USING (vin) WHERE v.event_id = ANY(:ids)"),
    Comparison("defect reports", "reports", "report_id",
               ("source", "vin", "category", "failure_mode", "reported_part_no", "reported_batch", "reported_supplier_id",
                "reported_model", "mileage_km", "reported_by", "reported_at", "complaint_id", "correlation_id"),
               "SELECT report_id FROM reports WHERE event_id = ANY(:ids)"),
)


definition: ServiceDefinition[QualityDeps] = ServiceDefinition(
    name="quality",
    description="Early warning on important parts (motor, controller, rear axle, differential, frame, front shock "
                "absorber, rim welding) with a controlled false-alarm rate, traceable alerts to the quality "
                "inspection department, parts-shipment accuracy and the weekly quality report.",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(INTAKE, {
            "VehicleSold": handlers.on_vehicle_sold,
            "PartDefectReported": handlers.on_part_defect_reported,
            "PartShipped": handlers.on_part_shipped,
            "PartShipmentDiscrepancy": handlers.on_shipment_discrepancy,
            "VehiclePickedUp": recalls.on_vehicle_picked_up,  # owners; recalled vehicles inspected
            "CustomerErased": erasure.on_customer_erased,  # owner names and report texts scrubbed
        }),
        Subscription(FOLLOWUP, {"FollowUpCompleted": recalls.on_followup_completed}),  # recall calls
        Subscription(COMPLAINTS, {
            "PartDefectReported": handlers.on_complaint_part_defect,
            "ComplaintOpened": handlers.on_complaint_opened,
        }),
    ],
    timers={handlers.LOOK: handlers.on_look, handlers.WEEKLY_REPORTS: handlers.on_weekly_reports},
    router=router,
    deps=_deps,
    kpis=_kpis,
    on_start=_on_start,
    replay=REPLAY,
    replay_keeps=("erased_customers",),
)
