"""asyncpg pools: one per service, its search_path set to the service's own schema."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from shared.errors import DatabaseUnavailable
from shared.settings import Settings


async def _init_connection(conn: asyncpg.Connection) -> None:
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type,
            encoder=lambda value: orjson.dumps(value, default=str).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


def _ssl_option(settings: Settings) -> Any:
    """TLS as the URL's sslmode says; a private CA from database_ssl_rootcert. With no
    sslmode, a loopback connection goes without TLS (nothing to protect on 127.0.0.1, and
    encrypting it costs the hot path dearly); any other host keeps asyncpg's 'prefer'."""
    if settings.database_ssl_rootcert:
        return ssl.create_default_context(cafile=str(settings.database_ssl_rootcert))
    parts = urlsplit(settings.database_url)
    if "sslmode" not in parts.query and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return False
    return None


async def create_pool(settings: Settings, schema: str, *, min_size: int | None = None,
                      max_size: int | None = None) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=min_size or settings.db_pool_min,
        max_size=max_size or settings.db_pool_max,
        init=_init_connection,
        ssl=_ssl_option(settings),
        # Custom plans only: a service's tables grow from empty, and a generic plan Postgres
        # caches while a table is small (a sequential scan) outlives its growth until the next
        # autoanalyze; the pipeline benchmark showed thousands of such scans per run.
        server_settings={"search_path": f"{schema},public", "application_name": f"aftersales-{schema}",
                         "plan_cache_mode": "force_custom_plan"},
        command_timeout=60,
    )


async def connect(settings: Settings, schema: str | None = None, database_url: str | None = None) -> asyncpg.Connection:
    server_settings = {"search_path": f"{schema},public"} if schema else {}
    try:
        conn = await asyncpg.connect(
            database_url or settings.database_url, ssl=_ssl_option(settings), server_settings=server_settings, timeout=10
        )
    except Exception as exc:
        raise DatabaseUnavailable(f"no database connection: {type(exc).__name__}: {exc}") from exc
    await _init_connection(conn)
    return conn


def database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/") or "postgres"


def with_database(database_url: str, name: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def ensure_database(settings: Settings) -> bool:
    """Create the configured database if it does not exist. True when it was created."""
    name = database_name(settings.database_url)
    conn = await connect(settings, database_url=with_database(settings.database_url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')  # a name from settings, quoted; not user input
        return True
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; failing to get one at all is transient, whatever the cause."""
    try:
        conn = await pool.acquire()
    except Exception as exc:
        raise DatabaseUnavailable(f"no database connection: {type(exc).__name__}: {exc}") from exc
    try:
        yield conn
    finally:
        await pool.release(conn)
