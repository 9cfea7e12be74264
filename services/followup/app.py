"""Follow-up: return-visit calls, the agents' call queue and outcomes, campaign calls,
maintenance reminders, lost customers, loyalty."""

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.followup import erasure, feedback_items, handlers, store
from services.followup.api import figures_with_rates, router
from services.followup.config import FollowUpDeps, FollowUpRules
from services.followup.handlers import DEADLINES, TIMERS, ensure_weekly_report
from shared import metrics
from shared.db import acquire
from shared.events import COMPLAINTS, INTAKE, QUALITY
from shared.kafka.consumer import Subscription
from shared.replay import Comparison
from shared.runtime import ServiceDefinition, ServiceRuntime

KINDS = ("first_visit", "second_visit", "complaint_confirmation", "campaign_call", "lost_customer",
         "maintenance_reminder", "feedback_answer", "feedback_confirmation")


async def _deps(runtime: ServiceRuntime[FollowUpDeps], overrides: Mapping[str, Any]) -> FollowUpDeps:
    return replace(FollowUpDeps(rules=FollowUpRules()), **overrides)


async def _on_start(runtime: ServiceRuntime[FollowUpDeps]) -> None:
    async with runtime.transaction() as uow:
        ensure_weekly_report(uow)


async def _kpis(runtime: ServiceRuntime[FollowUpDeps]) -> None:
    rules = runtime.deps.rules
    now = runtime.clock.now()
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        figures = figures_with_rates(await store.kpis(conn, now - timedelta(days=rules.kpi_window_days), now, None,
                                                      None, rules.satisfied_score))
    # No pickups or scores in the window: "no data" (NaN), not a rate of 0 that would raise an alert.
    warranty, satisfaction = figures["warranty_return_visit_rate"], figures["satisfaction_rate"]
    metrics.WARRANTY_RETURN_VISIT_RATE.set(float("nan") if warranty is None else warranty)
    metrics.SATISFACTION_RATE.set(float("nan") if satisfaction is None else satisfaction)
    for kind in KINDS:
        metrics.FOLLOWUPS_OPEN.labels(kind).set(figures["open"].get(kind, 0))
        metrics.FOLLOWUPS_OVERDUE.labels(kind).set(figures["overdue"].get(kind, 0))
    async with acquire(runtime.pool) as conn:
        waiting = await feedback_items.unanswered(conn)
        items = await feedback_items.figures(conn, now - timedelta(days=rules.kpi_window_days), now)
    for state, n in waiting.items():
        metrics.FEEDBACK_ITEMS_OPEN.labels(state).set(n)
    in_time = items["answered_in_time_rate"]
    metrics.FEEDBACK_ITEMS_IN_TIME_RATE.set(float("nan") if in_time is None else in_time)


REPLAY = (
    Comparison("follow-ups scheduled from events", "followups", "followup_id",
               ("kind", "customer_id", "vin", "dealer_id", "region", "campaign_id", "complaint_id", "due_from", "due_by",
                "timezone", "mileage_km", "event_at", "correlation_id", "scheduled_event_id"),
               """SELECT followup_id FROM followups WHERE reason_event_id = ANY(:ids::text[])
                    AND kind IN ('first_visit', 'campaign_call', 'complaint_confirmation')""",
               note="status, attempts and outcome come from agents' calls; priority from their feedback (loyalty)"),
    # owners.py: the owner the rules give each customer (a supervisor's choice is an act, not in the log)
    Comparison("tracking owners the rules gave", "customer_owners", "customer_id", ("rule_owner", "rule_source"),
               "SELECT customer_id FROM customer_owners WHERE rule_cause = ANY(:ids)",
               note="the owner a supervisor chose is kept apart (owner, source); the rules' choice is compared"),
)


definition: ServiceDefinition[FollowUpDeps] = ServiceDefinition(
    name="followup",
    description=(
        "Return visits: the first call 3-7 days after pickup, the second within 7 days, complaint confirmations, "
        "campaign calls two weeks ahead, maintenance reminders, lost customers; the agents' queue and registers."
    ),
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(INTAKE, {
            "CustomerRegistered": handlers.on_customer, "CustomerUpdated": handlers.on_customer,
            "CustomerContactCorrected": handlers.on_customer, "ConsultationRecorded": handlers.on_consultation,
            "VehicleSold": handlers.on_vehicle_sold, "VehiclePickedUp": handlers.on_vehicle_picked_up,
            "CampaignAnnounced": handlers.on_campaign_announced,
            # issue 19: the customer's personal values go, ids, dates and outcomes stay (erasure.py)
            "CustomerErased": erasure.on_customer_erased,
        }),
        # A recall announced by quality from a confirmed batch problem: calls to the owners of its VINs.
        Subscription(QUALITY, {"CampaignAnnounced": handlers.on_campaign_announced}),
        Subscription(COMPLAINTS, {
            name: handlers.on_complaint_state
            for name in ("ComplaintOpened", "ComplaintReopened", "ComplaintResolved", "ComplaintClosed")
        }),
    ],
    deps=_deps,
    timers=TIMERS,
    deadlines=DEADLINES + feedback_items.DEADLINES,
    router=router,
    kpis=_kpis,
    on_start=_on_start,
    replay=REPLAY,
    replay_keeps=("erased_customers",),
)
