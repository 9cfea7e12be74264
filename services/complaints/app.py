"""Complaints: cases with SLA timers, a multi-level escalation ladder, resolution, the
customer's confirmation, close or reopen."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from services.complaints import api, handlers, measure_api, measure_handlers, store
from services.complaints.commands import ERASE_FILES_TIMER, SLA_TIMER, WEEKLY_REPORT_TIMER
from services.complaints.config import ComplaintRules, ComplaintsDeps
from services.complaints.documents import DocumentFiles
from services.complaints.reports import kpi_figures
from services.complaints.tables import load_tables
from shared import metrics
from shared.events import FOLLOWUP, INTAKE, QUALITY
from shared.kafka.consumer import Subscription
from shared.replay import Comparison
from shared.runtime import ServiceDefinition, ServiceRuntime


async def _deps(runtime: ServiceRuntime[ComplaintsDeps], overrides: Mapping[str, Any]) -> ComplaintsDeps:
    """The rules (overridable), and the tables and document store they name."""
    rules: ComplaintRules = overrides.get("rules") or ComplaintRules()
    deps = ComplaintsDeps(rules=rules, tables=load_tables(rules.classification_file, rules.routing_file,
                                                          rules.directory_file),
                          documents=DocumentFiles(rules.documents_root()))
    return replace(deps, **{name: value for name, value in overrides.items() if name != "rules"})


async def _on_start(runtime: ServiceRuntime[ComplaintsDeps]) -> None:
    async with runtime.transaction() as uow:
        handlers.schedule_weekly_report(uow, after=uow.now())


async def _kpis(runtime: ServiceRuntime[ComplaintsDeps]) -> None:
    """KPI gauges from the database, so every replica reports the same figures."""
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn:
        figures = kpi_figures(await store.kpi_counts(conn))
    for level, count in figures["open_by_level"].items():
        metrics.COMPLAINTS_OPEN.labels(level).set(count)
    for breach, count in figures["sla_breaches"].items():
        metrics.COMPLAINT_SLA_BREACHES.labels(breach).set(count)

    def value(v: float | None) -> float:
        return math.nan if v is None else v  # no data yet, rather than a misleading 0

    metrics.COMPLAINT_SLA_COMPLIANCE.set(value(figures["sla_compliance"]))
    metrics.COMPLAINT_MEAN_SECONDS_TO_ACKNOWLEDGE.set(value(figures["mean_seconds_to_acknowledge"]))
    metrics.COMPLAINT_MEAN_SECONDS_TO_RESOLVE.set(value(figures["mean_seconds_to_resolve"]))
    metrics.COMPLAINT_MEAN_WORKING_SECONDS_TO_ACKNOWLEDGE.set(value(figures["mean_working_seconds_to_acknowledge"]))
    metrics.COMPLAINT_MEAN_WORKING_SECONDS_TO_RESOLVE.set(value(figures["mean_working_seconds_to_resolve"]))
    metrics.COMPLAINT_REOPEN_RATE.set(value(figures["reopen_rate"]))
    metrics.COMPLAINT_ESCALATIONS.set(figures["escalations"])


REPLAY = (
    Comparison("cases opened from events", "cases", "complaint_id",
               ("complaint_ref", "customer_id", "vin", "channel", "category", "category_source", "severity",
                "severity_source", "department", "description", "part_category", "followup_id", "source", "filed_at",
                "correlation_id"),
               "SELECT complaint_id FROM cases WHERE correlation_id = ANY(:correlations) AND source <> 'http'",
               note="a case's lifecycle (acknowledged, resolved …) comes from handlers' HTTP commands"),
    Comparison("workshop visits (measures' exposure)", "measure_visits", "repair_order_id",
               ("picked_up_at", "dealer_id"), "SELECT repair_order_id FROM measure_visits WHERE event_id = ANY(:ids)"),
    Comparison("defect reports by part category (measures' counts)", "measure_defects", "report_id",
               ("category", "reported_at"),
               "SELECT report_id FROM measure_defects WHERE event_id = ANY(:ids)"),
)


def _router() -> APIRouter:
    """The cases' routes and the rectification measures' (measure_api)."""
    r = APIRouter()
    r.include_router(api.router())
    r.include_router(measure_api.router())
    return r


definition: ServiceDefinition[ComplaintsDeps] = ServiceDefinition(
    name="complaints",
    description="Complaint cases, SLA clocks, the escalation ladder and the customer's confirmation.",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(INTAKE, {
            "ComplaintFiled": handlers.on_complaint_filed(INTAKE),
            "CustomerErased": handlers.on_customer_erased,  # issue 19: the customer's personal values go
            # the counts a rectification measure's effect is measured with (docs/measures.md)
            "VehiclePickedUp": measure_handlers.on_vehicle_picked_up,
            "PartDefectReported": measure_handlers.on_part_defect_reported,
        }),
        Subscription(FOLLOWUP, {
            "ComplaintFiled": handlers.on_complaint_filed(FOLLOWUP),
            "FollowUpCompleted": handlers.on_followup_completed,
        }),
        Subscription(QUALITY, {"QualityAlertRaised": measure_handlers.on_quality_alert_raised}),
    ],
    timers={SLA_TIMER: handlers.on_sla_timer, WEEKLY_REPORT_TIMER: handlers.on_weekly_report,
            ERASE_FILES_TIMER: handlers.on_erase_files,
            measure_handlers.MEASURE_DUE_TIMER: measure_handlers.on_measure_due},
    router=_router,
    deps=_deps,
    kpis=_kpis,
    on_start=_on_start,
    replay=REPLAY,
    replay_keeps=("erased_customers",),
)
