"""Issue 19, Kafka on a real broker: a private KRaft node started through `aftersales.infra` (the
code of `aftersales infra up`: TLS generated, SCRAM users at storage format, ACLs created with the
topics) on its own ports and data folder, never the shared broker. It refuses clients without
SASL_SSL or with a wrong password, a service writing another's topic, a producer reading a
customer topic; it lets a service read what it consumes, in its own group, and write its topic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, TopicAuthorizationFailedError
from pydantic import SecretStr

from aftersales.infra import Kafka, Paths
from shared.kafka.acls import PRINCIPALS, new_credentials
from shared.kafka.clients import ensure_topics, make_admin, make_consumer, make_producer, stop_consumer
from shared.settings import Settings, load_settings, project_home
from tools.sandbox import free_port

INTAKE, FOLLOWUP, UPSTREAM_SALES = "aftersales.intake", "aftersales.followup", "upstream.sales"


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("kafka-sasl")
    port, controller = free_port(), free_port()
    settings = load_settings(
        kafka_bootstrap=f"127.0.0.1:{port}", kafka_controller_port=controller, kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_ssl_cafile=home / "tls" / "ca.pem",
        kafka_credentials=new_credentials(), kafka_principal="admin", topic_prefix="sec.", topic_partitions=1)
    kafka = Kafka(settings, Paths(home, local_dir=home / "local"), controller_port=controller,
                  libs=Paths(project_home()).kafka / "libs")  # the jars `infra up` resolved, shared read-only
    kafka.paths.ensure()
    kafka.up()
    try:
        asyncio.run(ensure_topics(settings))  # as admin: the topics and every principal's ACLs
        yield settings
    finally:
        kafka.down()


def _as(settings: Settings, principal: str, **changes: object) -> Settings:
    return settings.model_copy(update={"kafka_principal": principal, **changes})


async def _produce(settings: Settings, topic: str, value: bytes) -> int:
    producer = make_producer(settings, client_id=f"test-{settings.kafka_principal}", request_timeout_ms=10_000)
    await producer.start()
    try:
        return (await producer.send_and_wait(settings.topic(topic), value, key=b"k")).offset
    finally:
        await producer.stop()


async def _read_all(settings: Settings, topic: str, group: str | None = None) -> list[bytes]:
    consumer = make_consumer(settings, group_id=group, client_id=f"test-{settings.kafka_principal}")
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(topic), 0)
        consumer.assign([tp])
        values: list[bytes] = []
        for _ in range(10):
            batch = await consumer.getmany(tp, timeout_ms=500)
            values += [r.value for r in batch.get(tp, [])]
            if values and not batch:
                break
        if group is not None:
            await consumer.commit()
        return values
    finally:
        await stop_consumer(consumer)


async def _topic_errors(settings: Settings, *topics: str) -> dict[str, int]:
    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([settings.topic(t) for t in topics])
        return {t["topic"].removeprefix(settings.topic_prefix): t["error_code"] for t in described}
    finally:
        await admin.close()


async def _connect(options: dict[str, object]) -> list[str]:
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=5_000)  # type: ignore[arg-type]
    try:
        await admin.start()
        return list(await admin.list_topics())
    finally:
        await admin.close()


@pytest.fixture
async def seeded(secure_kafka: Settings) -> AsyncIterator[bytes]:
    """A customer's event on aftersales.intake, written by intake."""
    value = b'{"type":"CustomerUpdated","phone":"13800138000"}'
    await _produce(_as(secure_kafka, "intake"), INTAKE, value)
    yield value


async def test_a_client_without_sasl_ssl_or_with_a_wrong_password_is_refused(secure_kafka: Settings) -> None:
    assert len(await _connect(secure_kafka.kafka_client_options())) >= 10, "admin, correctly, gets in"
    with pytest.raises(KafkaConnectionError):
        await _connect({"bootstrap_servers": secure_kafka.kafka_bootstrap})  # PLAINTEXT on the SASL_SSL port
    wrong = _as(secure_kafka, "intake", kafka_credentials=SecretStr(f"intake={'x' * 43}"))
    with pytest.raises(KafkaConnectionError):
        await _connect(wrong.kafka_client_options())
    unknown = _as(secure_kafka, "mallory", kafka_credentials=SecretStr(f"mallory={'y' * 43}"))
    with pytest.raises(KafkaConnectionError):
        await _connect(unknown.kafka_client_options())


async def test_a_service_writing_another_services_topic_is_refused(secure_kafka: Settings) -> None:
    followup = _as(secure_kafka, "followup")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(followup, INTAKE, b'{"type":"CustomerUpdated","phone":"attacker"}')
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(followup, UPSTREAM_SALES, b"{}")  # around the webhook's signature
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(_as(secure_kafka, "sales"), "upstream.dms", b"{}")  # a producer: only its own topic
    assert all(b"attacker" not in v for v in await _read_all(secure_kafka, INTAKE))


async def test_a_producer_cannot_read_customer_topics(secure_kafka: Settings, seeded: bytes) -> None:
    sales = _as(secure_kafka, "sales")
    assert await _produce(sales, UPSTREAM_SALES, b'{"type":"VehicleSold"}') >= 0, "it writes its own topic"
    errors = await _topic_errors(sales, INTAKE, FOLLOWUP, "aftersales.deadletter", UPSTREAM_SALES)
    assert errors == {INTAKE: 29, FOLLOWUP: 29, "aftersales.deadletter": 29, UPSTREAM_SALES: 0}  # 29: not authorized
    assert await _read_all(sales, INTAKE) == [], "no record reaches it"
    assert seeded in await _read_all(secure_kafka, INTAKE), "while the record is there"
    with pytest.raises(GroupAuthorizationFailedError):
        await _read_all(sales, UPSTREAM_SALES, group=f"{secure_kafka.topic_prefix}intake")


async def test_a_service_reads_what_it_consumes_in_its_group_and_writes_its_topic(secure_kafka: Settings,
                                                                                     seeded: bytes) -> None:
    followup = _as(secure_kafka, "followup")
    assert seeded in await _read_all(followup, INTAKE, group=f"{secure_kafka.topic_prefix}followup")
    assert await _produce(followup, FOLLOWUP, b'{"type":"FollowUpScheduled"}') >= 0
    assert await _produce(followup, "aftersales.deadletter", b'{"type":"DeadLettered"}') >= 0
    assert await _read_all(_as(secure_kafka, "quality"), FOLLOWUP), "quality consumes followup's events"
    errors = await _topic_errors(followup, "upstream.crm", "aftersales.notifier")
    assert errors == {"upstream.crm": 29, "aftersales.notifier": 29}, "what it does not consume stays closed"
    with pytest.raises(GroupAuthorizationFailedError):  # another service's consumer group
        await _read_all(followup, INTAKE, group=f"{secure_kafka.topic_prefix}quality")
    intake = _as(secure_kafka, "intake")  # its webhook writes upstream.*; it consumes them
    assert await _produce(intake, "upstream.crm", b'{"type":"CustomerContactCorrected"}') >= 0
    assert await _read_all(intake, "upstream.crm", group=f"{secure_kafka.topic_prefix}intake")


def test_every_principal_was_created_at_format(secure_kafka: Settings) -> None:
    for principal in PRINCIPALS:
        assert asyncio.run(_connect(_as(secure_kafka, principal).kafka_client_options())) is not None, principal


def test_the_broker_presents_a_certificate_of_the_generated_ca(secure_kafka: Settings) -> None:
    import socket
    import ssl

    assert secure_kafka.kafka_ssl_cafile is not None
    host, _, port = secure_kafka.kafka_bootstrap.rpartition(":")
    context = ssl.create_default_context(cafile=str(secure_kafka.kafka_ssl_cafile))
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
    assert cert and ("IP Address", "127.0.0.1") in cert["subjectAltName"]
    assert (Path(secure_kafka.kafka_ssl_cafile).parent / "ca.key").stat().st_mode & 0o077 == 0, "the CA key is private"
