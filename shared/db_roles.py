"""A Postgres role per service, owning only its own schema (issue 19, least privilege).

Each process (the five services and the console) connects as `<prefix><service>` (default
`aftersales_intake`, …): LOGIN, NOSUPERUSER, NOCREATEDB, NOCREATEROLE, NOINHERIT, the owner of its
schema and of everything in it, with no privilege on any other schema. `<prefix>ops` reads every
schema and writes nothing (pg_read_all_data, read-only transactions) for people and tools that
only look. The role of AFTERSALES_DATABASE_URL is the admin's: `aftersales infra up` (which
creates the roles and hands each schema to its owner), `aftersales migrate`, replay's scratch
databases and the tests' own databases; services never use it outside development.

A service's connection string is AFTERSALES_DATABASE_URL's server, database and options with
its own role and password (AFTERSALES_DATABASE_ROLE_PASSWORDS, "service=password" pairs), so a
test or replay database on the same server needs only its schemas handed to the roles.
Migrations run as the owning role: the service applies its own at start-up, and the admin's
`aftersales migrate` applies them under `SET ROLE <owner>`, so every table belongs to the owner.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from shared import keyring
from shared.settings import PROCESSES, Settings, _pairs

OPS = "ops"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# What a service's role may never be: a superuser, or a role that can make roles or databases.
_ROLE_OPTIONS = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"


class DatabaseRoleRefused(RuntimeError):
    """Start-up refused: the service would connect without a role of its own, or as a superuser."""


def role_name(settings: Settings, service: str) -> str:
    return f"{settings.database_role_prefix}{service}"


def role_passwords(settings: Settings) -> dict[str, str]:
    """service (or "ops") -> password."""
    passwords: dict[str, str] = {}
    for pair in _pairs(settings.database_role_passwords.get_secret_value()):
        name, _, password = pair.partition("=")
        if name.strip() and password.strip():
            passwords[name.strip()] = password.strip()
    return passwords


def with_login(database_url: str, user: str, password: str) -> str:
    """The same server, database and options, as another role."""
    parts = urlsplit(database_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def dev_single_role_allowed(settings: Settings) -> bool:
    """The development flag counts only where nobody else can reach the services or the database."""
    return (settings.dev_single_database_role and urlsplit(settings.database_url).hostname in _LOOPBACK
            and settings.http_host in _LOOPBACK)


def has_own_role(settings: Settings, service: str) -> bool:
    return service in role_passwords(settings)


def service_database_url(settings: Settings, service: str) -> str:
    """The connection string `service` uses: its own role's; without one, the single role of
    AFTERSALES_DATABASE_URL in development on loopback only; otherwise refused."""
    password = role_passwords(settings).get(service)
    if password is not None:
        return with_login(settings.database_url, role_name(settings, service), password)
    if dev_single_role_allowed(settings):
        return settings.database_url
    flag = ("AFTERSALES_DEV_SINGLE_DATABASE_ROLE=true is set, but it only applies while the database host and "
            "AFTERSALES_HTTP_HOST are loopback" if settings.dev_single_database_role else
            "for local development only, AFTERSALES_DEV_SINGLE_DATABASE_ROLE=true lets it use AFTERSALES_DATABASE_URL's "
            "role on loopback")
    raise DatabaseRoleRefused(
        f"{service}: no database role of its own: AFTERSALES_DATABASE_ROLE_PASSWORDS has no entry {service}=… "
        f"(the password of role {role_name(settings, service)}; `aftersales infra up` creates the roles and writes "
        f"them to .local/secrets.env); {flag}."
    )


def reader_database_url(settings: Settings) -> str:
    """For tools that only read across schemas (the demo's figures): the read-only ops role
    where there is one, else AFTERSALES_DATABASE_URL's role."""
    password = role_passwords(settings).get(OPS)
    return with_login(settings.database_url, role_name(settings, OPS), password) if password else settings.database_url


def service_settings(settings: Settings, service: str) -> Settings:
    """The settings a service runs with: database_url is its own role's connection string."""
    return settings.model_copy(update={"database_url": service_database_url(settings, service)})


async def check_service_role(conn: asyncpg.Connection, settings: Settings, service: str) -> str | None:
    """Refuse a superuser (or a role that can make roles or databases) and a schema owned by
    another role; in development on loopback, return the reason as a warning instead."""
    row = await conn.fetchrow(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert row is not None
    powers = [name for name, held in (("SUPERUSER", row["rolsuper"]), ("CREATEROLE", row["rolcreaterole"]),
                                      ("CREATEDB", row["rolcreatedb"]), ("BYPASSRLS", row["rolbypassrls"])) if held]
    problem = None
    if powers:
        problem = (f"{service}: connected as role {row['rolname']}, which holds {', '.join(powers)}; a service "
                   f"connects as its own role ({role_name(settings, service)}) with none of these")
    else:
        owner = await conn.fetchval("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", service)
        if owner is not None and owner != row["rolname"]:
            problem = (f"{service}: schema {service} is owned by {owner}, not by {row['rolname']} it connects as; "
                       "`aftersales infra up` hands each schema to its service's role")
    if problem is None:
        return None
    if dev_single_role_allowed(settings):
        return problem
    raise DatabaseRoleRefused(problem + " (AFTERSALES_DEV_SINGLE_DATABASE_ROLE=true allows it on loopback only).")


# ---------------------------------------------------------------------------------------
# Set-up, as the admin (a superuser)


async def _run(conn: asyncpg.Connection, template: str, *args: str) -> None:
    """A utility statement whose names and literals Postgres quotes itself (format %I, %L)."""
    placeholders = ", ".join(f"${i + 2}::text" for i in range(len(args)))
    statement = await conn.fetchval(f"SELECT format($1::text, {placeholders})", template, *args)
    await conn.execute(statement)


async def ensure_roles(conn: asyncpg.Connection, settings: Settings) -> list[str]:
    """Create (or bring in line) each role named in AFTERSALES_DATABASE_ROLE_PASSWORDS, with its
    password; cluster-wide, so once per server. Returns the roles created."""
    created = []
    for name, password in role_passwords(settings).items():
        if name not in PROCESSES and name != OPS:
            raise DatabaseRoleRefused(f"AFTERSALES_DATABASE_ROLE_PASSWORDS names {name!r}: one of "
                                      f"{', '.join(PROCESSES)} or {OPS}")
        role = role_name(settings, name)
        exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
        # ops inherits pg_read_all_data; a service's role inherits nothing
        options = _ROLE_OPTIONS.replace("NOINHERIT", "INHERIT") if name == OPS else _ROLE_OPTIONS
        await _run(conn, f"{'ALTER' if exists else 'CREATE'} ROLE %I WITH {options} PASSWORD %L", role, password)
        if not exists:
            created.append(role)
        if name == OPS:
            await _run(conn, "GRANT pg_read_all_data TO %I", role)
            await _run(conn, "ALTER ROLE %I SET default_transaction_read_only = on", role)
    return created


async def hand_over_schema(conn: asyncpg.Connection, schema: str, owner: str) -> int:
    """Create `schema` owned by `owner`, or give it and everything in it to `owner`; nobody else
    keeps a privilege on it. Returns the number of objects whose owner changed."""
    exists = await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema)
    if not exists:
        await _run(conn, "CREATE SCHEMA %I AUTHORIZATION %I", schema, owner)
        return 0
    await _run(conn, "ALTER SCHEMA %I OWNER TO %I", schema, owner)
    await _run(conn, "REVOKE ALL ON SCHEMA %I FROM PUBLIC", schema)
    changed = 0
    kinds = {"r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
    # tables first: their owned sequences (serial, identity) follow them
    for relkinds in (("r", "p", "f", "v", "m"), ("S",)):
        rows = await conn.fetch(
            "SELECT c.relname, c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind::text = ANY($2::text[]) AND pg_get_userbyid(c.relowner) <> $3",
            schema, list(relkinds), owner)
        for row in rows:
            await _run(conn, f"ALTER {kinds[row['kind']]} %I.%I OWNER TO %I", schema, row["relname"], owner)
            changed += 1
    for function in await conn.fetch(
            "SELECT p.oid::regprocedure::text AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = $1 AND pg_get_userbyid(p.proowner) <> $2", schema, owner):
        await _run(conn, "ALTER ROUTINE %s OWNER TO %I", function["signature"], owner)  # regprocedure text is quoted
        changed += 1
    for type_ in await conn.fetch(
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 "
            "AND t.typrelid = 0 AND t.typtype IN ('e', 'd', 'r', 'm') AND pg_get_userbyid(t.typowner) <> $2",
            schema, owner):
        await _run(conn, "ALTER TYPE %I.%I OWNER TO %I", schema, type_["typname"], owner)
        changed += 1
    return changed


async def ensure_schemas(conn: asyncpg.Connection, settings: Settings) -> dict[str, int]:
    """In the connected database: each service with a role gets its schema handed over; the
    extension the console's search needs (pg_trgm) exists, made by the admin, and nobody may
    create in `public`. Returns schema -> objects whose owner changed."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    changed = {}
    for service in PROCESSES:
        if has_own_role(settings, service):
            changed[service] = await hand_over_schema(conn, service, role_name(settings, service))
    # the customers' keys of the sealed personal fields (shared/keyring.py): every service reads
    # and adds keys, intake also destroys them (erasure); the console only reads
    grants = {role_name(settings, s): (keyring.OWNER_GRANTS if s == keyring.OWNER_SERVICE else
                                       ("SELECT",) if s == "console" else keyring.READ_AND_ADD)
              for s in PROCESSES if has_own_role(settings, s)}
    await keyring.ensure_keyring(conn, grants)
    return changed


async def owner_for_migrations(conn: asyncpg.Connection, settings: Settings, service: str) -> str | None:
    """The role the admin's `aftersales migrate` applies a service's migrations as: its own role
    when it exists on the server (the schema handed to it first), else None (one role for all)."""
    role = role_name(settings, service)
    if not await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
        return None
    if await conn.fetchval("SELECT current_user = $1", role):
        return None
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")  # the console's search
    await hand_over_schema(conn, service, role)
    return role


async def drop_roles(conn: asyncpg.Connection, settings: Settings) -> None:
    """Drop the roles of AFTERSALES_DATABASE_ROLE_PASSWORDS (tests, on their own prefix); their
    databases must be gone or the objects reassigned first."""
    for name in role_passwords(settings):
        await _run(conn, "DROP ROLE IF EXISTS %I", role_name(settings, name))
