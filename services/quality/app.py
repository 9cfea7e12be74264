"""Quality: defect reports on important parts, units in service, statistical early-warning
alerts to the quality inspection department, parts-shipment accuracy."""

from shared.runtime import ServiceDefinition

definition = ServiceDefinition(
    name="quality",
    description="Early warning on important parts and parts-shipment accuracy.",
    migrations=None,
)
