"""`aftersales dlq list | redrive`: inspect dead letters by reason, and send them back once fixed.

A dead letter holds the original record (key, value, headers) and the reason it was refused.
Redriving appends that record to its original topic again, marked with an
`x-redriven-from: <topic>:<partition>:<offset>` header, so the consumer that refused it gets a
second chance: after its code or configuration was fixed (unchanged record), or with the
fields an operator corrected (`--set data.vin=…`, upstream records only: a canonical event is
its owner's and is never edited by hand). Consumers that already processed the record skip it
by its event_id.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events import DEADLETTER, UPSTREAM_TOPICS
from shared.kafka.clients import partitions_of, stop_consumer
from shared.settings import Settings


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

    @property
    def envelope(self) -> dict[str, Any] | None:
        try:
            parsed = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None


async def read(settings: Settings) -> list[DeadLetter]:
    """Every dead letter on the topic, oldest first."""
    topic = settings.topic(DEADLETTER)
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                enable_auto_commit=False)
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        if not tps:
            return []
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # a truncated partition starts where it ends: ask each one's position, not just ends > 0
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    envelope = orjson.loads(record.value)
                    d = envelope["data"]
                    letters.append(DeadLetter(
                        id=record.key.decode(), service=d["service"], topic=d["topic"], partition=d["partition"],
                        offset=d["offset"], error=d["error"], reason=d["reason"], event_type=d.get("event_type"),
                        original_event_id=d.get("original_event_id"), key=d["record"]["key"],
                        value=base64.b64decode(d["record"]["value_b64"]), headers=d["record"]["headers"],
                        dead_lettered_at=envelope["occurred_at"],
                    ))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await stop_consumer(consumer)
    letters.sort(key=lambda d: d.dead_lettered_at)
    return letters


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


async def redrive(settings: Settings, letters: list[DeadLetter], assignments: list[tuple[list[str], Any]]
                  ) -> list[tuple[DeadLetter, int, int]]:
    """Append each record to its original topic again; return (letter, partition, offset) sent."""
    values = [corrected(letter, assignments) for letter in letters]  # refuse before sending anything
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=True, acks="all")  # type: ignore[arg-type]
    await producer.start()
    sent = []
    try:
        for letter, value in zip(letters, values, strict=True):
            headers = [(k, v.encode()) for k, v in letter.headers.items() if k != "x-redriven-from"]
            headers.append(("x-redriven-from", letter.id.encode()))
            meta = await producer.send_and_wait(
                settings.topic(letter.topic), value=value,
                key=letter.key.encode() if letter.key is not None else None, headers=headers,
            )
            sent.append((letter, meta.partition, meta.offset))
    finally:
        await producer.stop()
    return sent
