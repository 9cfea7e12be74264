"""Compose's Postgres TLS on a real server: a private cluster of this machine's Postgres (its own
port, dropped afterwards; the shared server is never touched) configured like compose's (the
certificate from deploy/postgres/tls-init.sh, deploy/postgres/pg_hba.conf: TLS only). A service
connects as its own role with sslmode=verify-full and the CA (shared/db.py) and runs its
migrations; a wrong CA, a host name the certificate does not name, and plain TCP are refused."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from services import load
from shared.db import connect, create_pool
from shared.db_roles import ensure_roles, ensure_schemas, role_name, service_settings
from shared.errors import DatabaseUnavailable
from shared.migrations import KERNEL_MIGRATIONS, migrate
from shared.settings import load_settings
from tools.sandbox import free_port

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = ROOT / "deploy" / "postgres"


def _tls_script(tls: Path, ca: Path, host: str, out: Path) -> None:
    """deploy/postgres/tls-init.sh as compose runs it, with these folders and host name."""
    script = (POSTGRES / "tls-init.sh").read_text().replace("tls=/tls", f"tls={tls}").replace("ca=/ca", f"ca={ca}")
    out.write_text(script)
    tls.mkdir(parents=True, exist_ok=True)
    ca.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["sh", str(out)], env={"PATH": "/usr/bin:/bin", "POSTGRES_TLS_HOST": host},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@dataclass
class Cluster:
    version: str
    name: str
    port: int
    ca: Path


def _version() -> str:
    versions = sorted((p.name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "postgres").exists()),
                      key=lambda v: int(v) if v.isdigit() else 0)
    if not versions or shutil.which("pg_createcluster") is None:
        pytest.fail("Debian's postgresql (pg_createcluster) is needed: `aftersales infra up` installs it")
    return versions[-1]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    version, name, port = _version(), f"tls{uuid.uuid4().hex[:8]}", free_port()
    conf = Path(f"/etc/postgresql/{version}/{name}")
    work = tmp_path_factory.mktemp("pgtls")
    subprocess.run(["pg_createcluster", version, name, "--port", str(port), "--start-conf", "manual"],
                   check=True, capture_output=True, text=True, timeout=120)
    try:
        _tls_script(conf / "tls", work / "ca", "localhost", work / "tls-init.sh")  # the server's name here
        shutil.copy(POSTGRES / "pg_hba.conf", conf / "compose_hba.conf")
        (conf / "conf.d" / "compose_tls.conf").write_text(
            f"ssl = on\nssl_cert_file = '{conf}/tls/server.crt'\nssl_key_file = '{conf}/tls/server.key'\n"
            f"ssl_min_protocol_version = 'TLSv1.2'\nhba_file = '{conf}/compose_hba.conf'\n"
            "listen_addresses = 'localhost'\n")
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, capture_output=True, text=True,
                       timeout=120)
        yield Cluster(version, name, port, work / "ca" / "ca.pem")
    finally:
        subprocess.run(["pg_dropcluster", version, name, "--stop"], capture_output=True, text=True, timeout=120)


async def test_a_service_reaches_postgres_only_over_tls_verify_full_as_its_own_role(tls_cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    passwords = f"intake={secrets.token_urlsafe(32)}"
    admin = await asyncpg.connect(host="/var/run/postgresql", port=tls_cluster.port, user="postgres",
                                  database="postgres")  # the socket: the container's own set-up
    base = load_settings(database_url=f"postgresql://localhost:{tls_cluster.port}/aftersales?sslmode=verify-full",
                         database_ssl_rootcert=tls_cluster.ca, database_role_passwords=passwords,
                         database_role_prefix="aftersales_", dev_single_database_role=False)
    try:
        await admin.execute("CREATE DATABASE aftersales")
        await ensure_roles(admin, base)
    finally:
        await admin.close()
    admin = await asyncpg.connect(host="/var/run/postgresql", port=tls_cluster.port, user="postgres",
                                  database="aftersales")
    try:
        await ensure_schemas(admin, base)
    finally:
        await admin.close()

    intake = service_settings(base, "intake")
    conn = await connect(intake, schema="intake")
    try:
        assert await conn.fetchval("SELECT current_user") == role_name(base, "intake")
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
        own = load("intake").migrations
        assert own is not None
        applied = await migrate(conn, "intake", {"kernel": KERNEL_MIGRATIONS, "intake": own})
        assert "intake/0001_customer_files.sql" in applied
    finally:
        await conn.close()
    pool = await create_pool(intake, "intake", min_size=1, max_size=1)  # the services' pools: the same TLS
    try:
        assert await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
    finally:
        await pool.close()

    # another CA: the server's certificate is not trusted
    _tls_script(tmp_path / "other", tmp_path / "other-ca", "localhost", tmp_path / "other.sh")
    wrong_ca = intake.model_copy(update={"database_ssl_rootcert": tmp_path / "other-ca" / "ca.pem"})
    with pytest.raises(DatabaseUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await connect(wrong_ca)
    # a name the certificate does not carry (verify-full checks it)
    by_address = intake.model_copy(update={"database_url": intake.database_url.replace("localhost", "127.0.0.1")})
    with pytest.raises(DatabaseUnavailable, match="IP address mismatch|Hostname mismatch|doesn't match"):
        await connect(by_address)
    # plain TCP: pg_hba.conf's hostnossl reject
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(intake.database_url.split("?")[0], ssl=False)
