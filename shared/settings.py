"""Platform settings, read from `AFTERSALES_*` environment variables.

Secrets (API tokens, webhook secrets, SMTP/SMS credentials) come from the environment or
from `.local/secrets.env`, which `aftersales infra up` generates on a developer machine;
never from the repository.
"""

from __future__ import annotations

import os
import ssl
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events.catalog import CANONICAL_TOPICS, DEADLETTER, UPSTREAM_TOPICS

SERVICES: tuple[str, ...] = ("intake", "followup", "complaints", "quality", "notifier")

# The console (services/console) is a sixth process for people, not one of the five event
# services above: it has no topic of its own and the design's port list does not name it.
CONSOLE = "console"
CONSOLE_PORT = 8000
PROCESSES: tuple[str, ...] = (*SERVICES, CONSOLE)

DEFAULT_PORTS: dict[str, int] = {
    "intake": 8001,
    "followup": 8002,
    "complaints": 8003,
    "quality": 8004,
    "notifier": 8005,
}

# How long Kafka keeps each contract topic's records, in days (None: for ever). The raw upstream
# inputs and the dead letters (the refused record whole) hold personal data as it arrived: 30 days,
# enough to replay or redrive what went wrong. The canonical aftersales.* topics are the audit
# record replays rebuild the services from: kept for ever; their personal fields are to be
# crypto-shredded on erasure (a customer's key destroyed), not expired.
DEFAULT_TOPIC_RETENTION_DAYS: dict[str, int | None] = {
    **dict.fromkeys(UPSTREAM_TOPICS, 30), DEADLETTER: 30, **dict.fromkeys(CANONICAL_TOPICS, None)}
# What AFTERSALES_TOPIC_RETENTION_DAYS may name besides the topics themselves.
RETENTION_ALIASES: dict[str, tuple[str, ...]] = {"upstream.*": UPSTREAM_TOPICS, "deadletter": (DEADLETTER,)}
UNLIMITED = ("forever", "-1")
MAX_RETENTION_DAYS = 36_500  # retention.ms is a 64-bit count; beyond a century, say `forever`


def parse_topic_retention(raw: str) -> dict[str, int | None]:
    """Every contract topic's retention in days (None: for ever) from "topic=days,…" over the
    defaults. A name is a logical topic, `upstream.*` or `deadletter`; a topic's own entry wins over
    `upstream.*`. Raises ValueError naming the first bad entry."""
    named: dict[str, int | None] = {}
    wildcard: dict[str, int | None] = {}
    for entry in _pairs(raw):
        name, equals, value = (part.strip() for part in entry.partition("="))
        if name not in DEFAULT_TOPIC_RETENTION_DAYS and name not in RETENTION_ALIASES:
            raise ValueError(f"{entry!r}: {name!r} is no contract topic; name one of "
                             f"{', '.join([*RETENTION_ALIASES, *DEFAULT_TOPIC_RETENTION_DAYS])}")
        if not equals or not value:
            raise ValueError(f"{entry!r}: give the days after '=', e.g. {name}=30 (or {name}=forever)")
        if value.lower() in UNLIMITED:
            days = None
        elif not value.isdigit() or not 0 < int(value) <= MAX_RETENTION_DAYS:
            raise ValueError(f"{entry!r}: the days are a whole number from 1 to {MAX_RETENTION_DAYS}, "
                             "or 'forever' (also -1) for no limit")
        else:
            days = int(value)
        topics = RETENTION_ALIASES.get(name, (name,))
        target = wildcard if name == "upstream.*" else named
        if any(t in target for t in topics):
            raise ValueError(f"{entry!r}: {name} is given twice")
        target.update(dict.fromkeys(topics, days))
    return {**DEFAULT_TOPIC_RETENTION_DAYS, **wildcard, **named}



def project_home() -> Path:
    """Where `.local/` (logs, data, generated secrets) lives: AFTERSALES_HOME or the cwd."""
    return Path(os.environ.get("AFTERSALES_HOME") or Path.cwd()).resolve()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_", extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    # The local KRaft node's controller (`aftersales infra up`; a second local node needs another).
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # One SCRAM principal per service, per producer and `admin` (tools, topic and ACL set-up):
    # "principal=password" pairs, written to .local/secrets.env by `aftersales infra up`. A process
    # uses the entry of kafka_principal (`aftersales serve <service>` sets it to the service);
    # kafka_sasl_username/password, when set, name the credentials outright (compose, helm).
    kafka_credentials: SecretStr = SecretStr("")
    kafka_principal: str = "admin"
    # Development only: PLAINTEXT (or SASL without TLS) to Kafka. Honoured only while every
    # bootstrap server is loopback; refused at start-up otherwise (see refuse_plaintext_kafka).
    dev_plaintext_kafka: bool = False
    topic_prefix: str = ""
    topic_partitions: int = Field(12, ge=1)
    topic_replication_factor: int = Field(1, ge=1)
    # Kafka retention per contract topic, "topic=days,…" over the logical names (upstream.dms=30,
    # deadletter=14; `upstream.*` for the four upstream topics), whole days or `forever` (or -1).
    # Unnamed topics keep DEFAULT_TOPIC_RETENTION_DAYS: upstream.* and the dead letters 30 days,
    # the canonical aftersales.* for ever. `aftersales infra up` / `infra topics` create the topics
    # with it and alter existing ones to it (shared.kafka.clients.ensure_topics).
    topic_retention_days: str = ""

    # Postgres (one database, one schema per service). TLS: `?sslmode=require` in the URL,
    # or database_ssl_rootcert for verify-full against a private CA.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/aftersales"
    database_ssl_rootcert: Path | None = None
    # A Postgres role per service (shared/db_roles.py): "service=password" pairs (and "ops=" for
    # the read-only ops role). A service connects to database_url's server and database as
    # <database_role_prefix><service> with its password, never with database_url's own role,
    # which is the admin's (infra up, migrate, replay, tests). `aftersales infra up` writes them.
    database_role_passwords: SecretStr = SecretStr("")
    database_role_prefix: str = Field("aftersales_", pattern=r"^[a-z_][a-z0-9_]{0,40}$")
    # Development only: a service without its own role connects with database_url's role, even
    # a superuser. Honoured only while the database host and the HTTP host are loopback.
    dev_single_database_role: bool = False
    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(14, ge=1)

    # HTTP
    http_host: str = "127.0.0.1"
    intake_port: int = DEFAULT_PORTS["intake"]
    followup_port: int = DEFAULT_PORTS["followup"]
    complaints_port: int = DEFAULT_PORTS["complaints"]
    quality_port: int = DEFAULT_PORTS["quality"]
    notifier_port: int = DEFAULT_PORTS["notifier"]
    console_port: int = CONSOLE_PORT
    http_max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)

    # Consumer / outbox / timers
    consumer_max_records: int = Field(2000, ge=1)
    consumer_poll_timeout_ms: int = Field(100, ge=1)
    outbox_batch: int = Field(1000, ge=1)
    outbox_idle_poll_seconds: float = Field(0.5, gt=0)
    timer_tick_seconds: float = Field(1.0, gt=0)
    timer_batch: int = Field(200, ge=1)
    timer_retention_days: float = Field(30, gt=0)
    kpi_refresh_seconds: float = Field(15.0, gt=0)
    retry_max_backoff_seconds: float = Field(30.0, gt=0)

    # Time: a running stack may be started with a fixed offset (demos); rules read the clock.
    clock_offset_seconds: float = 0.0
    # ...or an offset another process moves, read from this JSON file (`aftersales demo`).
    clock_file: Path | None = None

    # Logging
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Tracing (shared/tracing.py): the OTLP/HTTP collector spans are exported to, as its base URL
    # (http://jaeger:4318; /v1/traces is appended). Empty: the standard OTEL_EXPORTER_OTLP_ENDPOINT,
    # and without either nothing is exported (the W3C traceparent is carried all the same).
    otlp_endpoint: str = ""

    # Security: bearer tokens are "token=role:subject" pairs separated by commas;
    # webhook secrets are "producer=secret" pairs.
    api_tokens: SecretStr = SecretStr("")
    webhook_secrets: SecretStr = SecretStr("")
    # People: the console signs short-lived EdDSA tokens for the person signed in; every service
    # accepts them, verified with this public key (Ed25519: PEM, or the 32 raw bytes in base64).
    console_public_key: str = ""
    console_signing_key: SecretStr = SecretStr("")  # the console's private half; nobody else's business
    # Where the console reaches the services ("followup=http://followup:8002,…"); default
    # http://127.0.0.1:<the service's port>.
    service_urls: str = ""

    # Bad bearer tokens: after this many from one client address within the window, that address
    # gets 429 with Retry-After until the oldest leaves the window (shared/ratelimit.py).
    auth_failures_per_client: int = Field(20, ge=1)
    auth_failure_window_seconds: float = Field(300, gt=0)
    # X-Forwarded-For names the client only behind a proxy that sets it (compose's TLS proxy).
    trust_forwarded_for: bool = False

    # Development only: start with short or placeholder secrets (test tokens such as
    # "agent-token"). Honoured only while the HTTP host and every Kafka bootstrap are loopback.
    dev_weak_secrets: bool = False

    # Fault injection for the crash tests; never set in production.
    fault: str | None = None

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_fragment(cls, value: str) -> str:
        if value and not all(ch.isalnum() or ch in "._-" for ch in value):
            raise ValueError("topic_prefix may only hold letters, digits, '.', '_' and '-'")
        return value

    @field_validator("topic_retention_days")
    @classmethod
    def _retention_parses(cls, value: str) -> str:
        parse_topic_retention(value)  # raises, naming the bad entry
        return value

    def topic_retention(self) -> dict[str, int | None]:
        """Logical topic -> retention in days (None: for ever)."""
        return parse_topic_retention(self.topic_retention_days)

    def topic_retention_ms(self, logical: str) -> int:
        """A contract topic's retention.ms (-1: for ever)."""
        days = self.topic_retention()[logical]
        return -1 if days is None else days * 86_400_000

    def port_for(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic (tests isolate with a prefix)."""
        return f"{self.topic_prefix}{name}"

    @cached_property
    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)
        if self.kafka_ssl_certfile:
            context.load_cert_chain(str(self.kafka_ssl_certfile), str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None)
        return context

    def kafka_client_options(self) -> dict[str, object]:
        """Connection options shared by every aiokafka client (producer, consumer, admin)."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_ssl_context is not None:
            options["ssl_context"] = self.kafka_ssl_context
        if self.kafka_security_protocol.startswith("SASL"):
            username, password = self.kafka_login()
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = username
            options["sasl_plain_password"] = password
        return options

    def kafka_login(self) -> tuple[str, str | None]:
        """The SASL username and password of this process: the explicit pair, else the entry of
        kafka_principal in kafka_credentials."""
        if self.kafka_sasl_username:
            return self.kafka_sasl_username, (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None)
        return self.kafka_principal, self.parsed_kafka_credentials().get(self.kafka_principal)

    def parsed_kafka_credentials(self) -> dict[str, str]:
        """principal -> password."""
        credentials: dict[str, str] = {}
        for pair in _pairs(self.kafka_credentials.get_secret_value()):
            principal, _, password = pair.partition("=")
            if principal.strip() and password.strip():
                credentials[principal.strip()] = password.strip()
        return credentials

    def parsed_api_tokens(self) -> dict[str, tuple[str, str]]:
        """token -> (role, subject)."""
        tokens: dict[str, tuple[str, str]] = {}
        for pair in _pairs(self.api_tokens.get_secret_value()):
            token, _, who = pair.partition("=")
            role, _, subject = who.partition(":")
            if token and role:
                tokens[token.strip()] = (role.strip(), (subject or role).strip())
        return tokens

    def service_url(self, service: str) -> str:
        for pair in _pairs(self.service_urls):
            name, _, url = pair.partition("=")
            if name.strip() == service and url.strip():
                return url.strip().rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{self.port_for(service)}"

    def parsed_webhook_secrets(self) -> dict[str, str]:
        """producer -> secret."""
        secrets: dict[str, str] = {}
        for pair in _pairs(self.webhook_secrets.get_secret_value()):
            producer, _, secret = pair.partition("=")
            if producer and secret:
                secrets[producer.strip()] = secret.strip()
        return secrets


MIN_SECRET_LENGTH = 32
# what example files and tutorials put where a secret belongs
PLACEHOLDER_SECRETS = ("replace-me", "replace-with", "changeme", "change-me", "aftersales", "password", "secret",
                       "postgres", "admin", "example", "xxxxxxxx", "12345678")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def weak_secret(value: str) -> str | None:
    """Why this secret may not be used in a deployment, or None."""
    lowered = value.strip().lower()
    placeholder = next((p for p in PLACEHOLDER_SECRETS if p in lowered), None)
    if placeholder is not None:
        return f"it contains the placeholder or default {placeholder!r}"
    if len(value.strip()) < MIN_SECRET_LENGTH:
        return f"it has {len(value.strip())} characters; a secret has at least {MIN_SECRET_LENGTH} (random)"
    return None


def is_loopback(settings: Settings) -> bool:
    hosts = [b.strip().rsplit(":", 1)[0] for b in settings.kafka_bootstrap.split(",") if b.strip()]
    return settings.http_host in _LOOPBACK and all(h in _LOOPBACK for h in hosts)


def secret_problems(settings: Settings, extra: dict[str, str | None] | None = None) -> list[str]:
    """Every secret the process would run with that is a default, a placeholder or short; values
    are never quoted. `extra`: a service's own secrets (the notifier's SMS key, SMTP password)."""
    named: list[tuple[str, str]] = []
    for token, (role, subject) in settings.parsed_api_tokens().items():
        named.append((f"AFTERSALES_API_TOKENS (the token of {role}:{subject})", token))
    for producer, secret in settings.parsed_webhook_secrets().items():
        named.append((f"AFTERSALES_WEBHOOK_SECRETS (producer {producer})", secret))
    if settings.kafka_sasl_password is not None:
        named.append(("AFTERSALES_KAFKA_SASL_PASSWORD", settings.kafka_sasl_password.get_secret_value()))
    for principal, kafka_password in settings.parsed_kafka_credentials().items():
        named.append((f"AFTERSALES_KAFKA_CREDENTIALS (principal {principal})", kafka_password))
    from urllib.parse import urlsplit

    password = urlsplit(settings.database_url).password
    if password is not None:
        named.append(("the password in AFTERSALES_DATABASE_URL", password))
    for pair in _pairs(settings.database_role_passwords.get_secret_value()):
        role, _, role_password = pair.partition("=")
        named.append((f"AFTERSALES_DATABASE_ROLE_PASSWORDS (role {role.strip()})", role_password))
    for name, value in (extra or {}).items():
        if value:
            named.append((name, value))
    return [f"{name}: {why}" for name, value in named if (why := weak_secret(value)) is not None]


class WeakSecrets(RuntimeError):
    """Start-up refused: the message lists each weak secret and what to do."""


def refuse_weak_secrets(settings: Settings, extra: dict[str, str | None] | None = None) -> list[str]:
    """Raise WeakSecrets unless every secret is strong. The development flag lets weak ones pass
    (returned, for a warning) only on loopback, where nobody else can use them."""
    problems = secret_problems(settings, extra)
    if not problems:
        return []
    if settings.dev_weak_secrets and is_loopback(settings):
        return problems
    hint = ("AFTERSALES_DEV_WEAK_SECRETS=true is set, but it only applies while AFTERSALES_HTTP_HOST and "
            "AFTERSALES_KAFKA_BOOTSTRAP are loopback addresses" if settings.dev_weak_secrets else
            "for local development only, AFTERSALES_DEV_WEAK_SECRETS=true lets them pass on loopback")
    raise WeakSecrets(
        "refusing to start with default, placeholder or short secrets:\n  - " + "\n  - ".join(problems)
        + f"\nGenerate each with `python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
          f"(`aftersales infra up` writes such values to .local/secrets.env); {hint}."
    )


def kafka_bootstrap_is_loopback(settings: Settings) -> bool:
    hosts = [b.strip().rsplit(":", 1)[0] for b in settings.kafka_bootstrap.split(",") if b.strip()]
    return bool(hosts) and all(h in _LOOPBACK for h in hosts)


class InsecureKafka(RuntimeError):
    """Start-up refused: Kafka without TLS and SASL outside local development."""


def refuse_plaintext_kafka(settings: Settings) -> str | None:
    """Raise InsecureKafka unless the process reaches Kafka over SASL_SSL. PLAINTEXT (or SSL or
    SASL without the other) passes only while every bootstrap server is loopback and a development
    flag (AFTERSALES_DEV_PLAINTEXT_KAFKA, or the broader AFTERSALES_DEV_WEAK_SECRETS) is set; then
    the returned warning says so."""
    protocol = settings.kafka_security_protocol
    if protocol == "SASL_SSL":
        username, password = settings.kafka_login()
        if not password:
            raise InsecureKafka(
                f"AFTERSALES_KAFKA_SECURITY_PROTOCOL=SASL_SSL but no Kafka password for principal {username!r}: set "
                "AFTERSALES_KAFKA_SASL_USERNAME/PASSWORD, or its entry in AFTERSALES_KAFKA_CREDENTIALS "
                "(`aftersales infra up` writes them to .local/secrets.env)")
        return None
    flag = settings.dev_plaintext_kafka or settings.dev_weak_secrets
    if flag and kafka_bootstrap_is_loopback(settings):
        return f"Kafka over {protocol} (development flag set, loopback bootstrap {settings.kafka_bootstrap})"
    why = ("the bootstrap servers are not all loopback addresses" if flag else
           "for local development on a loopback broker only, AFTERSALES_DEV_PLAINTEXT_KAFKA=true lets it pass")
    raise InsecureKafka(
        f"refusing to reach Kafka over {protocol} at {settings.kafka_bootstrap}: anyone on the network could read "
        "customers' events or write their own. Set AFTERSALES_KAFKA_SECURITY_PROTOCOL=SASL_SSL with "
        f"AFTERSALES_KAFKA_SASL_MECHANISM=SCRAM-SHA-512, the credentials and AFTERSALES_KAFKA_SSL_CAFILE; {why}.")


def _pairs(raw: str) -> list[str]:
    return [part for part in (p.strip() for p in raw.replace("\n", ",").split(",")) if part]


def secrets_file() -> Path:
    return project_home() / ".local" / "secrets.env"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, then `.local/secrets.env` for what the environment lacks."""
    env_file = secrets_file()
    return Settings(_env_file=env_file if env_file.exists() else None, **overrides)
