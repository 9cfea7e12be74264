"""A replay of the log over a range with follow-ups, complaints and notifications: each service's
decisions are rebuilt from the log alone and agree with the live state, and nothing is sent; a
column of the live state changed by hand is then reported (the negative control)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import columns
from aftersales.replay import replay
from services import load
from services.notifier.config import NotifierSettings
from shared.clock import offset_to
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    create_namespace,
    day_at,
    db,
    drop_namespace,
    manual_clock,
    publish,
    queue_item,
    working_day,
)
from tools.peers import PeerStore, SmsGatewaySink
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.slow, pytest.mark.dates]

# 10:00 on the first working day from the test day: the agent's call is inside the calling hours of
# a calling day, the SMS outside the quiet hours.
T0 = day_at(10, days=working_day())


@pytest.fixture
async def ns(infra: None) -> AsyncIterator[Namespace]:
    """A namespace whose configured clock reads T0 now: what the replay's clock follows (the
    log time of each record, as the services that wrote the log saw it)."""
    namespace = await create_namespace(clock_offset_seconds=offset_to(T0))
    try:
        yield namespace
    finally:
        await drop_namespace(namespace)


async def test_a_replay_over_follow_ups_and_complaints_finds_no_differences_and_sends_nothing(ns: Namespace) -> None:
    log_from = datetime.now(UTC) - timedelta(seconds=5)  # the range is in log time: Kafka's wall-clock timestamps
    gateway = await SmsGatewaySink(PeerStore()).start()
    clock = manual_clock(T0)
    notifier = NotifierSettings(sms_gateway_url=gateway.url, dispatch_tick_seconds=0.05)
    stack = await Stack(ns, clock, services=("intake", "followup", "complaints", "quality", "notifier"),
                        state={"notifier": {"settings": notifier}}).start()
    try:
        fleet = Fleet(seed=97)
        vehicles = [fleet.vehicle(day_at(0, days=-203)) for _ in range(4)]
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("VehicleSold", 4), timeout=60)
        await publish(ns.settings, "upstream.dms", [fleet.pickup(v, T0 - timedelta(days=4, hours=i))
                                                    for i, v in enumerate(vehicles)])
        await publish(ns.settings, "upstream.erp", [fleet.defect(vehicles[0], "controller", T0 - timedelta(days=2))])
        await publish(ns.settings, "upstream.crm", [
            fleet.campaign("free_inspection_week", "Free inspection week", T0 + timedelta(days=30), 7,
                           sorted({v.customer.region for v in vehicles}), T0 - timedelta(days=1)),
            fleet.complaint(vehicles[1].customer, T0 - timedelta(hours=3), "门店服务态度差", vin=vehicles[1].vin)])
        async with api(stack["followup"], "agent") as agent:
            visit = await queue_item(agent, "first_visit", vin=vehicles[2].vin, timeout=60)
            called = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts", json={
                "outcome": "reached", "satisfaction": 2,
                "complaint": {"category": "repair_quality", "description": "noise after the repair"}})
            assert called.status_code == 201, called.text
        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count("ComplaintOpened", 2), timeout=60)
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(count("NotificationSent", 4), timeout=60, settle=2.0)
    finally:
        await stack.stop()

    sent_before = (len(gateway.store.sms_attempts), len(gateway.store.mails))
    log_to = datetime.now(UTC) + timedelta(seconds=5)  # log time, as log_from
    for service in ("intake", "followup", "complaints", "quality", "notifier"):
        report = await replay(ns.settings, service, log_from, log_to)
        assert report.differences == [], f"{service}: {report.differences}"
        assert report.inputs_in_range > 0 and sum(report.compared.values()) > 0, f"{service} compared nothing"
    assert (len(gateway.store.sms_attempts), len(gateway.store.mails)) == sent_before, "a replay never sends"

    # The negative control: one compared column changed by hand in the live state is reported,
    # that row and that column, with both values.
    conn = await db(ns, "followup")
    try:
        dealer = await conn.fetchval("SELECT dealer_id FROM followups WHERE followup_id = $1", visit["followup_id"])
        await conn.execute("UPDATE followups SET dealer_id = 'D-EDITED' WHERE followup_id = $1", visit["followup_id"])
    finally:
        await conn.close()
    progress = Progress(*columns(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        report = await replay(ns.settings, "followup", log_from, log_to, progress=progress)
    reading, applying, comparing = progress.tasks
    assert reading.total == reading.completed >= report.records_replayed > 0, "the bar counts the log read"
    assert applying.total == applying.completed == report.records_replayed
    assert comparing.total == comparing.completed == len(load("followup").replay) + 1
    assert [(d.what, d.key, d.kind, d.detail) for d in report.differences] == [
        ("follow-ups scheduled from events", str(visit["followup_id"]), "different",
         {"dealer_id": {"live": "D-EDITED", "replay": dealer}})], report.differences
    await gateway.stop()
