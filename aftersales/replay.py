"""`aftersales replay --from T --to T --service S`: re-drive a range of the log into a scratch
copy of a service's state and report every difference from the live state.

The scratch copy is a database of its own, built by the service's own handlers from its input
topics (everything up to the end of the range, so the state the range's events met is rebuilt
too), through the same consumer pipeline the live service runs, with the clock set to each
record's log time (shifted by AFTERSALES_CLOCK_OFFSET_SECONDS, as the services' own clock is).
Nothing is published and nothing is sent: the outbox relay, the timers and the notifier's
dispatcher do not run.
The tables the log cannot rebuild (the erasure register: `replay_keeps` of the service's
definition) are copied from the live state first, so a replay after an erasure files nothing
personal of the erased customer, as the live service did not.

What is compared, for the inputs whose log time is in [from, to):
- the rows the service's event handlers decided (each service lists them, with the columns that
  follow from the log alone; a row the live service changed after the range is reported, not
  compared), both ways: missing in the replay, missing in the live state, different;
- the events the handlers published: each event of the replay (its id is derived from its
  cause, so the live one has the same id) must be on the live topic with the same data.

A difference means a decision does not follow from the log: a bug, a changed rule table or
configuration, or a hand-made change to the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from aftersales.progress import QUIET, Tracker
from services import load
from shared import keyring
from shared.clock import ManualClock
from shared.db import connect, with_database
from shared.db_roles import ensure_schemas, role_passwords
from shared.events import DEADLETTER, SERVICE_TOPIC
from shared.kafka.clients import partitions_of, stop_consumer
from shared.kafka.consumer import EventConsumer
from shared.replay import Comparison, bind
from shared.runtime import ServiceRuntime
from shared.settings import Settings


@dataclass
class Difference:
    what: str  # the comparison's name, or "published events"
    key: str
    kind: str  # missing in the replay | missing in the live state | different
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    service: str
    since: str
    until: str
    records_replayed: int = 0
    inputs_in_range: int = 0
    compared: dict[str, int] = field(default_factory=dict)
    changed_later: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    scratch_database: str | None = None

    def as_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2, default=str)


async def read_log(settings: Settings, topics: list[str], until_ms: int, since_ms: int | None = None,
                   progress: Tracker = QUIET, description: str = "reading the log") -> list[Any]:
    """The records of `topics` with log time before `until_ms` (and from `since_ms`), in log-time order."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await partitions_of(consumer, t)]
        ends = await consumer.end_offsets(tps)
        live = [tp for tp in tps if ends[tp] > 0]
        if not live:
            return []
        consumer.assign(live)
        await consumer.seek_to_beginning(*live)
        if since_ms is not None:
            starts = await consumer.offsets_for_times({tp: since_ms for tp in live})
            for tp in live:
                found = starts.get(tp)
                consumer.seek(tp, found.offset if found else ends[tp])
        first = {tp: await consumer.position(tp) for tp in live}
        to_read = sum(max(ends[tp] - first[tp], 0) for tp in live)  # at most: a partition stops at until_ms
        task = progress.add_task(description, total=to_read)
        remaining = {tp for tp in live if first[tp] < ends[tp]}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=20_000)
            for tp, batch in batches.items():
                progress.advance(task, len(batch))
                for record in batch:
                    if record.offset < ends[tp] and record.timestamp < until_ms:
                        records.append(record)
                    if record.timestamp >= until_ms or record.offset >= ends[tp] - 1:
                        remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        progress.update(task, completed=to_read)
    finally:
        await stop_consumer(consumer)
    records.sort(key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))
    return records


async def replay(settings: Settings, service: str, since: datetime, until: datetime, *, keep: bool = False,
                 progress: Tracker = QUIET) -> Report:
    definition = load(service)
    since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    scratch_name = f"aftersales_replay_{uuid.uuid4().hex[:10]}"
    scratch_settings = settings.model_copy(update={"database_url": with_database(settings.database_url, scratch_name)})
    # The services' clock is the log time shifted by their configured offset (a stack living on
    # another day): the replay decides, and judges later changes, on that clock too.
    offset = timedelta(seconds=settings.clock_offset_seconds)
    clock = ManualClock(since + offset)
    if role_passwords(settings):  # the service's own role replays too, on a scratch schema handed to it
        await _scratch_for_roles(scratch_settings, scratch_name)
    else:  # one role for all (development): the scratch database is the admin's, like the live one
        scratch_settings = scratch_settings.model_copy(update={"dev_single_database_role": True})
    runtime = ServiceRuntime(definition, scratch_settings, clock, replica="replay")
    report = Report(service, since.isoformat(), until.isoformat(), scratch_database=scratch_name if keep else None)
    await runtime.start(consume=False, relay=False, timers=False, workers=False)
    try:
        assert runtime.pool is not None
        await _keep(settings, scratch_settings, service, definition.replay_keeps, report)
        # sealed fields open with the live keys: an erased customer's stay unreadable (shared/keyring.py)
        live_keys = await connect(settings, schema=service)
        pipeline = EventConsumer(service=service, settings=scratch_settings, pool=runtime.pool, clock=clock,
                                 subscriptions=definition.subscriptions, deps=runtime.deps, keys=live_keys)
        records = await read_log(settings, [settings.topic(s.topic) for s in definition.subscriptions], until_ms,
                                 progress=progress, description=f"reading {service}'s inputs")
        inputs: dict[uuid.UUID, uuid.UUID] = {}  # event id -> correlation id, for inputs in the range
        applying = progress.add_task("replaying into the scratch database", total=len(records))
        for start in range(0, len(records), 500):
            chunk = records[start:start + 500]
            clock.set(datetime.fromtimestamp(chunk[-1].timestamp / 1000, UTC) + offset)
            await pipeline.apply(chunk)
            progress.advance(applying, len(chunk))
            for record in chunk:
                if record.timestamp >= since_ms:
                    try:
                        envelope = orjson.loads(record.value)
                        inputs[uuid.UUID(envelope["event_id"])] = uuid.UUID(
                            envelope.get("correlation_id") or envelope["event_id"])
                    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                        continue  # undecodable: the dead-letter comparison covers it
        report.records_replayed = len(records)
        report.inputs_in_range = len(inputs)
        live = await connect(settings, schema=service)
        scratch = await connect(scratch_settings, schema=service)
        try:
            comparing = progress.add_task("comparing with the live state", total=len(definition.replay) + 1)
            for comparison in definition.replay:
                await _compare_rows(comparison, live, scratch, inputs, until + offset, report)
                progress.advance(comparing)
            await _compare_events(settings, service, scratch, live, inputs, since_ms, report)
            progress.advance(comparing)
        finally:
            await live.close()
            await scratch.close()
            await live_keys.close()
    finally:
        await runtime.stop()
        if not keep:
            await _drop(settings, scratch_name)
    return report


async def _keep(settings: Settings, scratch_settings: Settings, service: str, tables: Sequence[str],
                report: Report) -> None:
    """Copy the tables the log cannot rebuild (the erasure register) from the live state."""
    if not tables:
        return
    live = await connect(settings, schema=service)
    scratch = await connect(scratch_settings, schema=service)
    try:
        for table in tables:
            rows = await live.fetch(f"SELECT * FROM {table}")  # noqa: S608 - the service definition's own table
            if rows:
                await scratch.copy_records_to_table(table, records=[tuple(r.values()) for r in rows],
                                                    columns=list(rows[0].keys()), schema_name=service)
            report.notes[f"{table} (kept)"] = f"{len(rows)} rows copied from the live state before the replay"
    finally:
        await live.close()
        await scratch.close()


async def _compare_rows(c: Comparison, live: asyncpg.Connection, scratch: asyncpg.Connection,
                        inputs: dict[uuid.UUID, uuid.UUID], until: datetime, report: Report) -> None:
    scope, params = bind(c.scope, ids=list(inputs), correlations=list(set(inputs.values())))
    live_keys = {str(r[0]) for r in await live.fetch(scope, *params)}
    scratch_keys = {str(r[0]) for r in await scratch.fetch(scope, *params)}
    for key in sorted(scratch_keys - live_keys):
        report.differences.append(Difference(c.name, key, "missing in the live state"))
    for key in sorted(live_keys - scratch_keys):
        report.differences.append(Difference(c.name, key, "missing in the replay"))
    common = sorted(live_keys & scratch_keys)
    later = set()
    if c.changed_later and common:
        query, params = bind(c.changed_later, keys=common, until=until)
        later = {str(r[0]) for r in await live.fetch(query, *params)}
    compared = [k for k in common if k not in later]
    report.compared[c.name] = len(compared)
    report.changed_later[c.name] = len(later)
    if c.note:
        report.notes[c.name] = c.note
    query = f"SELECT ({c.key})::text AS k, {', '.join(c.columns)} FROM {c.table} WHERE ({c.key})::text = ANY($1)"
    live_rows = {r["k"]: r for r in await live.fetch(query, compared)}
    scratch_rows = {r["k"]: r for r in await scratch.fetch(query, compared)}
    for key in compared:
        differing = {col: {"live": _plain(live_rows[key][col]), "replay": _plain(scratch_rows[key][col])}
                     for col in c.columns if _plain(live_rows[key][col]) != _plain(scratch_rows[key][col])}
        if differing:
            report.differences.append(Difference(c.name, key, "different", differing))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def _compare_events(settings: Settings, service: str, scratch: asyncpg.Connection, live: asyncpg.Connection,
                          inputs: dict[uuid.UUID, uuid.UUID], since_ms: int, report: Report) -> None:
    """Every event the replay's handlers published for the range's inputs is on the live topics
    with the same data (ids are derived from causes, so they agree; the live records' sealed
    fields are opened with the live keys, the replay's outbox holds them plain)."""
    rows = await scratch.fetch("SELECT event_id, topic, event_type, payload FROM outbox ORDER BY id")
    produced = {}
    for row in rows:
        envelope = orjson.loads(bytes(row["payload"]))
        cause = envelope.get("causation_id")
        if cause and uuid.UUID(cause) in inputs:
            produced[envelope["event_id"]] = envelope
    report.compared["published events"] = len(produced)
    if not produced:
        return
    topics = [settings.topic(SERVICE_TOPIC[service]), settings.topic(DEADLETTER)]
    published = {}
    records = await read_log(settings, topics, until_ms=2**62, since_ms=since_ms - 60_000)
    for value in await keyring.open_payloads(live, [r.value for r in records]):
        try:
            envelope = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            continue
        if envelope.get("event_id") in produced:
            published[envelope["event_id"]] = envelope
    for event_id, envelope in produced.items():
        live = published.get(event_id)
        if live is None:
            report.differences.append(Difference("published events", event_id, "missing in the live state",
                                                 {"event_type": envelope["event_type"]}))
        elif live["data"] != envelope["data"]:
            changed = {k: {"live": live["data"].get(k), "replay": envelope["data"].get(k)}
                       for k in set(live["data"]) | set(envelope["data"]) if live["data"].get(k) != envelope["data"].get(k)}
            report.differences.append(Difference("published events", event_id, "different",
                                                 {"event_type": envelope["event_type"], **changed}))


async def _scratch_for_roles(scratch_settings: Settings, name: str) -> None:
    conn = await connect(scratch_settings, database_url=with_database(scratch_settings.database_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')  # a generated name
    finally:
        await conn.close()
    conn = await connect(scratch_settings)
    try:
        await ensure_schemas(conn, scratch_settings)
    finally:
        await conn.close()


async def _drop(settings: Settings, name: str) -> None:
    conn = await connect(settings, database_url=with_database(settings.database_url, "postgres"))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # a generated name
    finally:
        await conn.close()

