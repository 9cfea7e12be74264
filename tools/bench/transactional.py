"""The guarantees-only baseline: one hop of the pipeline with every guarantee and no business
logic. The kernel's own consumer reads a poll, writes its inbox rows and one outbox row per
event in one Postgres transaction, commits the offsets after it, and the kernel's outbox relay
publishes the rows. Two of these processes in a row are what intake and followup would cost if
they decided nothing; the pipeline beside them shows what the business logic adds.

Run as its own process: `python -m aftersales.bench.transactional HOP IN OUT` (topics are
contract names inside the namespace the environment gives, AFTERSALES_TOPIC_PREFIX)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from shared.events import Event
from shared.kafka.consumer import Subscription
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.uow import UnitOfWork


def definition(hop: str, in_topic: str, out_topic: str) -> ServiceDefinition[None]:
    async def forward(uow: UnitOfWork[None], events: list[Event[Any]]) -> None:
        for event in events:
            uow.forward(out_topic, key=event.key, value=event.envelope.to_json(), event_id=event.event_id,
                        event_type=event.event_type)

    return ServiceDefinition(
        name=hop, description="a pass-through hop with the kernel's guarantees (benchmark baseline)",
        migrations=None, subscriptions=[Subscription(in_topic, {"*": forward}, raw=True)],
    )


async def main(hop: str, in_topic: str, out_topic: str) -> None:
    runtime = ServiceRuntime(definition(hop, in_topic, out_topic))
    await runtime.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runtime.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
