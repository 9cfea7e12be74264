"""`aftersales bench pipeline`: VehiclePickedUp on upstream.dms → FollowUpScheduled on
aftersales.followup, through intake and followup running as their own processes, beside the
pass-through baseline of the same run (see `harness`).

Beside two baselines of the same run: the raw pass-through (aiokafka, no database) and the
guarantees only (two kernel hops: inbox, one outbox row per event, commit after the
transaction, the relay; no business logic). Passes: throughput with a backlog (all N events
as fast as possible; events/s = N / (last output - first publish)), what an event costs
(CPU µs per process, SQL statements and transactions), latency at a fixed rate (default half
the backlog rate), and steady feeds at fractions of the backlog rate (did it keep up).
"""

from __future__ import annotations

from datetime import datetime

from aftersales.progress import Tracker
from tools.bench.harness import Comparison, compare

STEADY = (0.8, 0.9, 1.0)


async def run(events: int, *, rate: float = 0, latency_rate: float | None = None, keep: bool = False,
              profile: bool = False, record: bool = True, steady: tuple[float, ...] = STEADY,
              now: datetime | None = None, progress: Tracker | None = None) -> Comparison:
    return await compare("pipeline", events, services=("intake", "followup"), output_topic="aftersales.followup",
                         output_type="FollowUpScheduled", rate=rate, latency_rate=latency_rate, keep=keep,
                         profile=profile, record=record, steady=steady, now=now, progress=progress)
