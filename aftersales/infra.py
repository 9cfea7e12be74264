"""`aftersales infra up | down | status`: local Kafka (KRaft, one node), Postgres and the
message peers, without Docker. Idempotent: `up` twice is harmless; `down` stops only what
`up` started. Logs go under `.local/logs/`.

- Kafka: the official broker jars from Maven Central, resolved by `deploy/kafka/pom.xml`
  (cached in `.local/kafka/libs`), storage formatted once, started with a 512 MB heap.
- Postgres: the server at AFTERSALES_DATABASE_URL if one answers; otherwise Debian's
  `postgresql` package, installed if missing, started, and opened to the local connection
  of the default URL.
- Peers: an SMTP server and an SMS-gateway sink (see `aftersales.peers`).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
from rich.console import Console

from aftersales.kafka_tls import LOCAL_HOSTS, ensure_tls
from shared.db import connect, ensure_database, with_database
from shared.db_roles import OPS, ensure_roles, ensure_schemas, role_passwords
from shared.kafka.acls import ADMIN, PRINCIPALS, new_credentials
from shared.kafka.clients import ensure_topics, make_admin, retention_summary
from shared.settings import PROCESSES, Settings, load_settings, project_home, secrets_file

console = Console(stderr=True)

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KAFKA_HEAP = "512m"
PEERS_SMTP_PORT = 1025
PEERS_HTTP_PORT = 8025


class InfraError(RuntimeError):
    pass


@dataclass(frozen=True)
class Paths:
    """Where an instance keeps its state. `aftersales infra up` uses `<home>/.local`; a private
    instance (the fault-injection suite's broker and database) passes its own `local` folder."""

    home: Path
    local_dir: Path | None = None

    @property
    def local(self) -> Path:
        return self.local_dir or self.home / ".local"

    @property
    def logs(self) -> Path:
        return self.local / "logs"

    @property
    def run(self) -> Path:
        return self.local / "run"

    @property
    def kafka(self) -> Path:
        return self.local / "kafka"

    @property
    def peers(self) -> Path:
        return self.local / "peers"

    def ensure(self) -> None:
        for path in (self.logs, self.run, self.kafka, self.peers):
            path.mkdir(parents=True, exist_ok=True)


def _paths() -> Paths:
    paths = Paths(project_home())
    paths.ensure()
    return paths


# ---------------------------------------------------------------------------------------
# helpers


def _run(cmd: list[str], *, check: bool = True, quiet: bool = False, **kwargs: object) -> subprocess.CompletedProcess[str]:
    if not quiet:
        console.print(f"[dim]$ {' '.join(cmd)}[/dim]")
    result = subprocess.run(cmd, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise InfraError(f"{' '.join(cmd)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}")
    return result  # type: ignore[no-any-return]


def _privileged(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo"):
        return ["sudo", "-n", *cmd]
    raise InfraError(
        f"{' '.join(cmd)} needs root. Run as root, allow sudo, or point AFTERSALES_DATABASE_URL at a running Postgres."
    )


_apt_updated = False


def apt_install(packages: list[str]) -> None:
    global _apt_updated
    if not shutil.which("apt-get"):
        raise InfraError(f"cannot install {', '.join(packages)}: apt-get is not available on this machine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        _run(_privileged(["apt-get", "update", "-q"]), env=env)
        _apt_updated = True
    _run(_privileged(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]), env=env)


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _stop_pid(pid_file: Path, name: str, timeout: float = 30) -> bool:
    pid = _read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        console.print(f"{name} did not stop within {timeout:.0f}s; killing it")
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host or "127.0.0.1", int(port or 9092)


# ---------------------------------------------------------------------------------------
# secrets


def console_key_pair() -> tuple[str, str]:
    """A new Ed25519 pair for the console's person tokens: (private, public), each the 32 raw
    bytes in base64 (one line, fit for an env file)."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def _ensure_console_keys(path: Path) -> None:
    """Add the console's key pair to a secrets file made before the console existed."""
    if "AFTERSALES_CONSOLE_SIGNING_KEY=" in path.read_text():
        return
    private, public = console_key_pair()
    with path.open("a") as fh:
        fh.write(f"AFTERSALES_CONSOLE_SIGNING_KEY={private}\nAFTERSALES_CONSOLE_PUBLIC_KEY={public}\n")


def _ensure_kafka_security(path: Path, kafka_formatted: bool) -> None:
    """Kafka's transport in the secrets file, decided once: SASL_SSL (a password per principal,
    the CA the clients trust) for a broker not formatted yet; a broker formatted before it (no
    SCRAM users) stays the PLAINTEXT development broker until its data is removed."""
    text = path.read_text()
    if "AFTERSALES_KAFKA_SECURITY_PROTOCOL=" in text:
        return
    if kafka_formatted:
        if "AFTERSALES_DEV_PLAINTEXT_KAFKA=" not in text:
            with path.open("a") as fh:
                fh.write("# Kafka here is the PLAINTEXT development broker formatted before SASL_SSL "
                         "(see `aftersales infra up`).\nAFTERSALES_DEV_PLAINTEXT_KAFKA=true\n")
        return
    cafile = path.parent / "kafka" / "tls" / "ca.pem"
    with path.open("a") as fh:
        fh.write("# Kafka: SASL (SCRAM-SHA-512) over TLS; one principal per service, producer and admin (tools).\n"
                 "AFTERSALES_KAFKA_SECURITY_PROTOCOL=SASL_SSL\nAFTERSALES_KAFKA_SASL_MECHANISM=SCRAM-SHA-512\n"
                 f"AFTERSALES_KAFKA_SSL_CAFILE={cafile}\nAFTERSALES_KAFKA_CREDENTIALS={new_credentials()}\n")


def _ensure_database_roles(path: Path) -> None:
    """A password per service's Postgres role and the read-only ops role (shared/db_roles.py),
    added once; `infra up` creates the roles with them."""
    if "AFTERSALES_DATABASE_ROLE_PASSWORDS=" in path.read_text():
        return
    passwords = ",".join(f"{name}={secrets.token_urlsafe(32)}" for name in (*PROCESSES, OPS))
    with path.open("a") as fh:
        fh.write("# Postgres: a role per service owning only its schema, and ops (read-only); "
                 "AFTERSALES_DATABASE_URL's role is the admin's.\n"
                 f"AFTERSALES_DATABASE_ROLE_PASSWORDS={passwords}\n")


def ensure_secrets(kafka_formatted: bool | None = None) -> Path:
    """Generate `.local/secrets.env` once: API tokens per role, webhook secrets per producer,
    the SMS gateway key, the console's key pair, Kafka's credentials. Services and the CLI read
    it when the environment lacks them."""
    path = secrets_file()
    if kafka_formatted is None:
        kafka_formatted = (path.parent / "kafka" / "data" / "meta.properties").exists()
    if path.exists():
        _ensure_console_keys(path)
        _ensure_kafka_security(path, kafka_formatted)
        _ensure_database_roles(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = ",".join(
        f"{secrets.token_urlsafe(24)}={role}:{subject}"
        for role, subject in (
            ("agent", "agent-01"), ("agent", "agent-02"), ("supervisor", "supervisor-01"),
            ("quality", "quality-01"), ("ops", "ops-01"),
            # one token per producer system; the webhook checks it against the producer it signs for
            ("producer", "sales"), ("producer", "dms"), ("producer", "erp"), ("producer", "crm"),
        )
    )
    webhooks = ",".join(f"{producer}={secrets.token_urlsafe(32)}" for producer in ("sales", "dms", "erp", "crm"))
    path.write_text(
        "# Generated by `aftersales infra up` for this machine only. Never commit it.\n"
        f"AFTERSALES_API_TOKENS={tokens}\n"
        f"AFTERSALES_WEBHOOK_SECRETS={webhooks}\n"
        f"AFTERSALES_SMS_API_KEY={secrets.token_urlsafe(24)}\n"
    )
    path.chmod(0o600)
    _ensure_console_keys(path)
    _ensure_kafka_security(path, kafka_formatted)
    _ensure_database_roles(path)
    return path


def token_for(role: str, settings: Settings | None = None, subject: str | None = None) -> str:
    settings = settings or load_settings()
    for token, (token_role, token_subject) in settings.parsed_api_tokens().items():
        if token_role == role and (subject is None or token_subject == subject):
            return token
    raise InfraError(f"no API token for role {role!r}; run `aftersales infra up` or set AFTERSALES_API_TOKENS")


# ---------------------------------------------------------------------------------------
# Kafka


class Kafka:
    """One KRaft node. The broker listens on the host and port of the settings' bootstrap,
    the controller on `controller_port`; its data, properties, pid file and log live under
    `paths`. The broker jars are resolved once into `libs` (by default `paths.kafka/libs`),
    so a second, private node can share the cache of the first."""

    DEFAULT_BROKER = "127.0.0.1:9092"
    DEFAULT_CONTROLLER = "127.0.0.1:9093"

    def __init__(self, settings: Settings, paths: Paths, *, controller_port: int | None = None,
                 libs: Path | None = None) -> None:
        self.settings = settings
        self.paths = paths
        self.host, self.port = _host_port(settings.kafka_bootstrap)
        self.controller_port = controller_port or settings.kafka_controller_port
        self.libs = libs or paths.kafka / "libs"
        self.data = paths.kafka / "data"
        self.properties = paths.kafka / "server.properties"
        self.pid_file = paths.run / "kafka.pid"
        self.log = paths.logs / "kafka.log"
        # SASL_SSL (deploy/kafka/server.properties) unless the settings still say PLAINTEXT: a
        # machine whose broker was formatted before (deploy/kafka/server.plaintext.properties).
        self.secure = settings.kafka_security_protocol == "SASL_SSL"
        self.tls = settings.kafka_ssl_cafile.parent if settings.kafka_ssl_cafile else paths.kafka / "tls"

    @property
    def template(self) -> Path:
        return DEPLOY / "kafka" / ("server.properties" if self.secure else "server.plaintext.properties")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} (controller 127.0.0.1:{self.controller_port})"

    def render_properties(self, template: str) -> str:
        """The broker's server.properties: the template with this node's data folder and, when
        they are not the defaults, its listener ports."""
        text = template.replace("${LOG_DIRS}", str(self.data))
        if self.secure:
            admin = self.settings.parsed_kafka_credentials().get(ADMIN)
            if not admin:
                raise InfraError("AFTERSALES_KAFKA_SECURITY_PROTOCOL=SASL_SSL but AFTERSALES_KAFKA_CREDENTIALS has no "
                                 "admin entry (`aftersales infra up` writes them to .local/secrets.env)")
            text = text.replace("${TLS_DIR}", str(self.tls)).replace("${ADMIN_PASSWORD}", admin)
        broker, controller = f"{self.host}:{self.port}", f"127.0.0.1:{self.controller_port}"
        if broker != self.DEFAULT_BROKER:
            text = text.replace(self.DEFAULT_BROKER, broker)
        if controller != self.DEFAULT_CONTROLLER:
            text = text.replace(self.DEFAULT_CONTROLLER, controller)
        return text

    def running_pid(self) -> int | None:
        return _read_pid(self.pid_file)

    def answers(self) -> bool:
        if not _port_open(self.host, self.port):
            return False
        return asyncio.run(self._metadata_ok())

    async def _metadata_ok(self) -> bool:
        admin = make_admin(self.settings)
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.list_topics(), 5)
            return True
        except Exception:
            return False
        finally:
            try:
                await admin.close()
            except Exception:
                pass

    def ensure_java(self) -> None:
        missing = [p for b, p in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")) if not shutil.which(b)]
        if missing:
            console.print(f"installing {', '.join(missing)}")
            apt_install(missing)

    def ensure_jars(self) -> None:
        pom = DEPLOY / "kafka" / "pom.xml"
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
        marker = self.libs / f".resolved-{digest}"
        if marker.exists():
            return
        console.print("resolving the Kafka broker jars from Maven Central (once)")
        if self.libs.exists():
            shutil.rmtree(self.libs)
        self.libs.mkdir(parents=True)
        _run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime"],
        )
        marker.touch()

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return ["java", f"-Xms{heap}", f"-Xmx{heap}", f"-Dlog4j2.configurationFile={DEPLOY / 'kafka' / 'log4j2.yaml'}",
                "-cp", f"{self.libs}/*", main, *args]

    def ensure_formatted(self) -> None:
        self.properties.parent.mkdir(parents=True, exist_ok=True)
        self.properties.touch(mode=0o600)
        self.properties.chmod(0o600)  # it holds the admin's password
        self.properties.write_text(self.render_properties(self.template.read_text()))
        if self.secure:
            ensure_tls(self.tls, (*LOCAL_HOSTS, self.host))
        if (self.data / "meta.properties").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        cluster_id = _run(self._java("kafka.tools.StorageTool", "random-uuid"), quiet=True).stdout.strip().splitlines()[-1]
        users: list[str] = []
        if self.secure:  # a SCRAM user per principal, in the cluster's first metadata
            credentials = self.settings.parsed_kafka_credentials()
            missing = [p for p in PRINCIPALS if p not in credentials]
            if missing:
                raise InfraError(f"AFTERSALES_KAFKA_CREDENTIALS lacks {', '.join(missing)}")
            for principal, password in credentials.items():
                users += ["--add-scram", f"SCRAM-SHA-512=[name={principal},password={password}]"]
        console.print(f"[dim]$ kafka.tools.StorageTool format -t {cluster_id} -c {self.properties}"
                      f"{f' (+{len(users) // 2} SCRAM users)' if users else ''}[/dim]")
        _run(self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.properties), *users),
             quiet=True)

    def up(self) -> str:
        if self.running_pid() is not None:
            self.wait_ready()
            return "running"
        if self.answers():
            return "external"
        self.ensure_java()
        self.ensure_jars()
        self.ensure_formatted()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties), heap=KAFKA_HEAP) + [],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        self.wait_ready(process)
        return "started"

    def wait_ready(self, process: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise InfraError(f"Kafka exited with {process.returncode}; last log lines:\n{_tail(self.log)}")
            if self.answers():
                return
            time.sleep(0.5)
        hint = ("\nSASL_SSL: if the log shows failed authentications, the broker's SCRAM users were made with other "
                "credentials than AFTERSALES_KAFKA_CREDENTIALS (a new secrets file?): `aftersales infra down`, remove "
                f"{self.data} and start again" if self.secure else "")
        raise InfraError(f"Kafka did not answer on {self.host}:{self.port} within {timeout:.0f}s:\n{_tail(self.log)}{hint}")

    def down(self) -> bool:
        return _stop_pid(self.pid_file, "Kafka", timeout=45)

    def kill(self) -> None:
        """SIGKILL the broker (fault tests)."""
        pid = self.running_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# Postgres


class Postgres:
    """A Debian Postgres cluster (`pg_createcluster <version> <cluster>`) serving the settings'
    database URL. `infra up` uses the cluster named `main`; a private instance (the fault suite's)
    names its own cluster and port, and is created with `start.conf` manual so the machine
    never starts it at boot."""

    HBA_MARK = "# aftersales: local connections of the default URL"

    def __init__(self, settings: Settings, paths: Paths, *, cluster: str = "main") -> None:
        self.settings = settings
        self.paths = paths
        url = urlsplit(settings.database_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 5432
        self.cluster = cluster
        self.state_file = paths.run / "postgres.json"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def answers(self) -> bool:
        return asyncio.run(self._answers())

    async def _answers(self) -> bool:
        try:
            conn = await asyncpg.connect(with_database(self.settings.database_url, "postgres"), timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    def _clusters(self) -> list[dict[str, str]]:
        if not shutil.which("pg_lsclusters"):
            return []
        out = _run(["pg_lsclusters", "--no-header"], quiet=True, check=False).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4:
                rows.append({"version": parts[0], "name": parts[1], "port": parts[2], "status": parts[3]})
        return rows

    def _installed_version(self) -> str | None:
        versions = sorted(
            (p.name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "postgres").exists()),
            key=lambda v: int(v) if v.isdigit() else 0,
        )
        return versions[-1] if versions else None

    def up(self) -> str:
        if self.answers():
            if self.state_file.exists():
                # ours: bring its configuration up to date (a newer checkout may want more of it)
                started = json.loads(self.state_file.read_text())
                if self._configure(started["version"], started["name"]):
                    console.print("postgres configuration changed; restarting it")
                    _run(_privileged(["pg_ctlcluster", started["version"], started["name"], "restart"]))
                    self._wait(started)
            self._create_database()
            return "running" if self.state_file.exists() else "external"
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise InfraError(f"Postgres at {self.address} does not answer and is not local; "
                             "start it or fix AFTERSALES_DATABASE_URL")
        if self._installed_version() is None or not shutil.which("pg_ctlcluster"):
            console.print("installing Debian's postgresql")
            apt_install(["postgresql"])
        version = self._installed_version()
        assert version is not None
        cluster = self._find_cluster(version)
        if cluster is None:
            extra = [] if self.cluster == "main" else ["--start-conf", "manual"]
            _run(_privileged(["pg_createcluster", version, self.cluster, "--port", str(self.port), *extra]))
            cluster = {"version": version, "name": self.cluster, "port": str(self.port), "status": "down"}
        self._configure(cluster["version"], cluster["name"])
        _run(_privileged(["pg_ctlcluster", cluster["version"], cluster["name"], "restart"]))
        self.state_file.write_text(json.dumps({"version": cluster["version"], "name": cluster["name"]}))
        self._wait(cluster)
        self._create_database()
        return "started"

    def _wait(self, cluster: dict[str, str]) -> None:
        deadline = time.monotonic() + 60
        while not self.answers():
            if time.monotonic() > deadline:
                raise InfraError(f"Postgres {cluster['version']}/{cluster['name']} did not answer on {self.address}")
            time.sleep(0.5)

    def _find_cluster(self, version: str) -> dict[str, str] | None:
        """This instance's cluster: the one of its name; for `main`, else the one on its port
        (a machine whose default cluster has another name). Never another instance's cluster."""
        clusters = [c for c in self._clusters() if c["version"] == version]
        named = next((c for c in clusters if c["name"] == self.cluster), None)
        if named is not None or self.cluster != "main":
            return named
        return next((c for c in clusters if c["port"] == str(self.port)), None)

    def _configure(self, version: str, name: str) -> bool:
        """Allow the password-less local connection of the default URL, listen on its port,
        and leave room for every service's pool with two replicas each. True when the server
        settings changed (a restart applies them)."""
        conf_dir = Path(f"/etc/postgresql/{version}/{name}")
        user = urlsplit(self.settings.database_url).username or "postgres"
        hba = conf_dir / "pg_hba.conf"
        text = hba.read_text() if os.access(hba, os.R_OK) else _run(_privileged(["cat", str(hba)]), quiet=True).stdout
        if self.HBA_MARK not in text:
            lines = (
                f"{self.HBA_MARK}\nhost all {user} 127.0.0.1/32 trust\nhost all {user} ::1/128 trust\n"
            )
            self._write_root_file(hba, lines + text)
        dropin = conf_dir / "conf.d" / "aftersales.conf"
        wanted = (
            "# aftersales: local development server\n"
            f"port = {self.port}\nlisten_addresses = 'localhost'\nmax_connections = 400\n"
            "shared_buffers = 256MB\nwal_compression = on\nmax_wal_size = 2GB\n"
            # statements per event in `aftersales bench` come from pg_stat_statements
            "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = top\n"
        )
        current = (dropin.read_text() if os.access(dropin, os.R_OK)
                   else _run(_privileged(["cat", str(dropin)]), quiet=True, check=False).stdout)
        if current == wanted:
            return False
        self._write_root_file(dropin, wanted)
        return True

    def _write_root_file(self, path: Path, content: str) -> None:
        if os.access(path.parent, os.W_OK):
            path.write_text(content)
            return
        _run(_privileged(["tee", str(path)]), input=content, quiet=True)

    def _create_database(self) -> None:
        asyncio.run(ensure_database(self.settings))
        asyncio.run(ensure_database_roles(self.settings))

    def down(self) -> bool:
        if not self.state_file.exists():
            return False
        state = json.loads(self.state_file.read_text())
        _run(_privileged(["pg_ctlcluster", state["version"], state["name"], "stop"]), check=False)
        self.state_file.unlink(missing_ok=True)
        return True

    def stop_for_fault_test(self) -> None:
        state = json.loads(self.state_file.read_text())
        _run(_privileged(["pg_ctlcluster", state["version"], state["name"], "stop", "-m", "immediate"]), check=False)

    def start_after_fault_test(self) -> None:
        state = json.loads(self.state_file.read_text())
        _run(_privileged(["pg_ctlcluster", state["version"], state["name"], "start"]))


async def ensure_database_roles(settings: Settings) -> dict[str, int]:
    """Each role of AFTERSALES_DATABASE_ROLE_PASSWORDS exists with its password, and each service's
    schema in the configured database is its role's, everything in it too (idempotent; existing
    connections are untouched). Returns schema -> objects handed over."""
    if not role_passwords(settings):
        return {}
    conn = await connect(settings)
    try:
        created = await ensure_roles(conn, settings)
        changed = await ensure_schemas(conn, settings)
    finally:
        await conn.close()
    handed = sum(changed.values())
    console.print(f"postgres  roles     {len(created)} created, {len(role_passwords(settings))} in all; "
                  f"{len(changed)} schemas owned by their service's role ({handed} objects handed over now)")
    return changed


# ---------------------------------------------------------------------------------------
# Peers (SMTP + SMS gateway sink)


class Peers:
    def __init__(self, settings: Settings, paths: Paths) -> None:
        self.settings = settings
        self.paths = paths
        self.pid_file = paths.run / "peers.pid"
        self.log = paths.logs / "peers.log"

    @property
    def address(self) -> str:
        return f"smtp 127.0.0.1:{PEERS_SMTP_PORT}, sms gateway + web http://127.0.0.1:{PEERS_HTTP_PORT}/"

    def answers(self) -> bool:
        if not _port_open("127.0.0.1", PEERS_SMTP_PORT):
            return False
        try:
            return httpx.get(f"http://127.0.0.1:{PEERS_HTTP_PORT}/v1/sms", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def up(self) -> str:
        if self.answers():
            return "running" if _read_pid(self.pid_file) else "external"
        if importlib.util.find_spec("tools") is None:
            return "absent"  # a tool, not the product: pip install '.[tools]' in a checkout
        with self.log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "aftersales", "peers", "--dir", str(self.paths.peers),
                 "--smtp-port", str(PEERS_SMTP_PORT), "--http-port", str(PEERS_HTTP_PORT)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.paths.home,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + 30
        while not self.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise InfraError(f"the message peers did not start:\n{_tail(self.log)}")
            time.sleep(0.2)
        return "started"

    def down(self) -> bool:
        return _stop_pid(self.pid_file, "peers", timeout=10)


# ---------------------------------------------------------------------------------------
# The services, run in the background (`serve all` as its own process group: the demo)

SERVICES_PID = "services.pid"


def services_running(settings: Settings) -> bool:
    for name in PROCESSES:
        try:
            if httpx.get(f"http://127.0.0.1:{settings.port_for(name)}/health", timeout=1).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


def any_service_answers(settings: Settings) -> bool:
    for name in PROCESSES:
        try:
            httpx.get(f"http://127.0.0.1:{settings.port_for(name)}/health", timeout=0.5)
            return True
        except httpx.HTTPError:
            continue
    return False


def run_file(settings: Settings, name: str) -> Path:
    """A run file (pid, clock) of this stack; a namespaced stack (topic prefix) has its own."""
    scope = settings.topic_prefix.strip(".")
    return project_home() / ".local" / "run" / (f"{scope}-{name}" if scope else name)


def start_services(settings: Settings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    home = project_home()
    (home / ".local" / "logs").mkdir(parents=True, exist_ok=True)
    log = (home / ".local" / "logs" / "services.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "aftersales", "serve", "all"], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=home,
    )
    pid_file = run_file(settings, SERVICES_PID)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(process.pid))
    return process


def stop_services(settings: Settings | None = None) -> bool:
    """Stop the services started in the background (the demo does): SIGTERM to `serve all`, which
    stops each gracefully."""
    pid_file = run_file(settings or load_settings(), SERVICES_PID)
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    pid_file.unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------------------------------
# Prometheus


def ensure_prometheus() -> str:
    """Debian's `prometheus` package (prometheus and promtool) and `prometheus-alertmanager`
    (the server of that name and amtool), installed when missing: the tests check
    deploy/prometheus with promtool, deploy/alertmanager's routes with amtool, run a real
    Alertmanager, and scrape running services. Nothing
    is started here; deploy/prometheus/prometheus.local.yml says how to run it for `serve all`."""
    missing = [package for package, tools in (("prometheus", ("prometheus", "promtool")),
                                              ("prometheus-alertmanager", ("prometheus-alertmanager", "amtool")))
               if not all(shutil.which(tool) for tool in tools)]
    if not missing:
        return "present"
    console.print(f"installing Debian's {', '.join(missing)}")
    apt_install(missing)
    return "installed"


def ensure_browser() -> str:
    """Debian's `chromium` and a CJK font (`fonts-wqy-microhei`), installed when missing: the
    console's tests drive a real headless Chromium, and its pages are Chinese."""
    missing = [package for package, present in (
        ("chromium", shutil.which("chromium") is not None),
        ("fonts-wqy-microhei", Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc").exists()),
    ) if not present]
    if not missing:
        return "present"
    console.print(f"installing {', '.join(missing)}")
    apt_install(missing)
    return "installed"


# Helm renders deploy/helm/aftersales in tests/integration/test_deploy_helm.py. Helm is a Go
# program: built from the Go module proxy with the machine's Go into .local/bin (about 3.5
# minutes on 2 cores the first time; cached after), skipped when present.
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"


def helm_path() -> Path:
    return _paths().local / "bin" / "helm"


def ensure_helm() -> str:
    target = helm_path()
    if target.exists():
        return "present"
    go = shutil.which("go")
    if go is None:
        console.print("[yellow]helm not installed: Go is missing (the chart's test will say so)[/yellow]")
        return "missing"
    target.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"building helm {HELM_VERSION} with Go into {target.parent} (a few minutes, once)")
    env = {**os.environ, "GOBIN": str(target.parent), "GOFLAGS": "-mod=mod"}
    try:
        _run([go, "install", f"{HELM_MODULE}@{HELM_VERSION}"], env=env, timeout=1800)
    except (InfraError, subprocess.TimeoutExpired) as exc:  # the rest of the stack does not need it
        console.print(f"[yellow]helm not installed: {str(exc)[-500:]}[/yellow]")
        return "failed"
    return "installed"


# ---------------------------------------------------------------------------------------
# commands


def up(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or load_settings()
    paths = _paths()
    ensure_secrets()
    settings = load_settings()  # now with the generated secrets
    results = {}
    with console.status("Postgres"):
        results["postgres"] = Postgres(settings, paths).up()
    console.print(f"postgres  {results['postgres']:<9} {Postgres(settings, paths).address}")
    with console.status("Kafka"):
        results["kafka"] = Kafka(settings, paths).up()
    transport = ("SASL_SSL, SCRAM-SHA-512, a principal per process" if settings.kafka_security_protocol == "SASL_SSL"
                 else f"{settings.kafka_security_protocol} (development broker formatted before SASL_SSL)")
    console.print(f"kafka     {results['kafka']:<9} {Kafka(settings, paths).address}, {transport}")
    created = asyncio.run(ensure_topics(settings))
    results["topics"] = f"{len(created)} created" if created else "present"
    console.print(f"topics    {results['topics']:<9} {settings.topic_partitions} partitions, retention "
                  f"{retention_summary(settings)} (AFTERSALES_TOPIC_RETENTION_DAYS)"
                  f"{', ACLs per principal (shared/kafka/acls.py)' if settings.kafka_security_protocol == 'SASL_SSL' else ''}")
    results["peers"] = Peers(settings, paths).up()
    console.print(f"peers     {results['peers']:<9} {Peers(settings, paths).address}")
    results["prometheus"] = ensure_prometheus()
    console.print(f"prometheus {results['prometheus']:<8} {shutil.which('prometheus')} (deploy/prometheus/prometheus.local.yml)")
    results["browser"] = ensure_browser()
    console.print(f"chromium  {results['browser']:<9} {shutil.which('chromium')} (the console's browser tests)")
    results["helm"] = ensure_helm()
    console.print(f"helm      {results['helm']:<9} {helm_path()} (deploy/helm's test)")
    return results


def down(settings: Settings | None = None) -> dict[str, bool]:
    settings = settings or load_settings()
    paths = _paths()
    stopped = {
        "services": stop_services(settings),
        "peers": Peers(settings, paths).down(),
        "kafka": Kafka(settings, paths).down(),
        "postgres": Postgres(settings, paths).down(),
    }
    for name, was in stopped.items():
        console.print(f"{name:<9} {'stopped' if was else 'was not started by infra up'}")
    return stopped


def status(settings: Settings | None = None) -> list[tuple[str, str, str, str]]:
    settings = settings or load_settings()
    paths = _paths()
    kafka, postgres, peers = Kafka(settings, paths), Postgres(settings, paths), Peers(settings, paths)
    rows = []
    kpid = kafka.running_pid()
    rows.append(("kafka", "up" if kafka.answers() else "down", kafka.address,
                 f"pid {kpid}, log {kafka.log}" if kpid else "not started by infra up"))
    rows.append(("postgres", "up" if postgres.answers() else "down", postgres.address,
                 "started by infra up" if postgres.state_file.exists() else "external or not started"))
    ppid = _read_pid(peers.pid_file)
    rows.append(("peers", "up" if peers.answers() else "down", peers.address,
                 f"pid {ppid}, log {peers.log}" if ppid else "not started by infra up"))
    return rows

