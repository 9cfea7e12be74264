"""Staff accounts from the command line (`aftersales console users …`), the demo and the tests:
the console's schema is migrated first, so an account can be made before the console runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.console import accounts, store
from shared.db import connect, ensure_database
from shared.db_roles import has_own_role, service_database_url
from shared.migrations import KERNEL_MIGRATIONS, migrate
from shared.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "console"


class AccountError(ValueError):
    """The account cannot be made or changed as asked; the message says why."""


async def _connection(settings: Settings) -> Any:
    if has_own_role(settings, SCHEMA):  # as the console's own role (compose, helm, infra up's roles)
        conn = await connect(settings, SCHEMA, database_url=service_database_url(settings, SCHEMA))
    else:
        await ensure_database(settings)
        conn = await connect(settings, SCHEMA)
    await migrate(conn, SCHEMA, {"kernel": KERNEL_MIGRATIONS, SCHEMA: MIGRATIONS})
    return conn


async def add(settings: Settings, username: str, display_name: str, role: str, password: str,
              locale: str = "zh-CN", *, replace: bool = False, department: str | None = None,
              regions: Sequence[str] = (), dealers: Sequence[str] = ()) -> None:
    """`regions`/`dealers`: an agent's scope (the customers they may see); none: the whole group."""
    if role not in accounts.ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(accounts.ROLES)}")
    if (role == "department") != bool(department):
        raise AccountError("a department account names its department (--department quality_inspection …); "
                           "other roles name none")
    if locale not in ("zh-CN", "en"):
        raise AccountError(f"locale {locale!r} is not zh-CN or en")
    if (regions or dealers) and role != "agent":
        raise AccountError("only an agent has regions or dealers (supervisors see the whole group)")
    if any(not code or len(code) > 64 or any(ch.isspace() or ch == "," for ch in code) for code in (*regions, *dealers)):
        raise AccountError("a region or dealer code is 1-64 characters without spaces or commas")
    if not username or len(username) > 64 or any(ch.isspace() for ch in username):
        raise AccountError("a user name is 1-64 characters without spaces")
    try:
        hashed = accounts.hash_password(password)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    conn = await _connection(settings)
    try:
        async with conn.transaction():
            created = await store.add_account(conn, username, display_name or username, role, hashed, locale,
                                              datetime.now(UTC), department or None)
            if not created:
                if not replace:
                    raise AccountError(f"{username!r} exists already; use `aftersales console users password` to "
                                       "set a new password")
                await conn.execute("UPDATE accounts SET display_name = $2, role = $3, locale = $4, department = $5 "
                                   "WHERE username = $1", username, display_name or username, role, locale,
                                   department or None)
                await store.set_password(conn, username, hashed)
                await store.close_sessions_of(conn, username)
            await conn.execute("UPDATE accounts SET regions = $2, dealers = $3 WHERE username = $1",
                               username, list(regions), list(dealers))
    finally:
        await conn.close()


async def set_password(settings: Settings, username: str, password: str) -> None:
    try:
        hashed = accounts.hash_password(password)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    conn = await _connection(settings)
    try:
        if not await store.set_password(conn, username, hashed):
            raise AccountError(f"no account {username!r}; `aftersales console users list` shows them")
        await store.close_sessions_of(conn, username)
    finally:
        await conn.close()


async def unlock(settings: Settings, username: str) -> None:
    conn = await _connection(settings)
    try:
        if not await store.unlock(conn, username):
            raise AccountError(f"no account {username!r}; `aftersales console users list` shows them")
    finally:
        await conn.close()


async def listing(settings: Settings) -> list[dict[str, Any]]:
    conn = await _connection(settings)
    try:
        return await store.accounts(conn)
    finally:
        await conn.close()
