"""A Postgres role per service (issue 19), on the real server: each service's role owns its
schema and nothing else, runs its own migrations and starts; it cannot read or write another
service's schema; no role is a superuser; start-up refuses a superuser or a missing role
outside development. The roles here carry a prefix of their own (and a database of their own)
and are dropped afterwards, so the server's other users never see them."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from services import load
from shared.db import with_database
from shared.db_roles import (
    OPS,
    DatabaseRoleRefused,
    check_service_role,
    drop_roles,
    ensure_roles,
    ensure_schemas,
    role_name,
    service_database_url,
    service_settings,
)
from shared.migrations import KERNEL_MIGRATIONS, migrate
from shared.settings import PROCESSES, load_settings
from tests.support import Namespace, ServiceProcess, create_namespace, drop_namespace

ROOT = Path(__file__).resolve().parents[2]


def _sources(service: str) -> dict[str, Path]:
    own = load(service).migrations
    return {"kernel": KERNEL_MIGRATIONS, **({service: own} if own is not None else {})}


@pytest.fixture
async def roles_ns(infra: None) -> AsyncIterator[Namespace]:
    """A namespace whose services connect as roles of their own (a fresh prefix)."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    passwords = ",".join(f"{name}={secrets.token_urlsafe(32)}" for name in (*PROCESSES, OPS))
    base = load_settings(database_role_passwords=passwords, database_role_prefix=prefix)
    admin = await asyncpg.connect(base.database_url)
    try:
        await ensure_roles(admin, base)
    finally:
        await admin.close()
    ns = await create_namespace(database_role_passwords=passwords, database_role_prefix=prefix,
                                dev_single_database_role=False)  # no development leniency here
    try:
        yield ns
    finally:
        await drop_namespace(ns)
        admin = await asyncpg.connect(base.database_url)
        try:
            await drop_roles(admin, base)
        finally:
            await admin.close()


async def _migrate_all_as_their_roles(ns: Namespace) -> None:
    for service in PROCESSES:
        conn = await asyncpg.connect(service_database_url(ns.settings, service))
        try:
            assert await check_service_role(conn, ns.settings, service) is None
            await migrate(conn, service, _sources(service))
        finally:
            await conn.close()


async def test_the_roles_are_not_superusers_and_each_owns_its_schema_and_everything_in_it(roles_ns: Namespace) -> None:
    await _migrate_all_as_their_roles(roles_ns)
    admin = await asyncpg.connect(roles_ns.settings.database_url)
    try:
        for name in (*PROCESSES, OPS):
            row = await admin.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", role_name(roles_ns.settings, name))
            assert row is not None and row["rolcanlogin"]
            assert not (row["rolsuper"] or row["rolcreaterole"] or row["rolcreatedb"] or row["rolbypassrls"]), name
        for service in PROCESSES:
            role = role_name(roles_ns.settings, service)
            assert await admin.fetchval("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1",
                                        service) == role
            owners = {r["owner"] for r in await admin.fetch(
                "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1", service)}
            assert owners == {role}, (service, owners)
            assert await admin.fetchval(f'SELECT count(*) FROM "{service}".schema_migrations') >= 3
        # nobody but the admin may create in public (the console's pg_trgm is the admin's)
        assert not await admin.fetchval("SELECT has_schema_privilege($1, 'public', 'CREATE')",
                                        role_name(roles_ns.settings, "intake"))
    finally:
        await admin.close()


async def test_a_service_role_cannot_read_or_write_another_services_schema(roles_ns: Namespace) -> None:
    await _migrate_all_as_their_roles(roles_ns)
    admin = await asyncpg.connect(roles_ns.settings.database_url)
    try:  # the control: the rows are there to be read
        for service in PROCESSES:
            assert await admin.fetchval(f'SELECT count(*) FROM "{service}".schema_migrations') > 0
    finally:
        await admin.close()
    for service in PROCESSES:
        conn = await asyncpg.connect(service_database_url(roles_ns.settings, service))
        try:
            # its own: read and write
            assert await conn.fetchval(f'SELECT count(*) FROM "{service}".schema_migrations') > 0
            await conn.execute(f'INSERT INTO "{service}".timers (kind, ref, due_at) VALUES (\'t\', \'r\', now())')
            for other in PROCESSES:
                if other == service:
                    continue
                for statement in (f'SELECT * FROM "{other}".schema_migrations',
                                  f'INSERT INTO "{other}".timers (kind, ref, due_at) VALUES (\'x\', \'y\', now())',
                                  f'DELETE FROM "{other}".outbox',
                                  f'CREATE TABLE "{other}".planted (id int)'):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema"):
                        await conn.execute(statement)
            for statement in ("CREATE SCHEMA planted", "CREATE TABLE public.planted (id int)"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(statement)
            # a schema the service has not got cannot be slipped in under a superuser's cover either
            assert await check_service_role(conn, roles_ns.settings, service) is None
            other = next(p for p in PROCESSES if p != service)
            with pytest.raises(DatabaseRoleRefused, match=f"schema {other} is owned by"):
                await check_service_role(conn, roles_ns.settings, other)
        finally:
            await conn.close()
    ops = await asyncpg.connect(service_database_url(roles_ns.settings, OPS))
    try:  # the ops role reads every schema and writes none
        for service in PROCESSES:
            assert await ops.fetchval(f'SELECT count(*) FROM "{service}".schema_migrations') > 0
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await ops.execute('DELETE FROM "intake".timers')
    finally:
        await ops.close()


async def test_every_service_reads_and_adds_customer_keys_and_only_intake_destroys_them(roles_ns: Namespace) -> None:
    # the keyring of the sealed personal fields (shared/keyring.py), made with the schemas
    for service in PROCESSES:
        conn = await asyncpg.connect(service_database_url(roles_ns.settings, service))
        try:
            assert await conn.fetchval("SELECT count(*) FROM keyring.customer_keys") >= 0
            add = "INSERT INTO keyring.customer_keys (customer_id, key) VALUES ($1, $2)"
            destroy = "UPDATE keyring.customer_keys SET key = NULL WHERE customer_id = $1"
            if service == "console":  # reads only: it publishes nothing
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(add, f"C-{service}", secrets.token_bytes(32))
                continue
            await conn.execute(add, f"C-{service}", secrets.token_bytes(32))
            if service == "intake":
                assert await conn.execute(destroy, "C-intake") == "UPDATE 1"
            else:
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(destroy, f"C-{service}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute("DELETE FROM keyring.customer_keys")
        finally:
            await conn.close()


async def test_an_existing_schema_is_handed_to_its_role_with_everything_in_it_and_again_changes_nothing(
        roles_ns: Namespace) -> None:
    """`infra up` on a database whose schemas the admin made (today's single-role set-up)."""
    admin = await asyncpg.connect(roles_ns.settings.database_url)
    try:
        await admin.execute('DROP SCHEMA quality CASCADE; CREATE SCHEMA quality')
        await migrate(admin, "quality", _sources("quality"))  # as the admin: every table is the admin's
        await admin.execute("CREATE FUNCTION quality.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        before = await admin.fetchval("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                      "WHERE n.nspname = 'quality' AND pg_get_userbyid(c.relowner) = current_user")
        assert before > 5
        changed = await ensure_schemas(admin, roles_ns.settings)
        assert changed["quality"] >= 5 and changed["intake"] == 0
        assert await ensure_schemas(admin, roles_ns.settings) == {p: 0 for p in PROCESSES}
        assert await ensure_roles(admin, roles_ns.settings) == []  # idempotent: none created the second time
        role = role_name(roles_ns.settings, "quality")
        assert await admin.fetchval("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                    "WHERE n.nspname = 'quality' AND pg_get_userbyid(c.relowner) <> $1", role) == 0
        assert await admin.fetchval("SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'planted'") == role
    finally:
        await admin.close()
    conn = await asyncpg.connect(service_database_url(roles_ns.settings, "quality"))
    try:  # the role runs the migrations from there (none new) and may change its own tables
        assert await migrate(conn, "quality", _sources("quality")) == []
        await conn.execute("INSERT INTO quality.timers (kind, ref, due_at) VALUES ('k', 'r', now())")
    finally:
        await conn.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aftersales", *args], cwd=ROOT, env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=180)


async def test_migrate_runs_as_each_owner_and_a_service_starts_and_works_as_its_own_role(
        roles_ns: Namespace, logs_dir: Path) -> None:
    migrated = _cli(roles_ns.env(), "migrate", "all")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    admin = await asyncpg.connect(roles_ns.settings.database_url)
    try:
        for service in PROCESSES:
            owners = {r["owner"] for r in await admin.fetch(
                "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'", service)}
            assert owners == {role_name(roles_ns.settings, service)}, (service, owners)
    finally:
        await admin.close()
    process = ServiceProcess(roles_ns, "quality", logs_dir).start()
    try:
        process.wait_ready(90)
        admin = await asyncpg.connect(roles_ns.settings.database_url)
        try:
            user = await admin.fetchval("SELECT usename FROM pg_stat_activity WHERE datname = $1 "
                                        "AND application_name = 'aftersales-quality' LIMIT 1", roles_ns.database)
        finally:
            await admin.close()
        assert user == role_name(roles_ns.settings, "quality")
    finally:
        process.terminate()


async def test_start_up_refuses_a_superuser_or_a_missing_role_outside_development(roles_ns: Namespace) -> None:
    admin_settings = roles_ns.settings.model_copy(update={"dev_single_database_role": False})
    admin = await asyncpg.connect(roles_ns.settings.database_url)
    try:
        assert await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")  # the control
        with pytest.raises(DatabaseRoleRefused, match="which holds SUPERUSER"):
            await check_service_role(admin, admin_settings, "intake")
        dev = admin_settings.model_copy(update={"dev_single_database_role": True})
        assert "SUPERUSER" in (await check_service_role(admin, dev, "intake") or "")
        exposed = dev.model_copy(update={"http_host": "0.0.0.0"})
        with pytest.raises(DatabaseRoleRefused, match="holds SUPERUSER.*on loopback only"):
            await check_service_role(admin, exposed, "intake")
    finally:
        await admin.close()
    no_roles = admin_settings.model_copy(update={"database_role_passwords": SecretStr("")})
    with pytest.raises(DatabaseRoleRefused, match="no database role of its own"):
        service_settings(no_roles, "intake")
    assert service_settings(no_roles.model_copy(update={"dev_single_database_role": True}), "intake").database_url \
        == roles_ns.settings.database_url
    # the real start-up: `aftersales serve` without a role of its own and without the flag exits 78
    env = {**roles_ns.env(), "AFTERSALES_DATABASE_ROLE_PASSWORDS": "", "AFTERSALES_DEV_SINGLE_DATABASE_ROLE": "false"}
    refused = _cli(env, "serve", "intake")
    assert refused.returncode == 78, refused.stdout + refused.stderr
    assert "no database role of its own" in refused.stderr and "AFTERSALES_DATABASE_ROLE_PASSWORDS" in refused.stderr
    # the flag counts on loopback only
    env["AFTERSALES_DEV_SINGLE_DATABASE_ROLE"] = "true"
    env["AFTERSALES_DATABASE_URL"] = with_database(roles_ns.settings.database_url, roles_ns.database).replace(
        "127.0.0.1", "db.example.internal")
    refused = _cli(env, "serve", "intake")
    assert refused.returncode == 78, refused.stdout + refused.stderr
    assert "only applies while the database host" in refused.stderr
