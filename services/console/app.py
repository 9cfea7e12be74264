"""The console: the people's pages (port 8000). Its own schema holds staff accounts, sessions,
the audit log, inbound calls, and a read model of every customer's story kept from the
aftersales.* topics; actions go to the services' APIs with the person's signed token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from services.console import handlers, pages
from services.console.clients import Services
from services.console.config import ConsoleDeps, ConsoleRules
from services.console.i18n import LOCALES, environment
from services.console.tokens import signing_key
from shared.events import COMPLAINTS, FOLLOWUP, INTAKE, NOTIFIER
from shared.kafka.consumer import Subscription
from shared.runtime import ServiceDefinition, ServiceRuntime

READ_MODEL_TABLES = ("customers", "phones", "customer_changes", "vehicles", "visits", "receipts", "followups", "calls",
                     "complaints", "complaint_events", "notifications", "shipment_lines", "shipment_discrepancies")


async def _deps(runtime: ServiceRuntime[ConsoleDeps], overrides: Mapping[str, Any]) -> ConsoleDeps:
    """The rules (overridable), the clients of the other services (tests give in-process
    `transports`) and the templates per locale."""
    rules: ConsoleRules = overrides.get("rules") or ConsoleRules()
    key = signing_key(runtime.settings.console_signing_key.get_secret_value())
    transports: dict[str, httpx.AsyncBaseTransport] | None = overrides.get("transports")
    deps = ConsoleDeps(rules=rules, services=Services(runtime.settings, rules, key, transports),
                       templates={locale: environment(locale) for locale in LOCALES})
    return replace(deps, **{k: v for k, v in overrides.items() if k not in ("rules", "transports")})


async def _on_start(runtime: ServiceRuntime[ConsoleDeps]) -> None:
    pages.install(runtime)


async def _close_clients(runtime: ServiceRuntime[ConsoleDeps]) -> None:
    await runtime.deps.services.close()


COMPLAINT_STEPS = ("ComplaintAcknowledged", "ComplaintAssigned", "ComplaintEscalated", "ComplaintResolved",
                   "ComplaintClosed", "ComplaintReopened", "ComplaintPended", "ComplaintResumed")

definition: ServiceDefinition[ConsoleDeps] = ServiceDefinition(
    name="console",
    description="The people's console: sign-in, the agents' desk, search, and each customer's whole story.",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(INTAKE, {
            "CustomerRegistered": handlers.on_customer_registered, "CustomerUpdated": handlers.on_customer_updated,
            "VehicleSold": handlers.on_vehicle_sold, "VehiclePickedUp": handlers.on_vehicle_picked_up,
            "ReceiptRecorded": handlers.on_receipt_recorded,
            "PartShipped": handlers.on_part_shipped, "PartShipmentDiscrepancy": handlers.on_part_discrepancy,
            "CustomerContactCorrected": handlers.on_customer_updated,  # an agent's correction, applied alike
            "CustomerErased": handlers.on_customer_erased,
        }),
        Subscription(FOLLOWUP, {
            "FollowUpScheduled": handlers.on_followup_scheduled,
            **{name: handlers.on_followup_status
               for name in ("FollowUpDue", "FollowUpOverdue", "FollowUpEscalated", "FollowUpExpired")},
            "FollowUpAttemptRecorded": handlers.on_attempt_recorded,
            "FollowUpCompleted": handlers.on_followup_completed, "FeedbackRecorded": handlers.on_feedback_recorded,
            "InboundCallRecorded": handlers.on_inbound_call,
        }),
        Subscription(COMPLAINTS, {
            "ComplaintOpened": handlers.on_complaint_opened,
            **{name: handlers.on_complaint_step for name in COMPLAINT_STEPS},
        }),
        Subscription(NOTIFIER, {
            name: handlers.on_notification
            for name in ("NotificationSent", "NotificationFailed", "NotificationSuppressed")
        }),
    ],
    deps=_deps,
    router=pages.router,
    on_start=_on_start,
    on_stop=_close_clients,
)
