"""Durable timers: due-at rows in Postgres, claimed with FOR UPDATE SKIP LOCKED.

A timer fires when the service clock reaches its due_at, once, whichever replica claims it.
Its handler runs in the same transaction that marks it fired, with the same unit of work as
an event handler, so the events it publishes go through the outbox.

Two kinds of due-at rows: the kernel's `timers` table (a weekly report, a complaint's SLA
step), and `Deadlines` a service keeps on its own rows (a follow-up's next step, a vehicle's
maintenance reminder), where a separate timer row would only repeat the row it is about.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import structlog

from shared import metrics, tracing
from shared.clock import Clock
from shared.db import acquire
from shared.errors import is_transient
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.settings import Settings
from shared.uow import UnitOfWork

log = structlog.get_logger("aftersales.timers")


@dataclass(frozen=True, slots=True)
class Timer:
    id: int
    kind: str
    ref: str
    due_at: datetime
    payload: dict[str, Any]
    cause_event_id: uuid.UUID | None
    cause_correlation_id: uuid.UUID | None

    @property
    def event_id(self) -> uuid.UUID:
        """As a cause: the event that set the timer, or the timer itself."""
        return self.cause_event_id or uuid5(AFTERSALES_NAMESPACE, f"timer:{self.kind}:{self.ref}")

    @property
    def correlation_id(self) -> uuid.UUID:
        return self.cause_correlation_id or self.event_id

    @property
    def discriminator(self) -> str:
        """Events a timer causes get ids of their own, apart from its setter's other effects."""
        return f"timer:{self.kind}:{self.ref}:{self.due_at.isoformat()}"


D = TypeVar("D")
T = TypeVar("T")
TimerHandler = Callable[[UnitOfWork[Any], list[Timer]], Awaitable[None]]


class Deadlines(Protocol[T]):
    """Due moments a service keeps on its own rows, fired like timers: `claim` takes due rows with
    FOR UPDATE SKIP LOCKED (so replicas never fire one twice), `fire` acts on them in the same
    transaction and must move each row's deadline on or clear it; a row whose firing fails for
    good is `park`ed with the error (its deadline cleared), so it cannot block the others."""

    name: str

    async def claim(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[T]: ...

    async def fire(self, uow: UnitOfWork[Any], due: list[T]) -> None: ...

    async def park(self, conn: asyncpg.Connection, row: T, error: str) -> None: ...

    async def backlog(self, conn: asyncpg.Connection, now: datetime) -> int: ...


async def due_work(conn: asyncpg.Connection, schema: str, deadlines: Sequence[Deadlines[Any]], now: datetime) -> int:
    """How many of a service's timers and row deadlines are due at `now` (for its backlog
    gauge, and for tools that wait until a stack has settled); any connection will do."""
    async with conn.transaction():
        await conn.execute("SELECT set_config('search_path', $1, true)", schema)
        due = int(await conn.fetchval(
            "SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= $1", now))
        for source in deadlines:
            due += await source.backlog(conn, now)
    return due


@dataclass
class TimerRunner(Generic[D]):
    service: str
    settings: Settings
    pool: asyncpg.Pool
    clock: Clock
    handlers: Mapping[str, TimerHandler]
    deps: D
    deadlines: Sequence[Deadlines[Any]] = ()
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    fired: int = 0

    def request_stop(self) -> None:
        self._stopping.set()

    async def purge(self) -> int:
        """Forget timers fired or cancelled longer ago than the retention (the log keeps what they did)."""
        horizon = self.clock.now() - timedelta(days=self.settings.timer_retention_days)
        async with acquire(self.pool) as conn:
            status = await conn.execute(
                "DELETE FROM timers WHERE coalesce(fired_at, cancelled_at) < $1", horizon)
        return int(status.split()[-1])

    async def run(self) -> None:
        backoff = 0.2
        last_purge = 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() - last_purge > 3600:
                    await self.purge()
                    last_purge = time.monotonic()
                fired = await self.fire_due()
                backoff = 0.2
            except Exception as exc:
                if not is_transient(exc):
                    raise
                metrics.TRANSIENT_ERRORS.labels(self.service, "timers").inc()
                log.warning("timer run failed, retrying", error=type(exc).__name__)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_seconds)
                continue
            if fired < self.settings.timer_batch:
                await self._sleep(self.settings.timer_tick_seconds)

    async def fire_due(self) -> int:
        """Fire up to one batch of due timers, and of each kind of deadline; return the most
        any one fired (a full batch means: look again at once)."""
        now = self.clock.now()
        fired = [await self._fire_timers(now)] if self.handlers else []
        for source in self.deadlines:
            fired.append(await self._fire_deadlines(source, now))
        return max(fired, default=0)

    async def _fire_timers(self, now: datetime) -> int:
        try:
            return await self._fire(now, only_id=None)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("timer batch failed, firing one timer per transaction", error=type(exc).__name__)
            return await self._fire_one_by_one(now)

    async def _fire_deadlines(self, source: Deadlines[Any], now: datetime) -> int:
        try:
            return await self._fire_rows(source, now, only=None)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("deadline batch failed, firing one row per transaction", deadlines=source.name,
                        error=type(exc).__name__)
        async with acquire(self.pool) as conn:
            async with conn.transaction():
                rows = await source.claim(conn, now, self.settings.timer_batch)  # a peek: released at commit
        fired = 0
        for row in rows:
            try:
                fired += await self._fire_rows(source, now, only=row)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("deadline failed; the row is parked with its error", deadlines=source.name)
                async with acquire(self.pool) as conn:
                    await source.park(conn, row, f"{type(exc).__name__}: {exc}"[:2000])
        return fired

    async def _fire_rows(self, source: Deadlines[Any], now: datetime, only: Any) -> int:
        async with acquire(self.pool) as conn:
            async with conn.transaction():
                rows = await source.claim(conn, now, self.settings.timer_batch)
                if only is not None:
                    rows = [r for r in rows if r == only]
                if not rows:
                    return 0
                uow = UnitOfWork(conn, service=self.service, settings=self.settings, clock=self.clock, deps=self.deps)
                with tracing.firing(self.service, source.name, len(rows)):  # a trace of its own
                    await source.fire(uow, rows)
                    await uow.flush()
        metrics.TIMERS_FIRED.labels(self.service, source.name).inc(len(rows))
        self.fired += len(rows)
        return len(rows)

    async def _claim(self, conn: asyncpg.Connection, now: datetime, only_id: int | None) -> list[Timer]:
        rows = await conn.fetch(
            """SELECT id, kind, ref, due_at, payload, cause_event_id, cause_correlation_id
                 FROM timers
                WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= $1 AND kind = ANY($2::text[])
                  AND ($4::bigint IS NULL OR id = $4)
                ORDER BY due_at, id
                LIMIT $3
                FOR UPDATE SKIP LOCKED""",
            now, list(self.handlers), self.settings.timer_batch, only_id,
        )
        return [Timer(**dict(r)) for r in rows]

    async def _fire(self, now: datetime, only_id: int | None) -> int:
        async with acquire(self.pool) as conn:
            async with conn.transaction():
                timers = await self._claim(conn, now, only_id)
                if not timers:
                    return 0
                uow = UnitOfWork(conn, service=self.service, settings=self.settings, clock=self.clock, deps=self.deps)
                with tracing.firing(self.service, ",".join(sorted({t.kind for t in timers})), len(timers)):
                    for kind, group in groupby(timers, key=lambda t: t.kind):
                        await self.handlers[kind](uow, list(group))
                    await uow.flush()
                # Only what was claimed: a handler may have re-armed a timer it fired (same kind and
                # ref, a new due_at), and that new one must stay pending.
                await conn.execute(
                    """UPDATE timers t SET fired_at = $3
                         FROM unnest($1::bigint[], $2::timestamptz[]) AS c(id, due_at)
                        WHERE t.id = c.id AND t.due_at = c.due_at AND t.fired_at IS NULL""",
                    [t.id for t in timers], [t.due_at for t in timers], now,
                )
        for timer in timers:
            metrics.TIMERS_FIRED.labels(self.service, timer.kind).inc()
        self.fired += len(timers)
        return len(timers)

    async def _fire_one_by_one(self, now: datetime) -> int:
        async with acquire(self.pool) as conn:
            ids = [t.id for t in await self._claim(conn, now, None)]  # a peek, outside a transaction
        fired = 0
        for timer_id in ids:
            try:
                fired += await self._fire(now, only_id=timer_id)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("timer handler failed; the timer is parked with its error", timer_id=timer_id)
                async with acquire(self.pool) as conn:
                    await conn.execute(
                        "UPDATE timers SET fired_at = $2, error = $3 WHERE id = $1 AND fired_at IS NULL",
                        timer_id, now, f"{type(exc).__name__}: {exc}"[:2000],
                    )
        return fired

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass
