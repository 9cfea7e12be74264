"""One shape for every service: a `ServiceDefinition` says what it consumes, which timers it
owns, its HTTP routes and KPIs, and how to build its typed dependencies (rules, clients);
`ServiceRuntime` runs it (pool, migrations, consumer, outbox relay, timers, HTTP) and stops it
gracefully: in-flight batches finish and commit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI

from shared import keyring, metrics, tracing
from shared.clock import Clock, clock_from_settings
from shared.db import acquire, create_pool, ensure_database
from shared.db_roles import DatabaseRoleRefused, check_service_role, has_own_role, service_settings
from shared.errors import is_transient
from shared.kafka.clients import make_producer
from shared.kafka.consumer import EventConsumer, Subscription
from shared.kafka.relay import OutboxRelay
from shared.migrations import KERNEL_MIGRATIONS, migrate
from shared.replay import Comparison
from shared.settings import Settings, load_settings
from shared.timers import Deadlines, TimerHandler, TimerRunner, due_work
from shared.uow import UnitOfWork

log = structlog.get_logger("aftersales.runtime")

D = TypeVar("D")
Worker = Callable[["ServiceRuntime[Any]"], Awaitable[None]]


async def no_deps(runtime: ServiceRuntime[None], overrides: Mapping[str, Any]) -> None:
    return None


@dataclass
class ServiceDefinition(Generic[D]):
    name: str
    description: str
    migrations: Path | None
    # Builds the service's typed dependencies once the pool exists and migrations are applied
    # (rule tables, clients, directories); `overrides` replaces some of them (tests, tools).
    deps: Callable[[ServiceRuntime[D], Mapping[str, Any]], Awaitable[D]] = no_deps  # type: ignore[assignment]
    subscriptions: Sequence[Subscription] = ()
    timers: Mapping[str, TimerHandler] = field(default_factory=dict)
    # Due moments kept on the service's own rows, fired like timers.
    deadlines: Sequence[Deadlines[Any]] = ()
    router: Callable[[], APIRouter] | None = None
    kpis: Callable[[ServiceRuntime[D]], Awaitable[None]] | None = None
    workers: Sequence[Worker] = ()
    # Runs once the dependencies are built, before the loops start (arm standing timers …).
    on_start: Callable[[ServiceRuntime[D]], Awaitable[None]] | None = None
    # Runs at stop, after the loops ended (close clients).
    on_stop: Callable[[ServiceRuntime[D]], Awaitable[None]] | None = None
    # What `aftersales replay` compares between the live state and a replay of the log.
    replay: Sequence[Comparison] = ()
    # Tables of the service's schema the log cannot rebuild, copied from the live state into a
    # replay's scratch database before the log is re-driven: the erasure register, so that a
    # replay after an erasure restores nothing of the erased customer (docs/security.md).
    replay_keeps: Sequence[str] = ()


class ServiceRuntime(Generic[D]):
    def __init__(
        self,
        definition: ServiceDefinition[D],
        settings: Settings | None = None,
        clock: Clock | None = None,
        *,
        replica: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings or load_settings()
        self.clock = clock or clock_from_settings(self.settings.clock_offset_seconds, self.settings.clock_file)
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        self.name = definition.name
        self.overrides: dict[str, Any] = dict(overrides or {})
        self._deps: D | None = None
        self._deps_built = False
        self.pool: asyncpg.Pool | None = None
        self.producer: Any = None
        self.consumer: EventConsumer[Any] | None = None
        self.relay: OutboxRelay | None = None
        self.timers: TimerRunner[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._app: FastAPI | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, *, consume: bool = True, relay: bool = True, timers: bool = True, workers: bool = True) -> None:
        tracing.setup(self.name, self.settings)  # once per process: OTLP export if configured, else ids only
        await self._open_database()
        await self.build_deps()
        if self.definition.on_start is not None:
            await self.definition.on_start(self)
        if relay:
            self.producer = make_producer(self.settings, client_id=f"{self.name}-relay-{self.replica}")
            await self._start_producer()
            self.relay = OutboxRelay(
                self.name, self.settings, self.producer,
                new_producer=lambda: make_producer(self.settings, client_id=f"{self.name}-relay-{self.replica}"))
            self._spawn(self.relay.run(), "relay")
        if consume and self.definition.subscriptions:
            self.consumer = EventConsumer(
                service=self.name, settings=self.settings, pool=self.pool, clock=self.clock,
                subscriptions=self.definition.subscriptions, client_id=f"{self.name}-{self.replica}",
                deps=self.deps,
            )
            await self.consumer.start()
            self._spawn(self.consumer.run(), "consumer")
        if timers and (self.definition.timers or self.definition.deadlines):
            self.timers = TimerRunner(
                self.name, self.settings, self.pool, self.clock, self.definition.timers, deps=self.deps,
                deadlines=self.definition.deadlines,
            )
            self._spawn(self.timers.run(), "timers")
        if workers:
            for worker in self.definition.workers:
                self._spawn(worker(self), getattr(worker, "__name__", "worker"))
        self._spawn(self._watch_backlogs(), "backlogs")
        if self.definition.kpis is not None:
            self._spawn(self._refresh_kpis(), "kpis")
        log.info("service started", service=self.name, replica=self.replica)

    async def _open_database(self) -> None:
        """Create the database if needed, open the pool, apply migrations; wait for a server
        that is still starting instead of exiting."""
        delay = 0.5
        sources = {"kernel": KERNEL_MIGRATIONS}
        if self.definition.migrations is not None:
            sources[self.name] = self.definition.migrations
        # Its own role (shared/db_roles.py); refused without one, or as a superuser, outside development.
        settings = service_settings(self.settings, self.name)
        warning = None
        while True:
            try:
                if not has_own_role(self.settings, self.name):  # a role of its own may not create databases
                    await ensure_database(settings)
                self.pool = await create_pool(settings, self.name)
                async with acquire(self.pool) as conn:
                    warning = await check_service_role(conn, self.settings, self.name)
                    applied = await migrate(conn, self.name, sources)
                    await self._check_keyring(conn)
                break
            except Exception as exc:
                if self.pool is not None:
                    self.pool.terminate()
                    self.pool = None
                if not is_transient(exc) or self._stopping.is_set():
                    raise
                log.warning("database not reachable yet, retrying", error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        if warning:
            log.warning("development flag set on loopback: running without a database role of its own",
                        service=self.name, reason=warning)
        if applied:
            log.info("migrations applied", service=self.name, applied=applied)

    async def _check_keyring(self, conn: asyncpg.Connection) -> None:
        """The customers' keys (shared/keyring.py) are made with the schemas by the admin; a
        development service that is the admin makes them itself; otherwise start-up is refused."""
        if await keyring.keyring_exists(conn):
            return
        if has_own_role(self.settings, self.name):
            raise DatabaseRoleRefused(
                f"{self.name}: the keyring ({keyring.TABLE}) is missing in this database; `aftersales infra up` "
                "(or `aftersales infra db-roles`, or `aftersales migrate`) creates it with the schemas")
        await keyring.ensure_keyring(conn)

    async def _start_producer(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.producer.start()
                return
            except Exception as exc:
                log.warning("kafka not reachable yet, retrying", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
                self.producer = make_producer(self.settings, client_id=f"{self.name}-relay-{self.replica}")

    async def stop(self) -> None:
        """Finish in-flight work and commit, then close everything."""
        self._stopping.set()
        if self.consumer is not None:
            self.consumer.request_stop()
        if self.timers is not None:
            self.timers.request_stop()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.consumer.stop(), 30)
        if self.relay is not None:
            # Give the relay a moment to publish what the last batch committed.
            await self._drain_outbox(timeout=5)
            self.relay.request_stop()
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.definition.on_stop is not None and self._deps_built:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.definition.on_stop(self), 10)
        producer = self.relay.producer if self.relay is not None else self.producer  # the relay may have renewed it
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(tracing.flush, self.name)  # the spans still buffered (when exporting)
        log.info("service stopped", service=self.name)

    async def _drain_outbox(self, timeout: float) -> None:
        if self.pool is None or self.relay is None or not self.relay.is_leader:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        with contextlib.suppress(Exception):
            while asyncio.get_running_loop().time() < deadline:
                pending = await self.pool.fetchval(
                    "SELECT count(*) FROM outbox WHERE failed_at IS NULL")
                if not pending:
                    return
                self.relay._wake.set()
                await asyncio.sleep(0.05)

    async def build_deps(self) -> D:
        """The service's dependencies, built once (the pool must exist if they need it)."""
        if not self._deps_built:
            self._deps = await self.definition.deps(self, self.overrides)
            self._deps_built = True
        return self._deps  # type: ignore[return-value]

    @property
    def deps(self) -> D:
        if not self._deps_built:
            raise RuntimeError(f"{self.name}: dependencies are built at start; start the service first")
        return self._deps  # type: ignore[return-value]

    def uow(self, conn: asyncpg.Connection) -> UnitOfWork[D]:
        """A unit of work outside a consumer (HTTP commands, workers)."""
        return UnitOfWork(conn, service=self.name, settings=self.settings, clock=self.clock, deps=self.deps)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork[D]]:
        """One transaction for an HTTP command or a worker step: state, outbox rows and
        timers commit together (the same unit of work a handler gets)."""
        assert self.pool is not None, "the service is not started"
        async with acquire(self.pool) as conn, conn.transaction():
            uow = self.uow(conn)
            yield uow
            await uow.flush()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}:{name}")
        task.add_done_callback(self._on_task_done)
        self._tasks.append(task)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.error("a service loop crashed; stopping the service", task=task.get_name(), error=repr(exc), exc_info=exc)
            self._stopping.set()
            self.crashed = exc

    crashed: BaseException | None = None

    # -- periodic ------------------------------------------------------------------------
    async def _watch_backlogs(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                assert self.pool is not None
                async with acquire(self.pool) as conn:
                    outbox = await conn.fetchval("SELECT count(*) FROM outbox WHERE failed_at IS NULL")
                    due = await due_work(conn, self.name, self.definition.deadlines, self.clock.now())
                metrics.OUTBOX_BACKLOG.labels(self.name).set(outbox)
                metrics.TIMER_BACKLOG.labels(self.name).set(due)
            await self._sleep(5)

    async def _refresh_kpis(self) -> None:
        assert self.definition.kpis is not None
        while not self._stopping.is_set():
            try:
                await self.definition.kpis(self)
            except Exception as exc:
                log.warning("KPI refresh failed", error=type(exc).__name__, detail=str(exc)[:200])
            await self._sleep(self.settings.kpi_refresh_seconds)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- HTTP ----------------------------------------------------------------------------
    @property
    def app(self) -> FastAPI:
        if self._app is None:
            from shared.http import create_app

            self._app = create_app(self, self.definition.router() if self.definition.router else None)
        return self._app

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            assert self.pool is not None, "not started"
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), 3)
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"unreachable: {type(exc).__name__}"
        try:
            producer = self.relay.producer if self.relay is not None else self.producer
            assert producer is not None, "not started"
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 3)
            checks["kafka"] = "ok"
        except Exception as exc:
            checks["kafka"] = f"unreachable: {type(exc).__name__}"
        return checks

    async def serve(self, *, host: str | None = None, port: int | None = None) -> None:
        """Run until SIGTERM/SIGINT, then stop gracefully. Exits non-zero if a loop crashed."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self.start()
        server = _QuietServer(
            uvicorn.Config(
                self.app, host=host or self.settings.http_host, port=port or self.settings.port_for(self.name),
                log_config=None, access_log=False, lifespan="off",
            )
        )
        http = asyncio.ensure_future(server.serve())
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({http, stopper}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(http, 10)
        stopper.cancel()
        await self.stop()
        if self.crashed is not None:
            raise SystemExit(f"{self.name} stopped because a loop crashed: {self.crashed!r}")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
