"""`aftersales bench pipeline`: VehiclePickedUp on upstream.dms → FollowUpScheduled on
aftersales.followup, through intake and followup running as their own processes, beside the
pass-through baseline of the same run (see `harness`).

Two passes each: throughput (all N events as fast as possible; events/s = N / (last output -
first publish)) and latency at a fixed rate (default half the measured throughput).
"""

from __future__ import annotations

from aftersales.bench.harness import Comparison, compare


async def run(events: int, *, rate: float = 0, latency_rate: float | None = None, keep: bool = False,
              profile: bool = False, record: bool = True) -> Comparison:
    return await compare("pipeline", events, services=("intake", "followup"), output_topic="aftersales.followup",
                         output_type="FollowUpScheduled", rate=rate, latency_rate=latency_rate, keep=keep,
                         profile=profile, record=record)
