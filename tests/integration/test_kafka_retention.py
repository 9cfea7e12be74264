"""Topic retention on the real broker (issue 19): ensure_topics creates each contract topic with
its configured retention.ms and brings existing topics to a changed setting, leaving their other
configs (the dead-letter topic's record size) as they were."""

from __future__ import annotations

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from structlog.testing import capture_logs

from shared.events import CANONICAL_TOPICS, DEADLETTER, UPSTREAM_TOPICS
from shared.kafka.clients import MAX_RECORD_BYTES, describe_topic_configs, ensure_topics, make_admin
from shared.settings import Settings
from tests.support import create_namespace, drop_namespace

pytestmark = pytest.mark.infra

DAY_MS = 86_400_000
NAMES = ("retention.ms", "retention.bytes", "max.message.bytes")


async def held(settings: Settings, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = make_admin(settings)
    await admin.start()
    try:
        return await describe_topic_configs(admin, topics, NAMES)
    finally:
        await admin.close()


async def test_topics_get_their_retention_and_a_changed_setting_alters_the_existing_ones(infra: None) -> None:
    ns = await create_namespace(topic_retention_days="upstream.dms=7,deadletter=14")
    try:
        topics = [ns.topic(t) for t in (*UPSTREAM_TOPICS, *CANONICAL_TOPICS, DEADLETTER)]
        configs = await held(ns.settings, topics)
        assert configs[ns.topic("upstream.dms")]["retention.ms"] == str(7 * DAY_MS)
        for topic in ("upstream.sales", "upstream.erp", "upstream.crm"):  # the default: 30 days
            assert configs[ns.topic(topic)]["retention.ms"] == str(30 * DAY_MS), topic
        for topic in CANONICAL_TOPICS:  # the audit record: for ever
            assert configs[ns.topic(topic)]["retention.ms"] == "-1", topic
        dead = configs[ns.topic(DEADLETTER)]
        assert dead["retention.ms"] == str(14 * DAY_MS)
        assert dead["max.message.bytes"] == str(MAX_RECORD_BYTES)
        assert {c["retention.bytes"] for c in configs.values()} == {"-1"}

        # The setting changes and ensure_topics runs again (`infra up`, `infra topics`): the
        # existing topics are altered, each change logged; nothing is created.
        changed = ns.settings.model_copy(update={"topic_retention_days": "upstream.*=3,deadletter=forever"})
        with capture_logs() as logs:
            assert await ensure_topics(changed) == []
        after = await held(ns.settings, topics)
        for topic in UPSTREAM_TOPICS:
            assert after[ns.topic(topic)]["retention.ms"] == str(3 * DAY_MS), topic
        assert after[ns.topic(DEADLETTER)]["retention.ms"] == "-1"
        assert after[ns.topic(DEADLETTER)]["max.message.bytes"] == str(MAX_RECORD_BYTES), "the other configs kept"
        assert {after[ns.topic(t)]["retention.ms"] for t in CANONICAL_TOPICS} == {"-1"}
        lines = sorted((e["topic"], e["before"], e["after"]) for e in logs if e["event"] == "topic config changed")
        assert lines == sorted([(ns.topic(DEADLETTER), str(14 * DAY_MS), "-1"),
                                (ns.topic("upstream.crm"), str(30 * DAY_MS), str(3 * DAY_MS)),
                                (ns.topic("upstream.dms"), str(7 * DAY_MS), str(3 * DAY_MS)),
                                (ns.topic("upstream.erp"), str(30 * DAY_MS), str(3 * DAY_MS)),
                                (ns.topic("upstream.sales"), str(30 * DAY_MS), str(3 * DAY_MS))])

        # Run again with the same setting: nothing to change, nothing logged.
        with capture_logs() as logs:
            await ensure_topics(changed)
        assert not [e for e in logs if e["event"] == "topic config changed"]
    finally:
        await drop_namespace(ns)


async def test_a_dead_letter_topic_made_without_the_record_size_gets_it_and_keeps_its_retention(infra: None) -> None:
    ns = await create_namespace()
    try:
        topic = ns.topic(DEADLETTER)
        admin = make_admin(ns.settings)
        await admin.start()
        try:  # as an older ensure_topics left it: the broker's 1 MiB default, retention unlimited
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "-1"})])
        finally:
            await admin.close()
        before = (await held(ns.settings, [topic]))[topic]
        assert before["retention.ms"] == "-1" and before["max.message.bytes"] != str(MAX_RECORD_BYTES)
        await ensure_topics(ns.settings)
        after = (await held(ns.settings, [topic]))[topic]
        assert after["retention.ms"] == str(30 * DAY_MS) and after["max.message.bytes"] == str(MAX_RECORD_BYTES)
    finally:
        await drop_namespace(ns)
