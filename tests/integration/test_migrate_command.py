"""`aftersales migrate` (the Helm chart's migrations Job) on a database of its own: it creates
the database, applies every process's migrations, and a second run applies nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from services import load
from shared.db import with_database
from shared.settings import PROCESSES, load_settings

ROOT = Path(__file__).resolve().parents[2]


def migrate(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AFTERSALES_DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "aftersales", "migrate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


async def test_migrate_all_creates_every_schema_and_a_second_run_changes_nothing() -> None:
    settings = load_settings()
    name = f"aftersales_migrate_{uuid.uuid4().hex[:10]}"
    url = with_database(settings.database_url, name)
    try:
        first = migrate(url, "all")
        assert first.returncode == 0, first.stdout + first.stderr
        conn = await asyncpg.connect(url)
        try:
            for process in PROCESSES:
                applied = {r["name"] for r in await conn.fetch(f'SELECT name FROM "{process}".schema_migrations')}
                own = load(process).migrations
                expected = {p.name for p in own.glob("*.sql")} if own is not None else set()
                assert expected <= applied, f"{process}: {sorted(expected - applied)} not applied"
                assert f"{process:<11} {len(applied)} applied" in first.stdout
        finally:
            await conn.close()
        second = migrate(url, "all")
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("0 applied (up to date)") == len(PROCESSES), second.stdout
        wrong = migrate(url, "nobody")
        assert wrong.returncode == 2 and "unknown service 'nobody'" in wrong.stdout
    finally:
        admin = await asyncpg.connect(with_database(settings.database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
