"""Fixtures shared by every layer. Integration and e2e tests need the real broker and
database (`aftersales infra up`, which `make test` runs first); they fail, not skip, without."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.logging import configure_logging
from shared.settings import load_settings
from tests.support import Namespace, create_namespace, drop_namespace

configure_logging("INFO", "json")


def _problem() -> str | None:
    settings = load_settings()
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        return f"Kafka at {settings.kafka_bootstrap} does not answer ({exc})"

    async def pg() -> str | None:
        import asyncpg

        try:
            conn = await asyncpg.connect(settings.database_url, timeout=5)
        except Exception as exc:  # noqa: BLE001 - any reason is worth reporting
            return f"Postgres at {settings.database_url} does not answer ({exc})"
        await conn.close()
        return None

    return asyncio.run(pg())


@pytest.fixture(scope="session")
def infra() -> None:
    problem = _problem()
    if problem:
        pytest.fail(f"{problem}. Run `make test` (or `aftersales infra up`) to start the local infrastructure.")


@pytest.fixture
async def ns(infra: None) -> AsyncIterator[Namespace]:
    namespace = await create_namespace()
    try:
        yield namespace
    finally:
        await drop_namespace(namespace)


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path
