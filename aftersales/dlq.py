"""`aftersales dlq list | redrive`: inspect dead letters by reason, and send them back once fixed.

A dead letter holds the original record (key, value, headers) and the reason it was refused.
Redriving appends that record to its original topic again, marked with an
`x-redriven-from: <topic>:<partition>:<offset>` header, so the consumer that refused it gets a
second chance: after its code or configuration was fixed (unchanged record), or with the
fields an operator corrected (`--set data.vin=…`, upstream records only: a canonical event is
its owner's and is never edited by hand). Consumers that already processed the record skip it
by its event_id.

Where a listing starts: `dlq list` continues from a stored position, the dead-letter topic's
offsets committed by the consumer group `<prefix>aftersales.dlq-list` (per partition, kept by
Kafka, so every operator machine shares it), and moves it to the end of what it showed;
`--from-beginning` and `--since` read from elsewhere. A listing narrowed by a filter does not
move the position: letters it did not show would otherwise never be shown.

What was redriven: each redrive writes a record to the compacted topic
`<prefix>aftersales.deadletter.redrives`, keyed by the dead letter's id (when, by whom, where
the record went, corrected or not); listings mark those letters. Compaction keeps the latest
redrive of each letter and the topic stays as small as the number of letters redriven.
"""

from __future__ import annotations

import base64
import copy
import getpass
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from aftersales.progress import QUIET, Tracker
from shared.clock import clock_from_settings
from shared.events import DEADLETTER, UPSTREAM_TOPICS
from shared.kafka.clients import make_admin, partitions_of, stop_consumer
from shared.settings import Settings

# The record of redrives: an operations topic beside the contract topics (not an event stream).
REDRIVES = "aftersales.deadletter.redrives"
REDRIVES_CONFIG = {"cleanup.policy": "compact", "retention.ms": "-1"}
# The consumer group whose committed offsets are `dlq list`'s stored position.
POSITION_GROUP = "aftersales.dlq-list"

Start = Literal["stored", "beginning"] | datetime


@dataclass
class DeadLetter:
    id: str  # the original record's topic:partition:offset (the dead letter's key)
    service: str
    topic: str
    partition: int
    offset: int
    error: str
    reason: str
    event_type: str | None
    original_event_id: str | None
    key: str | None
    value: bytes
    headers: dict[str, str]
    dead_lettered_at: str
    redriven: Redrive | None = None

    @property
    def envelope(self) -> dict[str, Any] | None:
        try:
            parsed = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None


@dataclass
class Redrive:
    """One redrive of a dead letter, as recorded on the redrives topic."""
    letter: str  # the dead letter's id
    at: str  # ISO 8601, UTC
    by: str
    sent_to: str  # topic:partition:offset of the record sent back
    corrected: list[str] = field(default_factory=list)  # the fields set with --set


@dataclass
class Listing:
    letters: list[DeadLetter]
    start: dict[int, int]  # partition -> first offset read
    end: dict[int, int]  # partition -> offset after the last record read (the position to store)
    stored: dict[int, int]  # the stored position found before reading (empty: none yet)


def operator() -> str:
    """Who redrives: AFTERSALES_OPERATOR, else user@host of the machine running the command."""
    return os.environ.get("AFTERSALES_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def position_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}{POSITION_GROUP}"


async def read(settings: Settings, *, start: Start = "beginning", store: bool = False,
               progress: Tracker = QUIET) -> list[DeadLetter]:
    """The dead letters from `start` (the beginning, the stored position, or a moment), oldest
    first, each marked with its latest redrive. `store` moves the stored position to the end."""
    return (await listing(settings, start=start, store=store, progress=progress)).letters


async def listing(settings: Settings, *, start: Start = "beginning", store: bool = False,
                  progress: Tracker = QUIET) -> Listing:
    topic = settings.topic(DEADLETTER)
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(),  # type: ignore[arg-type]
                                group_id=position_group(settings), enable_auto_commit=False)
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        if not tps:
            return Listing([], {}, {}, {})
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        stored = {tp.partition: offset for tp in tps if (offset := await consumer.committed(tp)) is not None}
        await consumer.seek_to_beginning(*tps)
        if start == "stored":
            beginnings = await consumer.beginning_offsets(tps)
            for tp in tps:
                if tp.partition in stored:  # within what the log still holds (retention, truncation)
                    consumer.seek(tp, max(beginnings[tp], min(stored[tp.partition], ends[tp])))
        elif isinstance(start, datetime):
            found = await consumer.offsets_for_times({tp: int(start.timestamp() * 1000) for tp in tps})
            for tp in tps:
                consumer.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])
        # a truncated partition starts where it ends: ask each one's position, not just ends > 0
        first = {tp: max(await consumer.position(tp), 0) for tp in tps}
        task = progress.add_task("reading dead letters", total=sum(max(ends[tp] - first[tp], 0) for tp in tps))
        remaining = {tp for tp in tps if first[tp] < ends[tp]}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)).items():
                wanted = [r for r in records if r.offset < ends[tp]]
                letters.extend(_letter(record) for record in wanted)
                progress.advance(task, len(wanted))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if store:
            await consumer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in tps})
    finally:
        await stop_consumer(consumer)
    letters.sort(key=lambda d: d.dead_lettered_at)
    redrives = await read_redrives(settings)
    for letter in letters:
        letter.redriven = redrives.get(letter.id)
    return Listing(letters, {tp.partition: first[tp] for tp in tps}, {tp.partition: ends[tp] for tp in tps}, stored)


def _letter(record: Any) -> DeadLetter:
    envelope = orjson.loads(record.value)
    d = envelope["data"]
    return DeadLetter(
        id=record.key.decode(), service=d["service"], topic=d["topic"], partition=d["partition"],
        offset=d["offset"], error=d["error"], reason=d["reason"], event_type=d.get("event_type"),
        original_event_id=d.get("original_event_id"), key=d["record"]["key"],
        value=base64.b64decode(d["record"]["value_b64"]), headers=d["record"]["headers"],
        dead_lettered_at=envelope["occurred_at"],
    )


async def read_redrives(settings: Settings) -> dict[str, Redrive]:
    """The latest redrive of each dead letter (none when nothing was ever redriven)."""
    topic = settings.topic(REDRIVES)
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                enable_auto_commit=False)
    await consumer.start()
    found: dict[str, Redrive] = {}
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        if not tps:
            return {}
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                for record in records:
                    if record.offset < ends[tp] and record.value is not None:
                        redrive = Redrive(**orjson.loads(record.value))
                        found[redrive.letter] = redrive  # in offset order: the latest wins
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await stop_consumer(consumer)
    return found


async def ensure_redrives_topic(settings: Settings) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        if settings.topic(REDRIVES) in set(await admin.list_topics()):
            return
        try:
            await admin.create_topics([NewTopic(settings.topic(REDRIVES), 1, settings.topic_replication_factor,
                                                topic_configs=REDRIVES_CONFIG)])
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


def select(letters: list[DeadLetter], *, ids: list[str] | None = None, service: str | None = None,
           error: str | None = None, reason: str | None = None) -> list[DeadLetter]:
    chosen = letters
    if ids:
        wanted = set(ids)
        chosen = [d for d in chosen if d.id in wanted]
        missing = wanted - {d.id for d in chosen}
        if missing:
            raise LookupError(f"no dead letter for {', '.join(sorted(missing))}; `aftersales dlq list` shows their ids")
    if service:
        chosen = [d for d in chosen if d.service == service]
    if error:
        chosen = [d for d in chosen if d.error == error]
    if reason:
        chosen = [d for d in chosen if reason.lower() in d.reason.lower()]
    return chosen


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """`data.customer.phone="+86…"` → (["data", "customer", "phone"], "+86…"); a value that is not
    JSON is taken as a string."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise ValueError(f"--set {text!r} must look like data.vin=LJ1EEAUU5N0123456")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return path.strip().split("."), value


def corrected(letter: DeadLetter, assignments: list[tuple[list[str], Any]]) -> bytes:
    """The original record's value with the operator's corrections."""
    if not assignments:
        return letter.value
    if letter.topic not in UPSTREAM_TOPICS:
        raise ValueError(f"{letter.id}: {letter.topic} is a canonical topic; its events are not edited by hand "
                         "(fix the consumer and redrive the record unchanged)")
    envelope = letter.envelope
    if envelope is None:
        raise ValueError(f"{letter.id}: the record is not a JSON envelope, so it cannot be corrected field by field")
    fixed = copy.deepcopy(envelope)
    for path, value in assignments:
        node = fixed
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return orjson.dumps(fixed)


async def redrive(settings: Settings, letters: list[DeadLetter], assignments: list[tuple[list[str], Any]], *,
                  by: str | None = None, progress: Tracker = QUIET) -> list[tuple[DeadLetter, int, int]]:
    """Append each record to its original topic again and record the redrive (when, by whom,
    where to); return (letter, partition, offset) sent."""
    values = [corrected(letter, assignments) for letter in letters]  # refuse before sending anything
    await ensure_redrives_topic(settings)
    who = by or operator()
    now = clock_from_settings(settings.clock_offset_seconds, settings.clock_file).now().astimezone(UTC)
    fields = [".".join(path) for path, _ in assignments]
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=True, acks="all")  # type: ignore[arg-type]
    await producer.start()
    sent = []
    task = progress.add_task("redriving dead letters", total=len(letters))
    try:
        for letter, value in zip(letters, values, strict=True):
            headers = [(k, v.encode()) for k, v in letter.headers.items() if k != "x-redriven-from"]
            headers.append(("x-redriven-from", letter.id.encode()))
            meta = await producer.send_and_wait(
                settings.topic(letter.topic), value=value,
                key=letter.key.encode() if letter.key is not None else None, headers=headers,
            )
            letter.redriven = Redrive(letter=letter.id, at=now.isoformat(), by=who,
                                      sent_to=f"{letter.topic}:{meta.partition}:{meta.offset}", corrected=fields)
            await producer.send_and_wait(settings.topic(REDRIVES), key=letter.id.encode(),
                                         value=orjson.dumps(letter.redriven))
            sent.append((letter, meta.partition, meta.offset))
            progress.advance(task)
    finally:
        await producer.stop()
    return sent
