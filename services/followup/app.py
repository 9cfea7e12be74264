"""Follow-up: return-visit calls, the agents' call queue and outcomes, campaign calls,
maintenance reminders, loyalty."""

from pathlib import Path

from shared.events import INTAKE
from shared.kafka.consumer import Subscription
from shared.runtime import ServiceDefinition, ServiceRuntime

from services.followup import handlers
from services.followup.config import FollowUpRules


async def _on_start(runtime: ServiceRuntime) -> None:
    runtime.state.setdefault("rules", FollowUpRules())


definition = ServiceDefinition(
    name="followup",
    description="Return visits: the first call 3-7 days after pickup, the second within 7 days, the agents' queue.",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[Subscription(INTAKE, {"VehiclePickedUp": handlers.on_vehicle_picked_up})],
    on_start=_on_start,
)
