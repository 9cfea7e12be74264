"""deploy/helm/aftersales rendered by a real `helm template` (helm is built into .local/bin by
`aftersales infra up`) and the manifests checked: every process has a Deployment probed on /ready
and /health with requests and limits, a PodDisruptionBudget and a KEDA ScaledObject on its
consumer group's lag bounded by the topics' partitions; the migrations run as a hook Job;
secret values reach the pods only from a Kubernetes Secret, never a ConfigMap; each process logs in
to Kafka as its own SCRAM principal over SASL_SSL (PLAINTEXT refused), with the ACLs of
`aftersales infra kafka-acls`; the topics' retention is a setting the chart checks and
`aftersales infra kafka-configs` prints."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services import load
from shared.settings import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "aftersales"
KUBE_VERSION = "1.30.0"  # a source-built helm assumes v1.20 otherwise; the chart needs >= 1.25

# Distinct values in every secret key, to be looked for everywhere else in the render.
SECRET_VALUES = {
    "AFTERSALES_DATABASE_URL": "postgresql://aftersales:pg-Secret-9f2c7e@db.internal:5432/aftersales",
    "AFTERSALES_DATABASE_SERVICES_URL": "postgresql://db.internal:5432/aftersales?sslmode=verify-full&x=Secret-1d",
    "AFTERSALES_DATABASE_ROLE_PASSWORDS": ",".join(f"{p}=pg-{p}-Secret-all" for p in (*PROCESSES, "ops")),
    **{f"AFTERSALES_DATABASE_ROLE_PASSWORDS_{p.upper()}": f"{p}=pg-{p}-Secret-own" for p in PROCESSES},
    "AFTERSALES_API_TOKENS": "tok-Secret-4b1d8a=ops:ops-01",
    "AFTERSALES_WEBHOOK_SECRETS": "dms=wh-Secret-77c0e1",
    "AFTERSALES_CONSOLE_SIGNING_KEY": "sign-Secret-0a9d33",
    "AFTERSALES_SMS_API_KEY": "sms-Secret-5e6f21",
    "AFTERSALES_SMTP_PASSWORD": "smtp-Secret-c3b2a1",
    # Kafka: each process's own SCRAM principal (the names shared/kafka/acls.py grants)
    **{f"AFTERSALES_KAFKA_SASL_USERNAME_{p.upper()}": p for p in PROCESSES},
    **{f"AFTERSALES_KAFKA_SASL_PASSWORD_{p.upper()}": f"kafka-{p}-Secret-own" for p in PROCESSES},
}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBkafkaCA\n-----END CERTIFICATE-----\n"


def helm() -> str:
    local = ROOT / ".local" / "bin" / "helm"
    binary = str(local) if local.exists() else shutil.which("helm")
    if binary is None:
        pytest.fail("helm is missing: run `aftersales infra up` (it builds helm into .local/bin with Go)")
    return binary


def render(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm(), "template", "rel", str(CHART), "--kube-version", KUBE_VERSION, *args],
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def manifests(*args: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(*args).stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def with_secrets() -> list[dict[str, Any]]:
    """A render with every option that handles a secret on: SASL, the chart-made Secret, the Kafka CA."""
    return manifests("--set", "secrets.create=true", "--set", "kafka.securityProtocol=SASL_SSL",
                     "--set", "kafka.saslMechanism=SCRAM-SHA-512", "--set-string", f"kafka.ca.pem={CA_PEM}",
                     *secret_sets(SECRET_VALUES))


def secret_sets(values: dict[str, str]) -> list[str]:
    sets = [f"secrets.values.{key}={value}".replace(",", "\\,") for key, value in values.items()]  # --set splits on ,
    return [a for s in sets for a in ("--set-string", s)]


def test_the_chart_lints() -> None:
    result = subprocess.run([helm(), "lint", str(CHART), "--kube-version", KUBE_VERSION],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "0 chart(s) failed" in result.stdout, result.stdout + result.stderr


def test_every_process_has_a_deployment_probed_and_limited_with_a_service_and_a_pdb() -> None:
    docs = manifests()
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == {f"rel-{p}" for p in PROCESSES}
    services, budgets = of_kind(docs, "Service"), of_kind(docs, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        process = name.removeprefix("rel-")
        assert container["args"] == ["serve", process]
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"].get(kind, {})), f"{name}: no {kind}"
        port = container["ports"][0]["containerPort"]
        assert services[name]["spec"]["ports"][0]["port"] == port
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels
        assert budgets[name]["spec"]["minAvailable"] >= 1
        assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    # The console reaches the services by their Service names and ports.
    (config,) = of_kind(docs, "ConfigMap").values()
    urls = dict(pair.split("=") for pair in config["data"]["AFTERSALES_SERVICE_URLS"].split(","))
    for process, url in urls.items():
        assert url == f"http://rel-{process}:{services[f'rel-{process}']['spec']['ports'][0]['port']}"


def test_no_secret_value_is_in_a_configmap_and_each_process_gets_only_its_own(with_secrets: list[dict[str, Any]]) -> None:
    secrets = of_kind(with_secrets, "Secret")
    assert set(secrets["aftersales-secrets"]["stringData"].values()) == set(SECRET_VALUES.values())
    for doc in with_secrets:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        # (a Kafka username is the process's name, written everywhere: not a secret, only kept with its password)
        leaked = [key for key, value in SECRET_VALUES.items() if value in text and "SASL_USERNAME" not in key]
        assert not leaked, f"{doc['kind']} {doc['metadata']['name']} holds the value of {leaked}"
    for config in of_kind(with_secrets, "ConfigMap").values():  # the settings', the Kafka CA's
        assert not set(config["data"]) & set(SECRET_VALUES), "a secret key is set in the ConfigMap"
    given: dict[str, set[str]] = {}
    for name, deployment in of_kind(with_secrets, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for env in container["env"]:
            assert "value" not in env, f"{name}: {env['name']} is written into the manifest"
            assert env["valueFrom"]["secretKeyRef"]["name"] == "aftersales-secrets"
        given[name.removeprefix("rel-")] = {env["name"] for env in container["env"]}
        # Postgres: its own role's password only, the server without credentials, never the admin's URL
        keys = {env["name"]: env["valueFrom"]["secretKeyRef"]["key"] for env in container["env"]}
        process = name.removeprefix("rel-")
        assert keys["AFTERSALES_DATABASE_ROLE_PASSWORDS"] == f"AFTERSALES_DATABASE_ROLE_PASSWORDS_{process.upper()}"
        assert keys["AFTERSALES_DATABASE_URL"] == "AFTERSALES_DATABASE_SERVICES_URL", name
        assert "AFTERSALES_DATABASE_URL" not in keys.values(), f"{name} gets the admin's database URL"
    # The signing key only to the console, the SMS key only to the notifier, webhook secrets only to intake.
    assert {p for p, keys in given.items() if "AFTERSALES_CONSOLE_SIGNING_KEY" in keys} == {"console"}
    assert {p for p, keys in given.items() if "AFTERSALES_SMS_API_KEY" in keys} == {"notifier"}
    assert {p for p, keys in given.items() if "AFTERSALES_WEBHOOK_SECRETS" in keys} == {"intake"}
    assert all({"AFTERSALES_DATABASE_URL", "AFTERSALES_DATABASE_ROLE_PASSWORDS", "AFTERSALES_KAFKA_SASL_PASSWORD"}
               <= keys for keys in given.values())


def test_each_process_logs_in_to_kafka_as_its_own_principal(with_secrets: list[dict[str, Any]]) -> None:
    # Its own username and password, each from its own key of the Secret, as compose gives them.
    (secret,) = of_kind(with_secrets, "Secret").values()
    usernames: dict[str, str] = {}
    for name, deployment in of_kind(with_secrets, "Deployment").items():
        process = name.removeprefix("rel-")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        refs = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in container["env"]}
        user, password = refs["AFTERSALES_KAFKA_SASL_USERNAME"], refs["AFTERSALES_KAFKA_SASL_PASSWORD"]
        assert (user["name"], password["name"]) == ("aftersales-secrets", "aftersales-secrets")
        assert user["key"] == f"AFTERSALES_KAFKA_SASL_USERNAME_{process.upper()}", name
        assert password["key"] == f"AFTERSALES_KAFKA_SASL_PASSWORD_{process.upper()}", name
        assert not user.get("optional") and not password.get("optional"), f"{name}: its Kafka login is optional"
        usernames[process] = secret["stringData"][user["key"]]
        # No other process's Kafka key, and no shared login key at all.
        kafka_keys = {ref["key"] for ref in refs.values() if "KAFKA" in ref["key"]}
        assert kafka_keys == {user["key"], password["key"]}, f"{name} gets {sorted(kafka_keys)}"
        # SASL_SSL with SCRAM-SHA-512, the brokers' CA mounted from a ConfigMap where the settings look.
        mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-ca")
        volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-ca")
        assert mount["readOnly"] is True and "secret" not in volume
        configs = of_kind(with_secrets, "ConfigMap")
        assert configs[volume["configMap"]["name"]]["data"]["ca.pem"] == CA_PEM
        assert configs["rel-config"]["data"]["AFTERSALES_KAFKA_SSL_CAFILE"] == f"{mount['mountPath']}/ca.pem"
    assert set(usernames) == set(PROCESSES)
    assert len(set(usernames.values())) == len(usernames), f"processes share a Kafka username: {usernames}"
    config = of_kind(with_secrets, "ConfigMap")["rel-config"]["data"]
    assert (config["AFTERSALES_KAFKA_SECURITY_PROTOCOL"], config["AFTERSALES_KAFKA_SASL_MECHANISM"]) == (
        "SASL_SSL", "SCRAM-SHA-512")
    assert "AFTERSALES_DEV_PLAINTEXT_KAFKA" not in config
    # No Kafka password (nor a login key) in any ConfigMap.
    passwords = [v for k, v in SECRET_VALUES.items() if k.startswith("AFTERSALES_KAFKA_SASL_PASSWORD")]
    for name, configmap in of_kind(with_secrets, "ConfigMap").items():
        text = yaml.safe_dump(configmap["data"])
        assert not [p for p in passwords if p in text], f"ConfigMap {name} holds a Kafka password"
        assert not [k for k in configmap["data"] if "SASL_PASSWORD" in k or "KAFKA_CREDENTIALS" in k], name
    # The migrations never connect to Kafka: no Kafka login at all.
    (job,) = of_kind(with_secrets, "Job").values()
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert not [e["name"] for e in migrate["env"] if "KAFKA" in e["name"]]
    # KEDA reads each group's lag as that group's process: its own keys, and the same CA.
    auths = of_kind(with_secrets, "TriggerAuthentication")
    for name, scaled in of_kind(with_secrets, "ScaledObject").items():
        process = name.removeprefix("rel-")
        refs = {t["authenticationRef"]["name"] for t in scaled["spec"]["triggers"]}
        assert refs == {f"{name}-kafka"}, name
        auth = auths[f"{name}-kafka"]["spec"]
        assert {r["parameter"]: r["key"] for r in auth["secretTargetRef"]} == {
            "username": f"AFTERSALES_KAFKA_SASL_USERNAME_{process.upper()}",
            "password": f"AFTERSALES_KAFKA_SASL_PASSWORD_{process.upper()}"}
        assert auth["configMapTargetRef"] == [{"parameter": "ca", "name": "rel-kafka-ca", "key": "ca.pem"}]
        assert all(t["metadata"]["sasl"] == "scram_sha512" and t["metadata"]["tls"] == "enable"
                   for t in scaled["spec"]["triggers"])


def test_the_chart_refuses_a_shared_kafka_username_and_an_insecure_broker() -> None:
    shared = {**SECRET_VALUES, "AFTERSALES_KAFKA_SASL_USERNAME_QUALITY": "followup"}
    result = render("--set", "secrets.create=true", *secret_sets(shared), check=False)
    assert result.returncode != 0
    assert "followup and quality share the Kafka username followup" in result.stderr
    # PLAINTEXT (or TLS without a login, or a login without TLS, or PLAIN) is refused by default ...
    for option in ("kafka.securityProtocol=PLAINTEXT", "kafka.securityProtocol=SSL",
                   "kafka.securityProtocol=SASL_PLAINTEXT", "kafka.saslMechanism=PLAIN"):
        result = render("--set", option, check=False)
        assert result.returncode != 0, option
        assert "SASL_SSL only" in result.stderr or "PLAIN sends the password" in result.stderr, result.stderr
    # ... and rendered with the development flag, which the services honour only on a loopback broker.
    docs = manifests("--set", "kafka.securityProtocol=PLAINTEXT", "--set", "kafka.developmentInsecure=true")
    config = of_kind(docs, "ConfigMap")["rel-config"]["data"]
    assert config["AFTERSALES_DEV_PLAINTEXT_KAFKA"] == "true"
    assert config["AFTERSALES_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not of_kind(docs, "TriggerAuthentication")
    for deployment in of_kind(docs, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert not [e["name"] for e in container["env"] if "KAFKA" in e["name"]]


def test_the_printed_acls_are_the_ones_the_broker_gets() -> None:
    # What the chart's README tells the cluster's operators to create: shared/kafka/acls.py's table.
    from shared.kafka.acls import acls
    from shared.settings import load_settings

    result = subprocess.run([str(ROOT / ".venv" / "bin" / "aftersales"), "infra", "kafka-acls", "--topic-prefix", "prod."],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = acls(load_settings(topic_prefix="prod."))
    assert len(lines) == len(expected) > 0
    for line, rule in zip(lines, expected, strict=True):
        kind = "topic" if " --topic " in line else "group"
        principal = line.split("--allow-principal ")[1].split()[0]
        operation = line.split("--operation ")[1].split()[0].upper()
        assert f"{principal} {operation} {kind} {line.split()[-1]}" == str(rule)
    assert "--allow-principal User:intake --operation Write --topic prod.aftersales.intake" in result.stdout
    assert "--allow-principal User:followup --operation Read --group prod.followup" in result.stdout
    assert not [line for line in lines if "User:followup" in line and "--operation Write --topic prod.aftersales.intake" in line]


def test_the_check_catches_a_secret_written_into_the_configmap(with_secrets: list[dict[str, Any]]) -> None:
    # The check above can fail: the same render with a secret put in the ConfigMap by mistake.
    broken = [dict(d) for d in with_secrets]
    for doc in broken:
        if doc["kind"] == "ConfigMap":
            doc["data"] = {**doc["data"], "AFTERSALES_SMS_API_KEY": SECRET_VALUES["AFTERSALES_SMS_API_KEY"]}
    with pytest.raises(AssertionError, match="AFTERSALES_SMS_API_KEY"):
        test_no_secret_value_is_in_a_configmap_and_each_process_gets_only_its_own(broken)


def test_each_consumer_group_scales_on_its_lag_within_the_partitions() -> None:
    docs = manifests()
    scaled = of_kind(docs, "ScaledObject")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    partitions = values["kafka"]["topicPartitions"]
    assert set(scaled) == {f"rel-{p}" for p in PROCESSES}
    for name, obj in scaled.items():
        process = name.removeprefix("rel-")
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
        # One Kafka trigger per topic the service's consumer group reads, as the code subscribes.
        subscribed = sorted({s.topic for s in load(process).subscriptions})
        assert sorted(t["metadata"]["topic"] for t in spec["triggers"]) == subscribed, process
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["consumerGroup"] == process
            assert int(trigger["metadata"]["lagThreshold"]) > 0
            assert trigger["metadata"]["allowIdleConsumers"] == "false"
        # Scaled by KEDA: the Deployment does not pin a replica count the HPA would fight.
        assert "replicas" not in of_kind(docs, "Deployment")[name]["spec"]
    # A topic prefix applies to the groups and the topics alike.
    prefixed = of_kind(manifests("--set", "kafka.topicPrefix=prod."), "ScaledObject")["rel-followup"]
    assert {t["metadata"]["consumerGroup"] for t in prefixed["spec"]["triggers"]} == {"prod.followup"}
    assert all(t["metadata"]["topic"].startswith("prod.aftersales.") for t in prefixed["spec"]["triggers"])


def test_the_chart_refuses_more_replicas_than_partitions() -> None:
    result = render("--set", "services.notifier.autoscaling.maxReplicas=13", check=False)
    assert result.returncode != 0
    assert "notifier: autoscaling.maxReplicas 13 is more than kafka.topicPartitions 12" in result.stderr
    # With more partitions, the same count renders.
    render("--set", "services.notifier.autoscaling.maxReplicas=13", "--set", "kafka.topicPartitions=24")


def test_without_autoscaling_the_deployment_has_fixed_replicas_and_no_scaledobject() -> None:
    docs = manifests("--set", "defaults.autoscaling.enabled=false", "--set", "defaults.replicas=3")
    assert not of_kind(docs, "ScaledObject")
    assert {d["spec"]["replicas"] for d in of_kind(docs, "Deployment").values()} == {3}


def test_the_migrations_run_as_a_hook_job_before_the_deployments() -> None:
    docs = manifests()
    (job,) = of_kind(docs, "Job").values()
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate", "all"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    database = next(e for e in container["env"] if e["name"] == "AFTERSALES_DATABASE_URL")
    assert database["valueFrom"]["secretKeyRef"]["name"] == "aftersales-secrets"
    # the admin's URL and every role's password: it creates the roles, then migrates as each owner
    roles = next(e for e in container["env"] if e["name"] == "AFTERSALES_DATABASE_ROLE_PASSWORDS")
    assert roles["valueFrom"]["secretKeyRef"]["key"] == "AFTERSALES_DATABASE_ROLE_PASSWORDS"
    # The chart-made Secret (trial clusters) is a hook too, earlier, so the Job finds it.
    secret = of_kind(manifests("--set", "secrets.create=true"), "Secret")["aftersales-secrets"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_the_topic_retention_reaches_the_settings_and_a_bad_entry_is_refused_at_render() -> None:
    from shared.settings import DEFAULT_TOPIC_RETENTION_DAYS, Settings, parse_topic_retention

    def retention(value: str) -> str:
        docs = manifests("--set-string", "kafka.topicRetentionDays=" + value.replace(",", "\\,"))
        return str(of_kind(docs, "ConfigMap")["rel-config"]["data"]["AFTERSALES_TOPIC_RETENTION_DAYS"])

    config = of_kind(manifests(), "ConfigMap")["rel-config"]["data"]
    assert config["AFTERSALES_TOPIC_RETENTION_DAYS"] == ""  # the settings' defaults
    assert Settings(_env_file=None, topic_retention_days="").topic_retention() == DEFAULT_TOPIC_RETENTION_DAYS
    assert retention("upstream.*=7, deadletter=forever") == "upstream.*=7, deadletter=forever"
    # What the chart renders the settings accept; what it refuses they refuse too, naming the entry.
    for good in ("upstream.dms=7,deadletter=14", "upstream.*=30,aftersales.intake=-1", "deadletter=FOREVER"):
        parse_topic_retention(retention(good))
    for bad, entry in (("upstream.dms=7,upstream.foo=3", "upstream.foo=3"), ("deadletter=0", "deadletter=0"),
                       ("upstream.dms=1.5", "upstream.dms=1.5"), ("dms=3", "dms=3"), ("upstream.dms", "upstream.dms")):
        result = render("--set-string", "kafka.topicRetentionDays=" + bad.replace(",", "\\,"), check=False)
        assert result.returncode != 0, bad
        assert f'kafka.topicRetentionDays: "{entry}" is no topic=days' in result.stderr, result.stderr
        with pytest.raises(ValueError, match=entry.replace(".", r"\.")):
            parse_topic_retention(bad)


def test_the_printed_topic_configs_are_the_ones_infra_topics_sets() -> None:
    # README step 4: a Kafka team that creates the topics itself gets their configs from this.
    from shared.events import ALL_TOPICS
    from shared.kafka.clients import topic_config
    from shared.settings import load_settings

    env = {**os.environ, "AFTERSALES_TOPIC_RETENTION_DAYS": "upstream.dms=7,deadletter=14"}
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "aftersales"), "infra", "kafka-configs", "--topic-prefix", "prod."],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    settings = load_settings(topic_prefix="prod.", topic_retention_days="upstream.dms=7,deadletter=14")
    printed = {line.split("--entity-name ")[1].split()[0]: dict(pair.split("=") for pair in line.split()[-1].split(","))
               for line in result.stdout.splitlines()}
    assert printed == {settings.topic(t): topic_config(t, settings) for t in ALL_TOPICS}
    assert printed["prod.upstream.dms"]["retention.ms"] == str(7 * 86_400_000)
    assert printed["prod.aftersales.intake"]["retention.ms"] == "-1"
    assert printed["prod.aftersales.deadletter"] == {"retention.ms": str(14 * 86_400_000), "retention.bytes": "-1",
                                                     "max.message.bytes": str(4 * 1024 * 1024)}
    assert all(" --alter --entity-type topics " in line for line in result.stdout.splitlines())
