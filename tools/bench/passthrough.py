"""The benchmark baseline: an aiokafka consumer group reading one topic and producing every
record unchanged to another, with the same idempotent producer settings and no database.
Run as its own process: `python -m aftersales.bench.passthrough IN OUT GROUP`."""

from __future__ import annotations

import asyncio
import signal
import sys

from shared.kafka.clients import make_consumer, make_producer
from shared.settings import load_settings


async def main(in_topic: str, out_topic: str, group: str) -> None:
    settings = load_settings()
    consumer = make_consumer(settings, group_id=group, client_id="passthrough", topics=[in_topic])
    producer = make_producer(settings, client_id="passthrough")
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=settings.consumer_max_records)
            for tp, records in batches.items():
                futures = [
                    await producer.send(out_topic, value=r.value, key=r.key, headers=list(r.headers or ()))
                    for r in records
                ]
                await asyncio.gather(*futures)
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
