"""Intake: validates upstream events, keeps the customer files, re-publishes canonical events,
dead-letters bad input with a reason."""

from pathlib import Path

from shared import metrics
from shared.db import acquire
from shared.kafka.consumer import Subscription
from shared.runtime import ServiceDefinition, ServiceRuntime

from services.intake import store
from services.intake.api import router
from services.intake.config import IntakeRules
from services.intake.handlers import HANDLERS


async def _on_start(runtime: ServiceRuntime) -> None:
    runtime.state.setdefault("rules", IntakeRules())


async def _kpis(runtime: ServiceRuntime) -> None:
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        files, incomplete = await store.file_counts(conn)
    metrics.CUSTOMER_FILES.set(files)
    metrics.CUSTOMER_FILES_INCOMPLETE.set(incomplete)


definition = ServiceDefinition(
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
    kpis=_kpis,
    on_start=_on_start,
)
