"""aiokafka against the Kafka 4.x broker that `infra up` runs: that it is a 4.x broker (by the
protocol versions it serves), consumer groups, commits, offsets_for_times, the idempotent producer."""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn

from shared.settings import load_settings

pytestmark = pytest.mark.infra

# Kafka 4.0 removed these requests' old versions (KIP-896); a 3.x broker still serves them from
# version 0. (api key: (name, lowest version a 4.x broker serves))
REMOVED_IN_4 = {1: ("Fetch", 4), 2: ("ListOffsets", 1), 8: ("OffsetCommit", 2), 9: ("OffsetFetch", 1)}
CONSUMER_GROUP_HEARTBEAT = 68  # the KIP-848 consumer group protocol, generally available from 4.0


def is_kafka_4(versions: dict[int, tuple[int, int]]) -> bool:
    """From a broker's ApiVersions answer ({api key: (min, max)}): does it serve as 4.x does?"""
    return CONSUMER_GROUP_HEARTBEAT in versions and all(
        key in versions and versions[key][0] >= lowest for key, (_, lowest) in REMOVED_IN_4.items())


async def test_the_broker_speaks_the_kafka_4_protocol(infra: None) -> None:
    settings = load_settings()
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    # The same login as every client (SASL_SSL with a principal on `infra up`'s broker).
    options = {k: v for k, v in settings.kafka_client_options().items() if k != "bootstrap_servers"}
    conn = await create_conn(host, int(port), **options)  # type: ignore[arg-type]
    try:
        versions: dict[int, tuple[int, int]] = conn._versions  # the broker's ApiVersions answer
    finally:
        conn.close()
    assert is_kafka_4(versions), {REMOVED_IN_4[k][0]: versions.get(k) for k in REMOVED_IN_4}
    # What a 3.x broker answers (3.9: Fetch, ListOffsets, OffsetCommit and OffsetFetch from v0) is not.
    assert not is_kafka_4({**versions, 1: (0, 17), 2: (0, 9), 8: (0, 9), 9: (0, 9)})


async def test_aiokafka_works_with_the_kafka_4_broker(infra: None) -> None:
    settings = load_settings()
    topic = f"compat.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())  # type: ignore[arg-type]
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        assert cluster["brokers"], "the broker answers metadata requests"
        await admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "-1"})])
        producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=True, acks="all")  # type: ignore[arg-type]
        await producer.start()
        before = int(time.time() * 1000) - 1  # wall time: Kafka stamps records with it
        try:
            for i in range(30):
                await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i % 5}".encode(), partition=i % 3)
        finally:
            await producer.stop()

        group = f"compat-{uuid.uuid4().hex[:6]}"
        consumer = AIOKafkaConsumer(
            topic, **settings.kafka_client_options(), group_id=group,  # type: ignore[arg-type]
            enable_auto_commit=False, auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            seen = 0
            while seen < 30:
                for tp, records in (await consumer.getmany(timeout_ms=2000)).items():
                    seen += len(records)
                    await consumer.commit({tp: records[-1].offset + 1})
            assert seen == 30
            committed = [await consumer.committed(TopicPartition(topic, p)) for p in range(3)]
            assert committed == [10, 10, 10]
            by_time = await consumer.offsets_for_times({TopicPartition(topic, p): before for p in range(3)})
            assert all(v is not None and v.offset == 0 for v in by_time.values())
            later = await consumer.offsets_for_times({TopicPartition(topic, 0): int(time.time() * 1000) + 60_000})
            assert later[TopicPartition(topic, 0)] is None
        finally:
            await consumer.stop()
        offsets = await admin.list_consumer_group_offsets(group)
        assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 10, 1: 10, 2: 10}
        await admin.delete_topics([topic])
    finally:
        await admin.close()
