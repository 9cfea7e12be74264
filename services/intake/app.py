"""Intake: validates upstream events, keeps the customer files, re-publishes canonical events,
dead-letters bad input with a reason."""

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.intake import store
from services.intake.api import router
from services.intake.config import IntakeDeps, IntakeRules
from services.intake.handlers import HANDLERS
from shared import metrics
from shared.db import acquire
from shared.kafka.consumer import Subscription
from shared.replay import Comparison
from shared.runtime import ServiceDefinition, ServiceRuntime


async def _deps(runtime: ServiceRuntime[IntakeDeps], overrides: Mapping[str, Any]) -> IntakeDeps:
    return replace(IntakeDeps(rules=IntakeRules()), **overrides)


async def _kpis(runtime: ServiceRuntime[IntakeDeps]) -> None:
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        files, incomplete = await store.file_counts(conn)
        flagged = await store.flagged_counts(conn)
    for name in ("phone", "email"):
        metrics.CUSTOMER_FILES_FLAGGED.labels(name).set(flagged.get(name, 0))
    metrics.CUSTOMER_FILES.set(files)
    metrics.CUSTOMER_FILES_INCOMPLETE.set(incomplete)


REPLAY = (
    Comparison("visits", "visits", "repair_order_id",
               ("vin", "customer_id", "dealer_id", "picked_up_at", "service_type", "items", "mileage_km", "advisor_id",
                "next_service_due_at", "next_service_due_km"),
               "SELECT repair_order_id FROM visits WHERE event_id = ANY(:ids)"),
    Comparison("receipts", "receipts", "receipt_id", ("repair_order_id", "vin", "returned_at", "rating", "comments"),
               "SELECT receipt_id FROM receipts WHERE event_id = ANY(:ids)"),
    Comparison("customer files", "customers", "customer_id",
               ("name", "phone", "email", "address", "region", "person_in_charge", "locale", "timezone", "consent",
                "id_derived"),
               """SELECT customer_id FROM customer_history WHERE event_id = ANY(:ids)
                  UNION SELECT customer_id FROM visits WHERE event_id = ANY(:ids)""",
               "SELECT customer_id FROM customers WHERE customer_id = ANY(:keys) AND updated_at >= :until"),
    Comparison("vehicle files", "vehicles", "vin",
               ("customer_id", "plate", "model", "dealer_id", "region", "sale_id", "sold_at", "warranty_months",
                "warranty_km"),
               "SELECT vin FROM visits WHERE event_id = ANY(:ids)",
               "SELECT vin FROM vehicles WHERE vin = ANY(:keys) AND updated_at >= :until"),
)


definition: ServiceDefinition[IntakeDeps] = ServiceDefinition(
    name="intake",
    description=(
        "The door from upstream sales, DMS, ERP and CRM systems (Kafka topics upstream.* or the signed webhook), "
        "and the system of record for customer files."
    ),
    migrations=Path(__file__).parent / "migrations",
    # Every upstream event type is validated strictly: an unknown type, a key that is not the
    # catalog's, or a newer schema version is dead-lettered with the reason.
    subscriptions=[Subscription(topic, handlers, strict_types=True, check_key=True) for topic, handlers in HANDLERS.items()],
    router=router,
    deps=_deps,
    kpis=_kpis,
    replay=REPLAY,
    replay_keeps=("erasures",),
)
