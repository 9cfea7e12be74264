"""Rebuilding the console's read model by replaying the log: empty its tables and its inbox,
rewind its consumer group to the start of every topic it reads. The console, started again,
replays the topics into the empty tables (the consumer and the handlers are the ones that keep
it up to date, so the rebuilt model is the model). Staff records are not part of it.

The register of erased customers is kept (ERASURE_KEPT): the log still holds what they once
gave, and the handlers' replay guard writes none of it for them, so a rebuild after an erasure
restores nothing of the erased customer, whatever order the topics come back in."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.console.app import READ_MODEL_TABLES, definition
from shared.db import connect
from shared.kafka.clients import partitions_of, stop_consumer
from shared.settings import Settings

ERASURE_KEPT = ("erased_customers",)
assert not set(ERASURE_KEPT) & set(READ_MODEL_TABLES), "a rebuild must not forget an erasure"


async def rebuild(settings: Settings) -> dict[str, int]:
    """Rows removed per table; the console must not be running."""
    conn = await connect(settings, "console")
    counts: dict[str, int] = {}
    try:
        async with conn.transaction():
            for table in (*READ_MODEL_TABLES, "inbox"):
                counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # our own names
                await conn.execute(f"TRUNCATE {table}")
    finally:
        await conn.close()
    await rewind(settings)
    return counts


async def rewind(settings: Settings) -> None:
    """Commit the first offset of every partition the console reads for its consumer group."""
    group = f"{settings.topic_prefix}{definition.name}"
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=group,  # type: ignore[arg-type]
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = []
        for subscription in definition.subscriptions:
            topic = settings.topic(subscription.topic)
            partitions += [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        await consumer.commit({tp: offset for tp, offset in starts.items()})
    finally:
        await stop_consumer(consumer)
