"""Dead letters: listed by reason, corrected and sent back, then processed."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from datetime import datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import RecordsToDelete
from aiokafka.structs import OffsetAndMetadata
from rich.console import Console
from rich.progress import Progress

from aftersales import dlq
from aftersales.progress import columns
from shared.kafka.clients import make_admin, stop_consumer
from tests.support import TEST_NOW, Namespace, Stack, TopicReader, count, manual_clock, publish
from tools.sandbox import ROOT
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


async def test_a_dead_letter_is_corrected_sent_back_and_processed(ns: Namespace) -> None:
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        fleet = Fleet(seed=95)
        vehicle = fleet.vehicle(NOW - timedelta(days=100))
        typo = fleet.pickup(vehicle, NOW - timedelta(days=1))
        typo["data"]["vin"] = vehicle.vin[:16]  # the DMS dropped a character
        wash = fleet.pickup(fleet.vehicle(NOW - timedelta(days=100)), NOW - timedelta(days=1))
        wash["data"]["service_type"] = "car_wash"
        await publish(ns.settings, "upstream.dms", [typo, wash])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 2), timeout=60)

        letters = await dlq.read(ns.settings)
        assert [d.error for d in letters] == ["ValidationFailed", "ValidationFailed"]
        chosen = dlq.select(letters, reason="16 characters")
        assert len(chosen) == 1 and chosen[0].original_event_id == typo["event_id"]
        with pytest.raises(LookupError, match="no dead letter for upstream.dms:0:999"):
            dlq.select(letters, ids=["upstream.dms:0:999"])

        sent = await dlq.redrive(ns.settings, chosen, [dlq.parse_assignment(f"data.vin={vehicle.vin}")])
        assert len(sent) == 1
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("VehiclePickedUp", 1), timeout=60, settle=1.0)
        pickup = canonical.of_type("VehiclePickedUp")[0]
        assert pickup.data["vin"] == vehicle.vin and str(pickup.envelope.causation_id) == typo["event_id"]  # type: ignore[union-attr]
        async with TopicReader(ns.settings, "upstream.dms") as upstream:
            await upstream.wait_for(lambda rs: len(rs) == 3)
        marked = [r for r in upstream.records if dict(r.record.headers).get("x-redriven-from")]
        assert len(marked) == 1 and dict(marked[0].record.headers)["x-redriven-from"].decode() == chosen[0].id

        # The command line lists them, as JSON.
        env = {**os.environ, **ns.env()}
        done = subprocess.run([sys.executable, "-m", "aftersales", "dlq", "list", "--json", "--error",
                               "ValidationFailed"], capture_output=True, env=env, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert {d["id"] for d in orjson.loads(done.stdout)} == {d.id for d in letters}
    finally:
        await stack.stop()


async def test_a_truncated_dead_letter_topic_reads_as_empty_instead_of_waiting_forever(ns: Namespace) -> None:
    """After the log was truncated (retention, `aftersales demo`'s reset) a partition starts
    where it ends: reading must not wait for records that will never come."""
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        await publish(ns.settings, "upstream.dms", [b"{not json"])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 1), timeout=60)
    finally:
        await stack.stop()
    assert len(await dlq.read(ns.settings)) == 1
    topic = ns.settings.topic("aftersales.deadletter")
    admin = make_admin(ns.settings)
    await admin.start()
    try:
        record = dead.records[0].record
        await admin.delete_records({TopicPartition(topic, record.partition): RecordsToDelete(record.offset + 1)})
    finally:
        await admin.close()
    assert await asyncio.wait_for(dlq.read(ns.settings), timeout=30) == []


def test_canonical_events_are_never_edited_by_hand() -> None:
    letter = dlq.DeadLetter(
        id="aftersales.followup:3:7", service="complaints", topic="aftersales.followup", partition=3, offset=7,
        error="ValidationFailed", reason="x", event_type="ComplaintFiled", original_event_id=None, key="C1",
        value=b'{"data": {}}', headers={}, dead_lettered_at="2026-11-20T00:00:00+00:00")
    with pytest.raises(ValueError, match="canonical topic; its events are not edited by hand"):
        dlq.corrected(letter, [dlq.parse_assignment("data.x=1")])
    assert dlq.corrected(letter, []) == b'{"data": {}}', "unchanged, it may go back"
    with pytest.raises(ValueError, match="must look like data.vin="):
        dlq.parse_assignment("no equals sign")
    assert dlq.parse_assignment('data.mileage_km=12000') == (["data", "mileage_km"], 12000)
    assert dlq.parse_assignment("data.plate=沪A12345") == (["data", "plate"], "沪A12345")


def _cli(ns: Namespace, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([sys.executable, "-m", "aftersales", "dlq", *args], capture_output=True,
                          env={**os.environ, **ns.env(), **env}, cwd=ROOT, timeout=90)
    assert done.returncode == 0, done.stderr.decode()
    return done


def _ids(done: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [d["id"] for d in orjson.loads(done.stdout)]


async def test_list_continues_from_the_stored_position_and_marks_redriven_letters(ns: Namespace) -> None:
    """A second `dlq list` shows only the letters dead-lettered since the first; a redriven letter
    is marked with when, by whom and where to; `--from-beginning` shows every one again."""
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        fleet = Fleet(seed=96)
        vehicle = fleet.vehicle(NOW - timedelta(days=100))
        typo = fleet.pickup(vehicle, NOW - timedelta(days=1))
        typo["data"]["vin"] = vehicle.vin[:16]
        await publish(ns.settings, "upstream.dms", [typo, b"{not json"])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 2), timeout=60)
        first = _cli(ns, "list", "--json")
        assert len(_ids(first)) == 2 and b"from the beginning (no stored position yet)" in first.stderr
        assert b"\xe2\x94\x81" not in first.stderr, "no bar when stderr is not a terminal"

        await publish(ns.settings, "upstream.dms", [b"[1, 2]"])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 3), timeout=60)
        second = _cli(ns, "list", "--json")
        assert len(_ids(second)) == 1 and _ids(second)[0] not in _ids(first), "only the new letter"
        assert b"new since the stored position" in second.stderr
        assert _ids(_cli(ns, "list", "--json")) == [], "nothing new since the second listing"
        narrowed = _cli(ns, "list", "--json", "--from-beginning", "--error", "ValidationFailed")
        assert b"position kept (a filtered listing)" in narrowed.stderr

        typo_id = next(d["id"] for d in orjson.loads(first.stdout) if d["original_event_id"] == typo["event_id"])
        redriven = _cli(ns, "redrive", typo_id, "--set", f"data.vin={vehicle.vin}", "--by", "ops-01")
        assert f"{typo_id} sent back to upstream.dms:".encode() in redriven.stdout
        again = _cli(ns, "redrive", "--error", "ValidationFailed", "--dry-run")
        assert b"already redriven, left out" in again.stdout and typo_id.encode() not in again.stdout.split(b"left out")[1]

        everything = orjson.loads(_cli(ns, "list", "--json", "--from-beginning").stdout)
        assert len(everything) == 3
        marks = {d["id"]: d["redriven"] for d in everything}
        assert [i for i, m in marks.items() if m] == [typo_id]
        mark = marks[typo_id]
        assert mark["by"] == "ops-01" and mark["sent_to"].startswith("upstream.dms:") and mark["corrected"] == ["data.vin"]
        at = datetime.fromisoformat(mark["at"])
        assert abs((at - TEST_NOW).total_seconds()) < 600, "the redrive time is the project clock's, not today's"
        table = _cli(ns, "list", "--from-beginning", "--peek", COLUMNS="300").stdout.decode()
        assert f"by ops-01 -> {mark['sent_to']}" in table and "position kept (--peek)" in table
        since = _cli(ns, "list", "--json", "--since", (NOW + timedelta(days=3650)).isoformat())
        assert _ids(since) == [], "nothing was dead-lettered after a moment in the future"
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("VehiclePickedUp", 1), timeout=60, settle=0.5)
    finally:
        await stack.stop()


async def test_progress_is_reported_with_the_records_to_read_and_the_letters_to_send(ns: Namespace) -> None:
    """On a terminal, listing counts the dead-letter records to read and redriving the letters to
    send; with AFTERSALES_PROGRESS=always the command draws it on stderr (stdout stays JSON)."""
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        await publish(ns.settings, "upstream.dms", [b"{bad", b"{worse", b"{worst"])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 3), timeout=60)
    finally:
        await stack.stop()
    out = io.StringIO()
    progress = Progress(*columns(), console=Console(file=out, force_terminal=True, width=100))
    with progress:
        listing = await dlq.listing(ns.settings, progress=progress)
    [task] = progress.tasks
    assert (task.description, task.total, task.completed) == ("reading dead letters", 3, 3)
    assert sum(listing.end.values()) - sum(listing.start.values()) == 3 and "3/3" in out.getvalue()

    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        sent = await dlq.redrive(ns.settings, listing.letters[:2], [], by="ops-01", progress=progress)
    assert [t.total for t in progress.tasks] == [2] and progress.tasks[0].completed == 2 and len(sent) == 2
    assert all(letter.redriven and letter.redriven.by == "ops-01" for letter, _, _ in sent)

    shown = _cli(ns, "list", "--json", "--peek", AFTERSALES_PROGRESS="always")
    assert len(orjson.loads(shown.stdout)) == 3 and "reading dead letters" in shown.stderr.decode()
    assert "3/3" in shown.stderr.decode()


async def test_a_stored_position_the_log_no_longer_holds_reads_from_what_is_left(ns: Namespace) -> None:
    """Retention (or a reset) deleted the records up to past the stored position: the listing
    starts where the partition now starts, not at its end."""
    topic = ns.settings.topic("aftersales.deadletter")
    producer = AIOKafkaProducer(**ns.settings.kafka_client_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        for offset in range(3):
            envelope = {"occurred_at": f"2026-11-20T0{offset}:00:00+00:00", "data": {
                "service": "intake", "topic": "upstream.dms", "partition": 0, "offset": offset,
                "error": "MalformedJSON", "reason": "not JSON", "record": {"key": None, "value_b64": "e2JhZA==",
                                                                          "headers": {}}}}
            await producer.send_and_wait(topic, orjson.dumps(envelope), key=f"upstream.dms:0:{offset}".encode(),
                                         partition=0)
    finally:
        await producer.stop()
    position = AIOKafkaConsumer(**ns.settings.kafka_client_options(),  # type: ignore[arg-type]
                                group_id=dlq.position_group(ns.settings), enable_auto_commit=False)
    await position.start()
    try:
        position.assign([TopicPartition(topic, 0)])
        await position.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "")})  # stored before all three
    finally:
        await stop_consumer(position)
    admin = make_admin(ns.settings)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(1)})  # the first one is gone
    finally:
        await admin.close()
    found = await dlq.listing(ns.settings, start="stored", store=True)
    assert [d.id for d in found.letters] == ["upstream.dms:0:1", "upstream.dms:0:2"] and found.stored[0] == 0
    assert (await dlq.listing(ns.settings, start="stored")).letters == [], "and the position moved past them"
