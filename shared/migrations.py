"""Numbered SQL files per service schema, applied once, in order, and checksummed.

`0001_init.sql`, `0002_add_x.sql`, … Each schema records what it applied in
`schema_migrations`; a file changed after it was applied is refused, because the database
would no longer match the code. Two replicas starting at once serialise on an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

KERNEL_MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    source: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(source: str, directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path} is not named like 0001_description.sql")
        migrations.append(Migration(source, int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files in {directory} share a number")
    return migrations


async def migrate(conn: asyncpg.Connection, schema: str, sources: dict[str, Path], *,
                  owner: str | None = None) -> list[str]:
    """Apply what is new for `schema` from each source directory; return the names applied.
    `owner`: the role to apply them as (`SET ROLE`, the admin's `aftersales migrate`), so what
    they create belongs to the service's role (shared/db_roles.py)."""
    if not _SCHEMA.match(schema):
        raise MigrationError(f"schema name {schema!r} must be lower-case letters, digits and _")
    if owner is not None and not _SCHEMA.match(owner):
        raise MigrationError(f"role name {owner!r} must be lower-case letters, digits and _")
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"aftersales-migrate:{schema}")
        # Only when missing: a service's own role may not create schemas (no CREATE on the
        # database), and CREATE SCHEMA IF NOT EXISTS checks that privilege before it looks.
        if not await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            if owner is None:
                await conn.execute(f'CREATE SCHEMA "{schema}"')
            else:  # names quoted by Postgres itself (format %I)
                await conn.execute(await conn.fetchval(
                    "SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', $1::text, $2::text)", schema, owner))
        if owner is not None:  # SET LOCAL ROLE, as a parameter
            await conn.execute("SELECT set_config('role', $1, true)", owner)
        await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   source text NOT NULL, version int NOT NULL, name text NOT NULL,
                   checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (source, version))"""
        )
        done = {
            (r["source"], r["version"]): r
            for r in await conn.fetch("SELECT source, version, name, checksum FROM schema_migrations")
        }
        for source, directory in sources.items():
            for migration in load_migrations(source, directory):
                previous = done.get((source, migration.version))
                if previous is not None:
                    if previous["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"{schema}: {source} migration {migration.name} was changed after it was applied "
                            f"(checksum {previous['checksum'][:12]} in the database, {migration.checksum[:12]} on disk); "
                            "add a new numbered file instead of editing an applied one"
                        )
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (source, version, name, checksum) VALUES ($1, $2, $3, $4)",
                    source, migration.version, migration.name, migration.checksum,
                )
                applied.append(f"{source}/{migration.name}")
    return applied
