"""Intake: validates upstream events, keeps the customer files, re-publishes canonical events,
dead-letters bad input with a reason."""

from pathlib import Path

from shared.events import UPSTREAM_CRM, UPSTREAM_DMS, UPSTREAM_ERP, UPSTREAM_SALES
from shared.kafka.consumer import Subscription
from shared.runtime import ServiceDefinition, ServiceRuntime

from services.intake import handlers
from services.intake.config import IntakeRules


async def _on_start(runtime: ServiceRuntime) -> None:
    runtime.state.setdefault("rules", IntakeRules())


definition = ServiceDefinition(
    name="intake",
    description="The door from upstream sales, DMS, ERP and CRM systems, and the system of record for customer files.",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(UPSTREAM_DMS, {"VehiclePickedUp": handlers.on_vehicle_picked_up}, strict_types=True, check_key=True),
        Subscription(UPSTREAM_SALES, {}, strict_types=True, check_key=True),
        Subscription(UPSTREAM_ERP, {}, strict_types=True, check_key=True),
        Subscription(UPSTREAM_CRM, {}, strict_types=True, check_key=True),
    ],
    on_start=_on_start,
)
