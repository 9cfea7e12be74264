"""Issue 19, Kafka: a process reaches Kafka over SASL_SSL with its own principal, PLAINTEXT only on
loopback with a development flag; the ACL table is what the services consume and publish; `infra
up` generates credentials and a broker configuration without a PLAINTEXT listener. (The broker
itself refusing and allowing: tests/integration/test_security_kafka.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aftersales.infra import DEPLOY, Kafka, Paths, ensure_secrets
from services import load
from shared.events import ALL_TOPICS, DEADLETTER, SERVICE_TOPIC, UPSTREAM_TOPICS
from shared.kafka.acls import CONSUMES, GROUP, PRINCIPALS, READ, TOPIC, WRITE, Acl, acls, publishes
from shared.settings import (
    PROCESSES,
    SERVICES,
    InsecureKafka,
    Settings,
    load_settings,
    refuse_plaintext_kafka,
    secret_problems,
)

ROOT = Path(__file__).resolve().parents[2]
STRONG = "k3Jx9vQ2mW7pL0sT5yB8nR4cF6hD1gZa"
CREDENTIALS = ",".join(f"{p}={STRONG}{i:02d}" for i, p in enumerate(PRINCIPALS))
SECURE = {"kafka_security_protocol": "SASL_SSL", "kafka_credentials": CREDENTIALS}


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT", "SSL"])
def test_kafka_without_tls_and_sasl_is_refused_without_the_development_flag(protocol: str) -> None:
    with pytest.raises(InsecureKafka, match=f"refusing to reach Kafka over {protocol}.*AFTERSALES_DEV_PLAINTEXT_KAFKA"):
        refuse_plaintext_kafka(_settings(kafka_security_protocol=protocol))


@pytest.mark.parametrize("flag", ["dev_plaintext_kafka", "dev_weak_secrets"])
def test_plaintext_passes_only_on_loopback_with_a_development_flag(flag: str) -> None:
    local = _settings(**{flag: True}, kafka_bootstrap="127.0.0.1:9092,localhost:9094")
    assert "development flag set" in (refuse_plaintext_kafka(local) or "")
    for exposed in ("kafka-1:9092", "127.0.0.1:9092,10.0.0.5:9092", "0.0.0.0:9092"):
        with pytest.raises(InsecureKafka, match="not all loopback"):
            refuse_plaintext_kafka(_settings(**{flag: True}, kafka_bootstrap=exposed))


def test_sasl_ssl_needs_the_principals_password() -> None:
    assert refuse_plaintext_kafka(_settings(**SECURE, kafka_bootstrap="kafka-1:9092", kafka_principal="quality")) is None
    with pytest.raises(InsecureKafka, match="no Kafka password for principal 'quality'"):
        refuse_plaintext_kafka(_settings(kafka_security_protocol="SASL_SSL", kafka_principal="quality",
                                         kafka_credentials="intake=" + STRONG))


def test_each_process_logs_in_as_its_own_principal_unless_named_outright() -> None:
    settings = _settings(**SECURE, kafka_principal="notifier")
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "notifier"
    assert options["sasl_plain_password"] == settings.parsed_kafka_credentials()["notifier"]
    assert options["ssl_context"] is not None
    assert _settings(**SECURE).kafka_login()[0] == "admin", "tools and tests use admin"
    explicit = _settings(**SECURE, kafka_sasl_username="complaints", kafka_sasl_password="p" * 40)
    assert explicit.kafka_login() == ("complaints", "p" * 40)
    assert "sasl_plain_username" not in _settings(dev_plaintext_kafka=True).kafka_client_options()


def test_a_weak_kafka_password_is_a_weak_secret() -> None:
    problems = secret_problems(_settings(kafka_credentials=f"intake=changeme,quality={STRONG}"))
    assert problems == ["AFTERSALES_KAFKA_CREDENTIALS (principal intake): it contains the placeholder or default 'changeme'"]


def test_serve_refuses_plaintext_kafka_on_the_network(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AFTERSALES_HOME": str(tmp_path), "AFTERSALES_API_TOKENS": f"{STRONG}=ops:ops-01",
           "AFTERSALES_WEBHOOK_SECRETS": f"dms={STRONG}", "AFTERSALES_KAFKA_BOOTSTRAP": "kafka-1:9092",
           "AFTERSALES_DEV_PLAINTEXT_KAFKA": "true", "AFTERSALES_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}
    done = subprocess.run([sys.executable, "-m", "aftersales", "serve", "quality"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "quality: refusing to reach Kafka over PLAINTEXT at kafka-1:9092" in done.stderr


def test_serve_logs_in_as_the_service_it_runs(tmp_path: Path) -> None:
    """`aftersales serve quality` looks for quality's password, not admin's (which is there)."""
    env = {"PATH": "/usr/bin:/bin", "AFTERSALES_HOME": str(tmp_path), "AFTERSALES_API_TOKENS": f"{STRONG}=ops:ops-01",
           "AFTERSALES_WEBHOOK_SECRETS": f"dms={STRONG}", "AFTERSALES_KAFKA_BOOTSTRAP": "kafka-1:9092",
           "AFTERSALES_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AFTERSALES_KAFKA_CREDENTIALS": f"admin={STRONG}",
           "AFTERSALES_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}
    done = subprocess.run([sys.executable, "-m", "aftersales", "serve", "quality"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "no Kafka password for principal 'quality'" in done.stderr


def test_the_acls_are_what_each_service_consumes_and_publishes() -> None:
    for process in PROCESSES:
        subscribed = {s.topic for s in load(process).subscriptions}
        assert set(CONSUMES[process]) == subscribed, process
    for service in SERVICES:  # the AsyncAPI documents say the same
        doc = yaml.safe_load((ROOT / "docs" / "api" / f"{service}.asyncapi.yaml").read_text())
        received = {doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
                    for op in doc["operations"].values() if op["action"] == "receive"}
        assert received == set(CONSUMES[service]), service
        sent = {doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
                for op in doc["operations"].values() if op["action"] == "send"}
        assert sent <= set(publishes(service)), service
    rules = acls(_settings(topic_prefix="t1."))
    writers = {topic: {r.principal for r in rules if r.resource == f"t1.{topic}" and r.operation == WRITE}
               for topic in ALL_TOPICS}
    assert writers["aftersales.intake"] == {"intake"}
    assert writers["upstream.sales"] == {"sales", "intake"}, "the producer, and intake's webhook"
    for service, topic in SERVICE_TOPIC.items():
        assert writers[topic] == {service}
    assert writers[DEADLETTER] == set(PROCESSES)
    readers = {r.principal for r in rules if r.operation == READ and r.resource_type == TOPIC}
    assert not readers & {"sales", "dms", "erp", "crm"}, "a producer reads nothing"
    assert {r.principal for r in rules if r.resource in {f"t1.{t}" for t in UPSTREAM_TOPICS}
            and r.operation == READ} == {"intake"}
    assert Acl(GROUP, "t1.followup", "followup", READ) in rules
    assert {r.resource for r in rules if r.resource_type == GROUP} == {f"t1.{p}" for p in PROCESSES}
    assert all(r.principal != "admin" for r in rules), "admin is a super user, not a list of grants"


def test_infra_up_generates_kafka_credentials_for_a_new_broker_only(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AFTERSALES_KAFKA_SECURITY_PROTOCOL", "AFTERSALES_KAFKA_CREDENTIALS", "AFTERSALES_KAFKA_SSL_CAFILE",
                 "AFTERSALES_DEV_PLAINTEXT_KAFKA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AFTERSALES_HOME", str(tmp_path / "fresh"))
    ensure_secrets(kafka_formatted=False)
    fresh = load_settings()
    assert fresh.kafka_security_protocol == "SASL_SSL" and fresh.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert set(fresh.parsed_kafka_credentials()) == set(PRINCIPALS)
    assert fresh.kafka_ssl_cafile == tmp_path / "fresh" / ".local" / "kafka" / "tls" / "ca.pem"
    assert secret_problems(fresh) == []
    monkeypatch.setenv("AFTERSALES_HOME", str(tmp_path / "old"))
    (tmp_path / "old" / ".local").mkdir(parents=True)
    (tmp_path / "old" / ".local" / "secrets.env").write_text("AFTERSALES_SMS_API_KEY=" + STRONG + "\n")
    ensure_secrets(kafka_formatted=True)  # a broker formatted before SASL keeps running as it was
    old = load_settings()
    assert old.kafka_security_protocol == "PLAINTEXT" and old.dev_plaintext_kafka
    assert old.parsed_kafka_credentials() == {}


def test_the_local_broker_has_no_plaintext_listener_and_authorizes(tmp_path: Path) -> None:
    settings = _settings(**SECURE, kafka_bootstrap="127.0.0.1:19192", kafka_ssl_cafile=tmp_path / "tls" / "ca.pem")
    kafka = Kafka(settings, Paths(tmp_path), controller_port=19193)
    assert kafka.template == DEPLOY / "kafka" / "server.properties"
    text = kafka.render_properties(kafka.template.read_text())
    lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["listeners"] == "SASL_SSL://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193"
    assert lines["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert "PLAINTEXT" not in lines["listener.security.protocol.map"].replace("SASL_PLAINTEXT", "")
    assert lines["listener.name.controller.ssl.client.auth"] == "required"
    assert lines["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert lines["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert lines["allow.everyone.if.no.acl.found"] == "false"
    assert lines["ssl.keystore.location"] == str(tmp_path / "tls" / "broker.pem")
    assert f'password="{settings.parsed_kafka_credentials()["admin"]}"' in text and "${" not in text
    legacy = Kafka(_settings(dev_plaintext_kafka=True), Paths(tmp_path))
    assert legacy.template.name == "server.plaintext.properties"


# ---------------------------------------------------------------------------------------
# docker-compose.yml, checked without Docker (helpers of tests/unit/test_deploy_compose.py)


def _compose(values: dict[str, str] | None = None) -> dict[str, object]:
    from tests.unit.test_deploy_compose import compose, env_example

    return compose(env_example() | (values or {}))


def _brokers(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = doc["services"]  # type: ignore[assignment]
    return {n: s for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")}


def test_kafka_in_compose_listens_sasl_ssl_only_and_authorizes() -> None:
    from tests.unit.test_deploy_compose import environment

    brokers = _brokers(_compose())
    assert len(brokers) == 3
    for name, broker in brokers.items():
        env = environment(broker)
        protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        listeners = [item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")]
        assert {protocols[listener] for listener in listeners} == {"SASL_SSL", "SSL"}, name
        assert "PLAINTEXT" not in protocols.values() and "SASL_PLAINTEXT" not in protocols.values(), name
        assert env["KAFKA_ADVERTISED_LISTENERS"].startswith("SASL_SSL://"), name
        assert protocols[env["KAFKA_CONTROLLER_LISTENER_NAMES"]] == "SSL", name
        assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required", "controllers: mutual TLS"
        assert protocols[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "SASL_SSL", name
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_SUPER_USERS"] == "User:admin;User:aftersales-kafka-broker"
        assert {k.removeprefix("KAFKA_PASSWORD_").lower() for k in env if k.startswith("KAFKA_PASSWORD_")} == set(
            PRINCIPALS), "a SCRAM user per principal"
        assert env["KAFKA_SSL_KEYSTORE_TYPE"] == env["KAFKA_SSL_TRUSTSTORE_TYPE"] == "PEM"
        assert "kafka-tls:/etc/kafka/tls:ro" in broker["volumes"]  # type: ignore[operator]
        assert broker["entrypoint"] == ["/bin/bash", "/opt/aftersales/compose-start.sh"]
        assert "ports" not in broker, f"{name}: Kafka is reached inside the compose network only"
        assert "--command-config /tmp/admin.properties" in " ".join(broker["healthcheck"]["test"])  # type: ignore[index]


def test_each_compose_service_logs_in_to_kafka_as_itself_with_its_password_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_deploy_compose import environment

    passwords = {f"KAFKA_PASSWORD_{p.upper()}": f"{p}-{STRONG}" for p in PRINCIPALS}
    doc = _compose(passwords)
    services: dict[str, dict[str, object]] = doc["services"]  # type: ignore[assignment]
    for name in PROCESSES:
        env = environment(services[name])
        assert env["AFTERSALES_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert (env["AFTERSALES_KAFKA_SASL_USERNAME"], env["AFTERSALES_KAFKA_SASL_PASSWORD"]) == (name, f"{name}-{STRONG}")
        others = [p for p in PRINCIPALS if p != name and f"{p}-{STRONG}" in " ".join(env.values())]
        assert not others, f"{name} holds the Kafka passwords of {others}"
        assert env["AFTERSALES_KAFKA_SSL_CAFILE"] == "/etc/aftersales/kafka-ca/ca.pem"
        volumes = [str(v) for v in services[name]["volumes"]]  # type: ignore[attr-defined]
        assert "kafka-ca:/etc/aftersales/kafka-ca:ro" in volumes and not any(v.startswith("kafka-tls:") for v in volumes)
        for key in [k for k in __import__("os").environ if k.startswith("AFTERSALES_")]:
            monkeypatch.delenv(key)
        settings = Settings(_env_file=None, **{k.removeprefix("AFTERSALES_").lower(): v for k, v in env.items()
                                               if k.startswith("AFTERSALES_KAFKA_")})  # type: ignore[arg-type]
        assert refuse_plaintext_kafka(settings) is None and settings.kafka_login() == (name, f"{name}-{STRONG}")
    job = environment(services["topics"])  # creates topics and ACLs as admin
    assert (job["AFTERSALES_KAFKA_SASL_USERNAME"], job["AFTERSALES_KAFKA_SASL_PASSWORD"]) == ("admin", f"admin-{STRONG}")
    tls = services["kafka-tls"]
    command = tls["command"]
    assert command[:2] == ["infra", "kafka-tls"]  # type: ignore[index]
    hosts = {command[i + 1] for i, part in enumerate(command) if part == "--host"}  # type: ignore[arg-type,index]
    assert {f"kafka-{n}" for n in (1, 2, 3)} | {"localhost"} <= hosts, "the advertised names and the healthcheck's"
    from tests.unit.test_deploy_compose import env_example

    example = env_example()
    for principal in PRINCIPALS:  # every password required, none with a fallback
        name = f"KAFKA_PASSWORD_{principal.upper()}"
        with pytest.raises(AssertionError, match=name):
            from tests.unit.test_deploy_compose import compose

            compose({k: v for k, v in example.items() if k != name})


def test_the_compose_start_script_formats_a_scram_user_per_principal_and_writes_no_plaintext(tmp_path: Path) -> None:
    """deploy/kafka/compose-start.sh run for real with a stand-in for the image's tools."""
    from tests.unit.test_deploy_compose import environment

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kafka-storage.sh", "kafka-server-start.sh"):
        (bin_dir / tool).write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/{tool}.args"\n')
        (bin_dir / tool).chmod(0o755)
    passwords = {f"KAFKA_PASSWORD_{p.upper()}": f"{p}-{STRONG}" for p in PRINCIPALS}
    broker = _brokers(_compose(passwords))["kafka-2"]
    env = {"PATH": "/usr/bin:/bin", "BROKER_BIN": str(bin_dir), "BROKER_CONF": str(tmp_path), **environment(broker)}
    done = subprocess.run(["bash", str(DEPLOY / "kafka" / "compose-start.sh")], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    properties = dict(line.split("=", 1) for line in (tmp_path / "server.properties").read_text().splitlines())
    assert properties["listeners"] == "SASL_SSL://:9092,CONTROLLER://:9093"
    assert properties["advertised.listeners"] == "SASL_SSL://kafka-2:9092" and properties["node.id"] == "2"
    assert properties["listener.name.controller.ssl.client.auth"] == "required"
    assert properties["ssl.principal.mapping.rules"] == "RULE:^CN=([^,]+)$/$1/,DEFAULT"
    assert properties["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"].endswith(
        f'username="admin" password="admin-{STRONG}";')
    assert not any(k.startswith("password.") for k in properties), "the passwords are not broker properties"
    assert (tmp_path / "server.properties").stat().st_mode & 0o077 == 0, "it holds admin's password"
    storage = (tmp_path / "kafka-storage.sh.args").read_text().splitlines()
    assert storage[:4] == ["format", "--ignore-formatted", "-t", "aftersales-kraft-cluster-01"]
    users = {arg for arg in storage if arg.startswith("SCRAM-SHA-512=")}
    assert users == {f"SCRAM-SHA-512=[name={p},password={p}-{STRONG}]" for p in PRINCIPALS}
    assert (tmp_path / "kafka-server-start.sh.args").read_text().split() == [str(tmp_path / "server.properties")]
    admin = (tmp_path / "admin.properties").read_text()
    assert "security.protocol=SASL_SSL" in admin and "ssl.truststore.location=/etc/kafka/tls/ca.pem" in admin
