"""aiokafka clients configured from settings (PLAINTEXT, SSL, SASL), and topic administration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from shared.events import ALL_TOPICS, DEADLETTER, UPSTREAM_TOPICS
from shared.kafka import acls
from shared.settings import PROCESSES, Settings

log = structlog.get_logger("aftersales.kafka")

# No limit by size; the time limit is each topic's retention from the settings
# (AFTERSALES_TOPIC_RETENTION_DAYS: the canonical topics for ever, upstream.* and dead letters 30 days).
TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
# A dead letter carries the refused record whole (base64, a third larger) with its reason, so
# the dead-letter topic takes records up to 4 MiB while the broker keeps 1 MiB for the others:
# any record the broker accepted can be dead-lettered in full.
MAX_RECORD_BYTES = 4 * 1024 * 1024
DEADLETTER_CONFIG = {**TOPIC_CONFIG, "max.message.bytes": str(MAX_RECORD_BYTES)}


def topic_config(logical: str, settings: Settings) -> dict[str, str]:
    """The configs a contract topic is created with and held to by ensure_topics."""
    base = DEADLETTER_CONFIG if logical == DEADLETTER else TOPIC_CONFIG
    return {**base, "retention.ms": str(settings.topic_retention_ms(logical))}


def retention_summary(settings: Settings) -> str:
    """The configured retention in a line: "upstream.* 30 d, aftersales.deadletter 30 d, the rest for ever"."""
    retention = settings.topic_retention()
    upstream = {retention[t] for t in UPSTREAM_TOPICS}
    named = ({"upstream.*": upstream.pop()} if len(upstream) == 1 else {t: retention[t] for t in UPSTREAM_TOPICS})
    named.update({t: d for t, d in retention.items() if t not in UPSTREAM_TOPICS})
    limited = [f"{name} {days} d" for name, days in named.items() if days is not None]
    if not limited:
        return "for ever"
    return ", ".join(limited) + (", the rest for ever" if len(limited) < len(named) else "")


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
    """Create the contract topics (with the configured prefix) that do not exist yet, and bring
    the existing ones to their configs (topic_config: the retention configured now, the dead-letter
    record size); each change is logged. Returns the topics created."""
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
                              topic_configs=topic_config(logical[t], settings)) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass
            await _wait_for_metadata(admin, missing)
        if acls.secured(settings):  # the services' and producers' rights on this prefix's topics
            rules = acls.acls(settings)
            await acls.create_acls(admin, rules)
            await acls.wait_until_enforced(admin, rules)
        # topics created before: the retention configured now, a dead-letter topic made before it
        # took full records its size limit
        await hold_configs(admin, {t: topic_config(name, settings) for t, name in logical.items() if t in existing})
        return missing
    finally:
        await admin.close()


async def describe_topic_configs(admin: AIOKafkaAdminClient, topics: Iterable[str],
                                 names: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """topic -> {config: value} as the broker holds them (overrides and defaults); `names`: only those."""
    wanted = dict.fromkeys(names) if names is not None else None
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, wanted) for t in topics])
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for code, message, _type, name, entries in response.resources:
            if code:
                raise RuntimeError(f"Kafka refused to describe the configs of {name}: {message or code}")
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found


async def hold_configs(admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]]) -> list[tuple[str, str, str, str]]:
    """Set on each existing topic the configs whose value differs from `wanted`, leaving the
    others as they are (IncrementalAlterConfigs: the legacy AlterConfigs resets every override it
    does not name). Returns and logs (topic, config, before, after) per change."""
    if not wanted:
        return []
    names = {name for configs in wanted.values() for name in configs}
    held = await describe_topic_configs(admin, wanted, names)
    changes = [(topic, name, held.get(topic, {}).get(name) or "", value)
               for topic, configs in wanted.items() for name, value in sorted(configs.items())
               if held.get(topic, {}).get(name) != value]
    if not changes:
        return []
    by_topic: dict[str, list[tuple[str, str]]] = {}
    for topic, name, _before, value in changes:
        by_topic.setdefault(topic, []).append((name, value))
    response = await admin._send_request(_IncrementalAlterConfigs(by_topic))  # noqa: SLF001 - aiokafka has no such call
    failed = [(name, message or code) for code, message, _type, name in response.responses if code]
    if failed:
        raise RuntimeError("Kafka refused to alter topic configs: " + "; ".join(f"{t}: {why}" for t, why in failed))
    for topic, name, before, after in changes:
        log.info("topic config changed", topic=topic, config=name, before=before, after=after)
    return changes


class _IncrementalAlterConfigsResponse_v0(Response):  # type: ignore[misc]  # aiokafka is untyped  # noqa: N801
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("responses", Array(("error_code", Int16), ("error_message", String("utf-8")),
                            ("resource_type", Int8), ("resource_name", String("utf-8")))),
    )


class _IncrementalAlterConfigsRequest_v0(RequestStruct):  # type: ignore[misc]  # noqa: N801
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = _IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        ("resources", Array(("resource_type", Int8), ("resource_name", String("utf-8")),
                            ("configs", Array(("name", String("utf-8")), ("config_operation", Int8),
                                              ("value", String("utf-8")))))),
        ("validate_only", Boolean),
    )


class _IncrementalAlterConfigs(Request[_IncrementalAlterConfigsRequest_v0]):  # type: ignore[misc]
    """KIP-339's IncrementalAlterConfigs v0 (Kafka 2.3+): SET (operation 0) the named configs only."""

    API_KEY = 44

    def __init__(self, topics: dict[str, list[tuple[str, str]]]) -> None:
        self._resources = [(int(ConfigResourceType.TOPIC), topic, [(name, 0, value) for name, value in configs])
                           for topic, configs in topics.items()]

    def build(self, request_struct_class: type[_IncrementalAlterConfigsRequest_v0]) -> _IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, False)


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
