"""Isolated namespaces on the shared broker and server, for benchmarks, replays and tests:
a topic prefix (the contract topics, freshly created) and a database of their own. Services
run inside one as subprocesses of `aftersales serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx

from aftersales.dlq import REDRIVES
from shared.db import with_database
from shared.db_roles import ensure_schemas, role_passwords
from shared.events import ALL_TOPICS
from shared.kafka.clients import delete_topics, ensure_topics
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Namespace:
    settings: Settings
    prefix: str
    database: str

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess service living in this namespace."""
        env = {
            **os.environ,
            "AFTERSALES_TOPIC_PREFIX": self.prefix,
            "AFTERSALES_DATABASE_URL": self.settings.database_url,
            "AFTERSALES_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "AFTERSALES_OUTBOX_IDLE_POLL_SECONDS": "0.2",
            "AFTERSALES_TIMER_TICK_SECONDS": "0.2",
            # the tests' tokens ("agent-token") are short on purpose; the namespace is loopback
            "AFTERSALES_DEV_WEAK_SECRETS": "true",
            # each service as its own Postgres role when the server has them (shared/db_roles.py)
            "AFTERSALES_DATABASE_ROLE_PASSWORDS": self.settings.database_role_passwords.get_secret_value(),
            "AFTERSALES_DATABASE_ROLE_PREFIX": self.settings.database_role_prefix,
            "AFTERSALES_DEV_SINGLE_DATABASE_ROLE": "true" if self.settings.dev_single_database_role else "false",
        }
        if self.settings.clock_offset_seconds:  # the namespace lives on another day (tests)
            env["AFTERSALES_CLOCK_OFFSET_SECONDS"] = repr(self.settings.clock_offset_seconds)
        env.update(extra)
        return env


async def create_namespace(label: str = "t", partitions: int = 12, **overrides: Any) -> Namespace:
    base = load_settings()
    token = f"{label}{uuid.uuid4().hex[:10]}"
    prefix, database = f"{token}.", f"aftersales_{token}"
    conn = await asyncpg.connect(with_database(base.database_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')  # generated name, not input
    finally:
        await conn.close()
    settings = load_settings(
        topic_prefix=prefix, topic_partitions=partitions, database_url=with_database(base.database_url, database),
        **overrides,
    )
    if role_passwords(settings):
        # the services' roles (made by `aftersales infra up`) get their schemas in the new database
        conn = await asyncpg.connect(settings.database_url)
        try:
            await ensure_schemas(conn, settings)
        finally:
            await conn.close()
    if "dev_single_database_role" not in overrides:
        # loopback test namespaces: a process without a role of its own (a server without the roles
        # yet, a test's own service name) shares the admin's; the product's services use their roles
        settings = settings.model_copy(update={"dev_single_database_role": True})
    await ensure_topics(settings, ALL_TOPICS)
    return Namespace(settings, prefix, database)


async def drop_namespace(ns: Namespace) -> None:
    try:
        # the contract topics and the dead-letter redrive record (`aftersales dlq redrive`)
        await delete_topics(ns.settings, [ns.topic(t) for t in (*ALL_TOPICS, REDRIVES)])
    except Exception:  # noqa: BLE001 - best effort: the broker may be down in a fault test
        pass
    base = load_settings()
    conn = await asyncpg.connect(with_database(base.database_url, "postgres"))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            ns.database,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{ns.database}"')
    finally:
        await conn.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`aftersales serve <service>` in a subprocess of this namespace."""

    def __init__(self, ns: Namespace, service: str, log_dir: Path, **env: str) -> None:
        self.ns = ns
        self.service = service
        self.port = free_port()
        self.env = ns.env(**{f"AFTERSALES_{service.upper()}_PORT": str(self.port)}, **env)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{service}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aftersales", "serve", self.service],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.service} exited with {self.process.returncode}:\n{self.tail()}")
            if self.ready():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.service} not ready within {timeout}s:\n{self.tail()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
