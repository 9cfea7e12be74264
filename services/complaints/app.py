"""Complaints: cases with SLA timers, a multi-level escalation ladder, resolution, the
customer's confirmation, close or reopen."""

from shared.runtime import ServiceDefinition

definition = ServiceDefinition(
    name="complaints",
    description="Complaint cases, SLA clocks and the escalation ladder.",
    migrations=None,
)
