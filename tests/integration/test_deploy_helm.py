"""deploy/helm/aftersales rendered by a real `helm template` (helm is built into .local/bin by
`aftersales infra up`) and the manifests checked: every process has a Deployment probed on /ready
and /health with requests and limits, a PodDisruptionBudget and a KEDA ScaledObject on its
consumer group's lag bounded by the topics' partitions; the migrations run as a hook Job;
secret values reach the pods only from a Kubernetes Secret, never a ConfigMap."""

from __future__ import annotations

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
    "AFTERSALES_KAFKA_SASL_USERNAME": "aftersales-app",
    "AFTERSALES_KAFKA_SASL_PASSWORD": "sasl-Secret-8d7e6f",
}


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
    """A render with every option that handles a secret on: SASL, the chart-made Secret."""
    sets = [f"secrets.values.{key}={value}".replace(",", "\\,") for key, value in SECRET_VALUES.items()]  # --set splits on ,
    return manifests("--set", "secrets.create=true", "--set", "kafka.securityProtocol=SASL_SSL",
                     "--set", "kafka.saslMechanism=SCRAM-SHA-512", *(a for s in sets for a in ("--set-string", s)))


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
        leaked = [key for key, value in SECRET_VALUES.items() if value in text]
        assert not leaked, f"{doc['kind']} {doc['metadata']['name']} holds the value of {leaked}"
    (config,) = of_kind(with_secrets, "ConfigMap").values()
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
    # KEDA reads the lag with the same credentials, from the same Secret.
    (auth,) = of_kind(with_secrets, "TriggerAuthentication").values()
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} == {"aftersales-secrets"}
    scaled = of_kind(with_secrets, "ScaledObject")["rel-intake"]
    assert all(t["authenticationRef"]["name"] == auth["metadata"]["name"] and t["metadata"]["sasl"] == "scram_sha512"
               and t["metadata"]["tls"] == "enable" for t in scaled["spec"]["triggers"])


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
