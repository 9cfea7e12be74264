"""aiokafka clients configured from settings (PLAINTEXT, SSL, SASL), and topic administration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from shared.events import ALL_TOPICS, DEADLETTER
from shared.kafka import acls
from shared.settings import PROCESSES, Settings

# Canonical and upstream topics are the audit record: keep everything (DESIGN.md §5).
TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
# A dead letter carries the refused record whole (base64, a third larger) with its reason, so
# the dead-letter topic takes records up to 4 MiB while the broker keeps 1 MiB for the others:
# any record the broker accepted can be dead-lettered in full.
MAX_RECORD_BYTES = 4 * 1024 * 1024
DEADLETTER_CONFIG = {**TOPIC_CONFIG, "max.message.bytes": str(MAX_RECORD_BYTES)}


def topic_config(logical: str) -> dict[str, str]:
    return DEADLETTER_CONFIG if logical == DEADLETTER else TOPIC_CONFIG


def make_producer(settings: Settings, *, client_id: str, idempotent: bool = True, **extra: object) -> AIOKafkaProducer:
    options: dict[str, object] = {
        "client_id": client_id,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "max_request_size": MAX_RECORD_BYTES + 64 * 1024,  # a full dead letter; the topic decides the rest
        "compression_type": None,
        "request_timeout_ms": 30_000,
        **settings.kafka_client_options(),
    }
    if idempotent:
        # Idempotent producer: acks=all, no duplicates from its own retries, order kept per partition.
        options.update(enable_idempotence=True, acks="all")
    options.update(extra)
    return AIOKafkaProducer(**options)


def make_consumer(
    settings: Settings, *, group_id: str | None, client_id: str, topics: Iterable[str] = (), **extra: object
) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_uncommitted",
        "max_partition_fetch_bytes": 4 * 1024 * 1024,  # a dead letter may be 4 MiB
        "fetch_max_bytes": 8 * 1024 * 1024,  # what a backlog may prefetch (peak RSS), not 50 MiB
        "fetch_max_wait_ms": 100,
        "session_timeout_ms": 15_000,
        "heartbeat_interval_ms": 3_000,
        "max_poll_interval_ms": 300_000,
        **settings.kafka_client_options(),
    }
    options.update(extra)
    return AIOKafkaConsumer(*topics, **options)


def make_admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(client_id="aftersales-admin", request_timeout_ms=30_000, **settings.kafka_client_options())


async def ensure_topics(settings: Settings, topics: Iterable[str] = ALL_TOPICS, *, partitions: int | None = None) -> list[str]:
    """Create the contract topics (with the configured prefix) that do not exist yet."""
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        logical = {settings.topic(t): t for t in topics}
        missing = [t for t in logical if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, partitions or settings.topic_partitions, settings.topic_replication_factor,
                              topic_configs=topic_config(logical[t])) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass
            await _wait_for_metadata(admin, missing)
        if acls.secured(settings):  # the services' and producers' rights on this prefix's topics
            rules = acls.acls(settings)
            await acls.create_acls(admin, rules)
            await acls.wait_until_enforced(admin, rules)
        # a dead-letter topic created before it took full records: give it the limit (the whole
        # set, since a legacy config change resets what it does not name)
        older = [t for t, name in logical.items() if name == DEADLETTER and t in existing]
        if older:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, DEADLETTER_CONFIG) for t in older])
        return missing
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, topics: list[str], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if set(topics) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"topics {topics} did not appear within {timeout}s")


async def delete_topics(settings: Settings, topics: Iterable[str]) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
        if acls.secured(settings):
            groups = [f"{settings.topic_prefix}{p}" for p in PROCESSES] if settings.topic_prefix else []
            await acls.delete_acls(admin, [(acls.TOPIC, t) for t in topics] + [(acls.GROUP, g) for g in groups])
    finally:
        await admin.close()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer. A group-less one is given a turn of the loop first: aiokafka starts a
    coordinator task on start, and cancelling it before its first step raises CancelledError."""
    await asyncio.sleep(0)
    await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """A topic's partitions; asks the broker when the consumer has no metadata for it yet."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
        partitions = consumer.partitions_for_topic(topic)
    return sorted(partitions or ())
