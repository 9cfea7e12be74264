"""`aftersales bench intake`: intake alone. VehiclePickedUp on upstream.dms → the canonical
VehiclePickedUp on aftersales.intake (validated, customer file written, re-published), beside the
pass-through baseline of the same run (see `harness`)."""

from __future__ import annotations

from tools.bench.harness import Comparison, compare


async def run(events: int, *, rate: float = 0, latency_rate: float | None = None, keep: bool = False) -> Comparison:
    return await compare("intake", events, services=("intake",), output_topic="aftersales.intake",
                         output_type="VehiclePickedUp", rate=rate, latency_rate=latency_rate, keep=keep)
