"""The outbox relay: publishes committed outbox rows to Kafka in id order, then deletes them.

One relay per service is active at a time (a Postgres advisory lock elects it), so with two
replicas rows are neither published twice concurrently nor reordered for a key. The producer
is idempotent with acks=all. A crash after publishing but before marking re-publishes those
rows once with the same event_id, which every consumer's inbox skips. The outbox holds only
what is still to publish (and the rows set aside because the broker refuses them for good).

A send that fails (the broker restarted, the producer's sequence broke: OutOfOrderSequenceNumber)
leaves the rows in place and the producer is replaced before the next try: an idempotent
producer whose state the broker no longer accepts would otherwise fail, and re-send the
batch, on every retry.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from shared import keyring, metrics
from shared.db import connect
from shared.errors import TransientError, is_transient
from shared.events.catalog import CANONICAL_TOPICS
from shared.events.cloudevents import record_headers
from shared.settings import Settings
from shared.tracing import record_headers as trace_headers
from shared.tracing import sending
from shared.uow import outbox_channel

log = structlog.get_logger("aftersales.relay")


def _headers(row: asyncpg.Record, prefix: str = "") -> list[tuple[str, bytes]]:
    """The record's headers: those it always had and the CloudEvents binary-mode `ce_*` ones,
    from its envelope (shared/events/cloudevents.py)."""
    return record_headers(row["topic"].removeprefix(prefix), bytes(row["payload"]), event_type=row["event_type"],
                          event_id=row["event_id"]) + trace_headers(row.get("traceparent"), row.get("tracestate"))


class SendFailed(TransientError):
    """The broker did not take a batch: its rows stay in the outbox and are sent again."""
# what the broker (or the producer, before sending) refuses for a record's size: never transient
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


@dataclass
class OutboxRelay:
    service: str
    settings: Settings
    producer: AIOKafkaProducer
    # Makes a fresh producer when a send failed (None: keep the one given, as tests may).
    new_producer: Callable[[], AIOKafkaProducer] | None = None
    _partitions: dict[str, list[int]] = field(default_factory=dict)
    _partitioner: DefaultPartitioner = field(default_factory=DefaultPartitioner)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    is_leader: bool = False
    published: int = 0

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.settings, schema=self.service)
                await self._lead(conn)
                backoff = 0.2
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("outbox relay failed")
                metrics.TRANSIENT_ERRORS.labels(self.service, "relay").inc()
                log.warning("outbox relay interrupted, retrying", error=type(exc).__name__, detail=str(exc)[:200])
                if isinstance(exc, SendFailed):
                    await self._renew_producer()
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_seconds)
            finally:
                self.is_leader = False
                if conn is not None and not conn.is_closed():
                    try:
                        await asyncio.wait_for(conn.close(), 2)
                    except Exception:
                        conn.terminate()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        lock_name = f"aftersales-outbox:{self.settings.topic_prefix}{self.service}"
        while not self._stopping.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_name):
                break
            await self._sleep(1.0)
        else:
            return
        self.is_leader = True
        log.info("outbox relay is the active publisher", service=self.service)
        await conn.add_listener(outbox_channel(self.service), lambda *_: self._wake.set())
        while not self._stopping.is_set():
            published = await self.publish_batch(conn)
            if published < self.settings.outbox_batch:
                await self._sleep(self.settings.outbox_idle_poll_seconds, wakeable=True)

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        self._wake.clear()
        rows = await conn.fetch(
            """SELECT id, event_id, topic, key, event_type, payload, traceparent, tracestate,
                      extract(epoch FROM created_at) AS created
                 FROM outbox WHERE failed_at IS NULL ORDER BY id LIMIT $1""",
            self.settings.outbox_batch,
        )
        if not rows:
            return 0
        if self.settings.fault == "crash_before_publish":
            os.kill(os.getpid(), signal.SIGKILL)
        rows = await self._sealed(conn, rows)
        refused: list[tuple[asyncpg.Record, str]] = []
        with sending(self.service, rows):  # the rows' W3C trace headers (and `send` spans while exporting)
            for batch_rows, result in await self._send_in_batches(rows):
                if isinstance(result, TOO_LARGE):
                    # one record the broker refuses spoils its batch: send those one by one to find it
                    refused += await self._send_one_by_one(batch_rows)
                elif isinstance(result, BaseException):
                    raise SendFailed(f"{type(result).__name__}: {result}") from result
        if self.settings.fault == "crash_after_publish":
            log.warning("fault injection: SIGKILL after publish, before marking the outbox")
            os.kill(os.getpid(), signal.SIGKILL)
        if refused:
            await self._set_aside(conn, refused)
        kept = {r["id"] for r, _ in refused}
        sent = [row for row in rows if row["id"] not in kept]
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in sent])
        now = time.time()
        counts = Counter((row["topic"], row["event_type"]) for row in sent)
        for (topic, event_type), n in counts.items():
            metrics.EVENTS_PUBLISHED.labels(self.service, topic, event_type).inc(n)
        delay = metrics.OUTBOX_DELAY.labels(self.service)
        for row in sent:
            delay.observe(max(0.0, now - float(row["created"])))
        self.published += len(sent)
        return len(sent)

    async def _sealed(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[Any]:
        """The rows as they go to Kafka: on the canonical topics, every personal value of a
        customer sealed with the customer's key (shared/keyring.py); other rows (upstream
        records intake forwards, dead letters) as they are."""
        canonical = [i for i, row in enumerate(rows)
                     if row["topic"].removeprefix(self.settings.topic_prefix) in CANONICAL_TOPICS]
        if not canonical:
            return rows
        sealed = await keyring.seal_payloads(conn, [bytes(rows[i]["payload"]) for i in canonical],
                                             may_rekey=self.service == keyring.OWNER_SERVICE)
        out: list[Any] = list(rows)
        for i, payload in zip(canonical, sealed, strict=True):
            out[i] = {**dict(rows[i]), "payload": payload}
        return out

    async def _send_in_batches(self, rows: list[asyncpg.Record]) -> list[tuple[list[asyncpg.Record], Any]]:
        """Send the rows as record batches, one run of batches per partition in id order (the
        partition a keyed send would choose), and wait for them: (the rows of each batch, its
        result or exception). A send per record costs some 24 µs of Python; a batch, some 8."""
        groups: dict[tuple[str, int], list[asyncpg.Record]] = {}
        for row in rows:
            topic = row["topic"]
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
            partition = self._partitioner(row["key"].encode(), partitions, partitions)
            groups.setdefault((topic, partition), []).append(row)
        sends: list[tuple[list[asyncpg.Record], Any]] = []
        for (topic, partition), group in groups.items():
            members: list[asyncpg.Record] = []
            batch = self.producer.create_batch()
            for row in group:
                appended = batch.append(key=row["key"].encode(), value=bytes(row["payload"]), timestamp=None,
                                        headers=_headers(row, self.settings.topic_prefix))
                if appended is None:  # the batch is full: send it, start the next with this row
                    if members:
                        sends.append((members, await self.producer.send_batch(batch, topic, partition=partition)))
                    batch, members = self.producer.create_batch(), []
                    if batch.append(key=row["key"].encode(), value=bytes(row["payload"]), timestamp=None,
                                    headers=_headers(row, self.settings.topic_prefix)) is None:
                        sends.append(([row], await self._send_alone(row)))  # larger than any batch
                        continue
                members.append(row)
            if members:
                sends.append((members, await self.producer.send_batch(batch, topic, partition=partition)))
        results = await asyncio.gather(*(future for _, future in sends), return_exceptions=True)
        return [(members, result) for (members, _), result in zip(sends, results, strict=True)]

    async def _send_alone(self, row: asyncpg.Record) -> asyncio.Future[Any]:
        """A record sent by itself (the producer refuses what no batch can hold)."""
        try:
            headers = _headers(row, self.settings.topic_prefix)
            sent: asyncio.Future[Any] = await self.producer.send(row["topic"], value=bytes(row["payload"]),
                                                                 key=row["key"].encode(), headers=headers)
            return sent
        except TOO_LARGE as exc:
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            return refused

    async def _send_one_by_one(self, rows: list[asyncpg.Record]) -> list[tuple[asyncpg.Record, str]]:
        """Send each row alone; return the ones the broker refuses for good, with the reason."""
        refused = []
        futures = [(row, await self._send_alone(row)) for row in rows]
        for (row, _), result in zip(futures, await asyncio.gather(*(f for _, f in futures), return_exceptions=True),
                                    strict=True):
            if isinstance(result, TOO_LARGE):
                refused.append((row, f"{type(result).__name__}: {result}"))
            elif isinstance(result, BaseException):
                raise SendFailed(f"{type(result).__name__}: {result}") from result
        return refused

    async def _renew_producer(self) -> None:
        """A new producer (a new producer id and fresh sequence numbers) for the next try."""
        if self.new_producer is None:
            return
        try:
            await asyncio.wait_for(self.producer.stop(), 10)
        except Exception as exc:  # noqa: BLE001 - the old one is being thrown away
            log.info("the failed producer did not stop cleanly", error=type(exc).__name__)
        while not self._stopping.is_set():
            fresh = self.new_producer()
            try:
                await fresh.start()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("kafka not reachable for a new producer yet, retrying", error=type(exc).__name__)
                await self._sleep(1.0)
                continue
            self.producer = fresh
            log.info("outbox relay replaced its producer after a failed send", service=self.service)
            return

    async def _set_aside(self, conn: asyncpg.Connection, refused: list[tuple[asyncpg.Record, str]]) -> None:
        """Rows the broker can never take are kept, marked, and skipped: the rows after them
        flow on. Ops see the counter and the error log; the row stays in the outbox."""
        await conn.executemany("UPDATE outbox SET failed_at = now(), error = $2 WHERE id = $1",
                               [(row["id"], error[:2000]) for row, error in refused])
        for row, error in refused:
            metrics.OUTBOX_SET_ASIDE.labels(self.service, row["topic"]).inc()
            log.error("outbox row set aside: the broker refuses it for good", outbox_id=row["id"],
                      event_id=str(row["event_id"]), topic=row["topic"], event_type=row["event_type"],
                      bytes=len(row["payload"]), error=error[:300])

    async def _sleep(self, seconds: float, wakeable: bool = False) -> None:
        waiter = self._wake if wakeable else self._stopping
        try:
            await asyncio.wait_for(waiter.wait(), timeout=seconds)
        except TimeoutError:
            pass
