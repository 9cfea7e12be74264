"""docker-compose.yml, checked without a Docker engine: it follows the Compose specification
(deploy/schema/compose-spec.json), every AFTERSALES_* variable it sets is a real setting with
a value the settings models accept, and its ports, topics, brokers and peers agree with
DESIGN.md §9, the event catalog and the Prometheus scrape configs."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import typer.main
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from services import load
from shared.db_roles import role_name, role_passwords, service_database_url
from shared.events import ALL_TOPICS, SERVICE_TOPIC
from shared.settings import DEFAULT_PORTS, DEFAULT_TOPIC_RETENTION_DAYS, PROCESSES, SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
SCHEMA = ROOT / "deploy" / "schema" / "compose-spec.json"
# The vendored schema declares draft 2019-09 (by an older URI that jsonschema does not map).
Validator = jsonschema.Draft201909Validator

# DESIGN.md §9: "HTTP ports: intake 8001, followup 8002, complaints 8003, quality 8004, notifier 8005".
DESIGN_PORTS = {"intake": 8001, "followup": 8002, "complaints": 8003, "quality": 8004, "notifier": 8005}

_INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_]\w*)(?:(:?-)([^}]*)|(:?\?)([^}]*))?\}|([A-Za-z_]\w*))")


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(6)
        value = env.get(name)
        if match.group(2):  # a default
            unset = value is None or (match.group(2) == ":-" and value == "")
            return match.group(3) if unset else value  # type: ignore[return-value]
        if value is None or (match.group(4) == ":?" and value == ""):
            raise AssertionError(f"docker-compose.yml needs {name} ({match.group(5) or 'no default'}); "
                                 f"put it in {ENV_EXAMPLE.relative_to(ROOT)}")
        return value

    return _INTERPOLATION.sub(substitute, text)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env_example() if env is None else env))  # type: ignore[no-any-return]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def aftersales_containers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The containers that run the project's image (services, topic job, SMS sink)."""
    return {name: s for name, s in doc["services"].items() if "build" in s}


def settings_models() -> list[type[BaseSettings]]:
    """Settings plus every service's settings models (services/<name>/config.py)."""
    models: list[type[BaseSettings]] = [Settings]
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.config")
        models += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                   if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__]
    return models


def _env_names(prefix: str, model: type[BaseModel], delimiter: str | None) -> Iterator[str]:
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name}".upper()
        yield name
        annotation = field.annotation
        if delimiter and inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            yield from _env_names(f"{name}{delimiter}", annotation, delimiter)


def known_variables() -> dict[str, str]:
    """Every AFTERSALES_* variable the code reads -> where it is declared."""
    known: dict[str, str] = {}
    for model in settings_models():
        config = model.model_config
        for name in _env_names(config.get("env_prefix", ""), model, config.get("env_nested_delimiter")):
            known[name] = f"{model.__module__}.{model.__name__}"
    from aftersales.cli import _add_tools, app

    assert _add_tools(), "the tools' commands (peers: the SMS sink) are part of what compose runs"

    def walk(command: Any, path: str) -> None:
        for param in getattr(command, "params", []):
            for envvar in [param.envvar] if isinstance(param.envvar, str) else (param.envvar or []):
                known[envvar] = f"aftersales {path} --{param.name}"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return known


# ---------------------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    Validator.check_schema(schema)
    errors = sorted(Validator(schema).iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_rejects_what_compose_would_reject() -> None:
    validator = Validator(yaml.safe_load(SCHEMA.read_text()))
    broken = compose()
    broken["services"]["intake"]["depends_on"]["topics"]["condition"] = "service_finished"
    broken["services"]["quality"]["restart_policy"] = "always"
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("service_finished" in m for m in messages) and any("restart_policy" in m for m in messages)


def test_every_variable_the_compose_file_interpolates_is_in_the_env_example() -> None:
    text = COMPOSE.read_text()
    used = {m.group(1) or m.group(6) for m in _INTERPOLATION.finditer(text) if m.group(0) != "$$"}
    required = {m.group(1) for m in _INTERPOLATION.finditer(text) if m.group(4)}
    example = env_example()
    assert required <= set(example), f"required but not in the example: {sorted(required - set(example))}"
    assert set(example) <= used, f"the example sets what compose never reads: {sorted(set(example) - used)}"
    with pytest.raises(AssertionError, match="AFTERSALES_API_TOKENS"):
        compose({k: v for k, v in example.items() if k != "AFTERSALES_API_TOKENS"})


def test_every_aftersales_variable_in_the_compose_file_is_a_real_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    known = known_variables()
    models = settings_models()
    for name, container in aftersales_containers(compose()).items():
        env = environment(container)
        unknown = sorted(k for k in env if k.startswith("AFTERSALES_") and k not in known)
        assert not unknown, (f"{name}: {unknown} are not settings; the settings are in shared/settings.py and "
                             f"services/*/config.py (env prefix AFTERSALES_), e.g. {sorted(known)[:5]}")
        # And the values are ones the models accept, as the container would load them.
        for key in [k for k in os.environ if k.startswith("AFTERSALES_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for model in models:
            try:
                model(_env_file=None)  # type: ignore[call-arg]
            except ValidationError as exc:
                raise AssertionError(f"{name}: {model.__name__} refuses the compose environment: {exc}") from None


def test_the_known_variables_come_from_the_settings_models_and_the_cli() -> None:
    known = known_variables()
    assert known["AFTERSALES_KAFKA_BOOTSTRAP"] == "shared.settings.Settings"
    assert known["AFTERSALES_SMS_GATEWAY_URL"] == "services.notifier.config.NotifierSettings"
    assert known["AFTERSALES_COMPLAINTS_SLA__CRITICAL__ACKNOWLEDGE_WITHIN"] == "services.complaints.config.ComplaintRules"
    assert known["AFTERSALES_FOLLOWUP_FIRST_VISIT_AFTER_DAYS"] == "services.followup.config.FollowUpRules"
    assert known["AFTERSALES_PEERS_HOST"].startswith("aftersales peers")
    assert "AFTERSALES_SMTP_HOSTNAME" not in known


def test_the_five_services_serve_on_the_ports_of_design_section_9() -> None:
    assert DEFAULT_PORTS == DESIGN_PORTS
    services = compose()["services"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["serve", name]
        assert service["expose"] == [str(DESIGN_PORTS[name])], name
        assert "ports" not in service, f"{name}: only the TLS proxy publishes host ports"
        assert f"http://127.0.0.1:{DESIGN_PORTS[name]}/ready" in " ".join(service["healthcheck"]["test"]), name
        assert f"AFTERSALES_{name.upper()}_PORT" not in environment(service), "the design's port, not another"
        assert environment(service)["AFTERSALES_HTTP_HOST"] == "0.0.0.0", "reachable from Prometheus and the proxy"


def test_topics_are_created_on_the_cluster_before_any_service_starts() -> None:
    doc = compose()
    services = doc["services"]
    brokers = [s for s in services.values() if str(s.get("image", "")).startswith("apache/kafka:")]
    job = services["topics"]
    assert job["command"] == ["infra", "topics"]
    from aftersales.cli import app

    assert "topics" in typer.main.get_command(app).commands["infra"].commands  # type: ignore[attr-defined]
    job_env = environment(job)
    replication = int(job_env["AFTERSALES_TOPIC_REPLICATION_FACTOR"])
    kafka_env = environment(brokers[0])
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from the catalog, not from typos"
    assert int(kafka_env["KAFKA_MIN_INSYNC_REPLICAS"]) < replication <= len(brokers)
    assert int(job_env["AFTERSALES_TOPIC_PARTITIONS"]) == Settings().topic_partitions
    for name in SERVICES:
        assert services[name]["depends_on"]["topics"] == {"condition": "service_completed_successfully"}, name
        definition = load(name)
        # `infra topics` creates the catalog's topics: every topic a service reads or writes is one.
        used = {s.topic for s in definition.subscriptions} | {SERVICE_TOPIC[name], "aftersales.deadletter"}
        assert used <= set(ALL_TOPICS), f"{name} uses topics the catalog does not list: {used - set(ALL_TOPICS)}"


def test_the_topics_job_takes_the_retention_from_env_and_refuses_a_bad_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the job that creates (and alters) the topics reads the retention setting.
    for name, container in aftersales_containers(compose()).items():
        assert ("AFTERSALES_TOPIC_RETENTION_DAYS" in environment(container)) == (name == "topics"), name

    def job_settings(env: dict[str, str]) -> Settings:
        for key in [k for k in os.environ if k.startswith("AFTERSALES_")]:
            monkeypatch.delenv(key)
        for key, value in environment(compose(env)["services"]["topics"]).items():
            monkeypatch.setenv(key, value)
        return Settings(_env_file=None)  # type: ignore[call-arg]

    # Unset in .env: the defaults (raw inputs and dead letters 30 days, the canonical topics for ever).
    assert job_settings(env_example()).topic_retention() == DEFAULT_TOPIC_RETENTION_DAYS
    configured = job_settings({**env_example(), "AFTERSALES_TOPIC_RETENTION_DAYS": "upstream.*=7,deadletter=14"})
    assert configured.topic_retention_ms("upstream.crm") == 7 * 86_400_000
    assert configured.topic_retention_ms("aftersales.deadletter") == 14 * 86_400_000
    with pytest.raises(ValidationError, match="'upstream.dms=0'"):
        job_settings({**env_example(), "AFTERSALES_TOPIC_RETENTION_DAYS": "upstream.dms=0"})
    # The example documents it (commented out: unset keeps the defaults).
    assert "# AFTERSALES_TOPIC_RETENTION_DAYS=" in ENV_EXAMPLE.read_text()


def test_the_kafka_cluster_is_three_kraft_brokers_that_agree_on_their_quorum() -> None:
    services = compose()["services"]
    brokers = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")}
    assert len(brokers) == 3
    ids = {}
    for name, broker in brokers.items():
        env = environment(broker)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"SASL_SSL://{broker['hostname']}:9092"  # issue 19
        assert env["KAFKA_LOG_DIRS"] in broker["volumes"][0], f"{name}: the data directory must be on its volume"
        ids[int(env["KAFKA_NODE_ID"])] = broker["hostname"]
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == ",".join(f"{i}@{host}:9093" for i, host in sorted(ids.items()))
    for name, container in aftersales_containers(compose()).items():
        bootstrap = environment(container).get("AFTERSALES_KAFKA_BOOTSTRAP")
        if bootstrap is not None:
            assert bootstrap == ",".join(f"{h}:9092" for _, h in sorted(ids.items())), name


def test_the_services_reach_postgres_the_sms_sink_and_the_mail_catcher_by_their_compose_names() -> None:
    services = compose()["services"]
    env = environment(services["notifier"])
    database = urlsplit(env["AFTERSALES_DATABASE_URL"])
    postgres = environment(services["postgres"])
    assert (database.hostname, database.path.strip("/")) == ("postgres", postgres["POSTGRES_DB"])
    admin = urlsplit(environment(services["db-roles"])["AFTERSALES_DATABASE_URL"])  # the roles' maker
    assert (admin.hostname, admin.username, admin.password, admin.path.strip("/")) == (
        "postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    sms = urlsplit(env["AFTERSALES_SMS_GATEWAY_URL"])
    sink = services[sms.hostname]
    assert sink["command"][0] == "peers" and sink["command"][sink["command"].index("--http-port") + 1] == str(sms.port)
    assert environment(sink)["AFTERSALES_SMS_API_KEY"] == env["AFTERSALES_SMS_API_KEY"], "the sink checks the key"
    assert environment(sink)["AFTERSALES_PEERS_HOST"] == "0.0.0.0"
    mail = services[env["AFTERSALES_SMTP_HOST"]]
    assert mail["image"].startswith("axllent/mailpit:") and env["AFTERSALES_SMTP_PORT"] == "1025"  # mailpit's SMTP port


def test_prometheus_scrapes_every_service_under_its_own_job_in_compose_and_locally() -> None:
    services = compose()["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    for config_name in ("prometheus.yml", "prometheus.local.yml"):
        config = yaml.safe_load((ROOT / "deploy" / "prometheus" / config_name).read_text())
        assert all((ROOT / "deploy" / "prometheus" / f).exists() for f in config["rule_files"])
        jobs = {j["job_name"]: j for j in config["scrape_configs"] if j["job_name"] in SERVICES}
        assert set(jobs) == set(SERVICES), config_name
        for name, job in jobs.items():
            if config_name == "prometheus.yml":
                [dns] = job["dns_sd_configs"]
                assert dns["names"] == [name] and name in services and dns["port"] == DESIGN_PORTS[name]
            else:
                assert job["static_configs"] == [{"targets": [f"127.0.0.1:{DESIGN_PORTS[name]}"]}]


def test_the_image_build_copies_every_product_package_and_not_the_tools() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines = [line.split() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    first, second = [i for i, line in enumerate(lines) if line[:1] == ["FROM"]][:2]
    build_stage = lines[first:second]
    copied = {part for line in build_stage if line[:1] == ["COPY"] for part in line[1:-1]}
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns} - {"tools"}
    assert packages <= copied, f"the build stage does not copy {sorted(packages - copied)}"
    assert "tools" not in copied, "the production image holds the product, not the tools"
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not (copied & ignored), f".dockerignore hides what the build copies: {copied & ignored}"


# -- network hardening (issue 19, docs/security.md "Network") ------------------------------------

CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


def test_only_the_tls_proxy_publishes_host_ports() -> None:
    services = compose()["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"proxy": ["80:80", "443:443"]}, published
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    for sensitive in ("prometheus", "grafana", "mail", "sms-sink", "postgres", "kafka-1", "console"):
        assert "ports" not in services[sensitive], f"{sensitive} must not be reachable from outside but through the proxy"


def _caddy_routes() -> dict[str, str]:
    """The Caddyfile's site: {matcher: upstream} of each handle block, plus the site line and tls."""
    routes: dict[str, str] = {}
    matcher = None
    for raw in CADDYFILE.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(("handle ", "handle_path ", "handle {")):
            matcher = line.removesuffix("{").split(None, 1)[1].strip() if " " in line.removesuffix("{").strip() else "*"
        elif line.startswith("reverse_proxy ") and matcher is not None:
            routes[matcher] = line.split()[1]
        elif line.startswith(("tls ", "{$")):
            routes[line.split()[0]] = line.split()[-1] if line.startswith("tls") else line
    return routes


def test_the_proxy_serves_the_site_over_tls_and_routes_to_the_services_by_their_compose_names() -> None:
    services = compose()["services"]
    routes = _caddy_routes()
    assert routes["{$SITE_HOST}"] == "{$SITE_HOST} {", "a named site: Caddy serves HTTPS and redirects HTTP"
    assert routes["tls"] == "{$SITE_TLS}"
    assert set(environment(services["proxy"])) == {"SITE_HOST", "SITE_TLS"}
    assert "http://" not in CADDYFILE.read_text().split("{$SITE_HOST}", 1)[0].replace("# ", ""), \
        "no plain-HTTP site besides the redirect"
    assert routes["*"] == "console:8000"
    assert routes["/grafana/*"] == "grafana:3000"
    assert routes["/v1/events"] == f"intake:{DESIGN_PORTS['intake']}"
    for name, port in DESIGN_PORTS.items():
        assert routes[f"/api/{name}/*"] == f"{name}:{port}", name
    upstreams = {u.split(":")[0] for u in routes.values() if ":" in u and not u.startswith("{")}
    assert upstreams <= set(services), f"the proxy names containers compose does not have: {upstreams - set(services)}"
    assert not upstreams & {"prometheus", "mail", "sms-sink"}, "the sinks and Prometheus stay inside"
    text = CADDYFILE.read_text()
    assert "@metrics path */metrics" in text and "respond @metrics 404" in text, "no /metrics through the proxy"
    assert "Strict-Transport-Security" in text


def test_prometheus_has_no_lifecycle_api_and_grafana_no_anonymous_viewers() -> None:
    services = compose()["services"]
    assert not any("enable-lifecycle" in arg for arg in services["prometheus"]["command"]), \
        "anyone who reaches it could stop Prometheus with POST /-/quit"
    grafana = environment(services["grafana"])
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert grafana["GF_SERVER_ROOT_URL"] == f"https://{env_example()['SITE_HOST']}/grafana/"
    assert grafana["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true" and grafana["GF_SECURITY_COOKIE_SECURE"] == "true"
    assert "${GRAFANA_ADMIN_PASSWORD:?" in COMPOSE.read_text()


def test_every_password_and_secret_is_required_and_none_falls_back_to_a_default() -> None:
    text = COMPOSE.read_text()
    defaults = {m.group(1): m.group(3) for m in _INTERPOLATION.finditer(text) if m.group(2)}
    # The SMTP relay's login is optional (the mail catcher takes none): empty means no login, never a value.
    optional = {"AFTERSALES_SMTP_PASSWORD"}
    secret_words = ("PASSWORD", "SECRET", "TOKEN", "KEY")
    secretish = [name for name, default in defaults.items()
                 if any(w in name for w in secret_words) and not (name in optional and default == "")]
    assert not secretish, f"these fall back to a default instead of being required: {secretish}"
    for name in ("POSTGRES_PASSWORD", "AFTERSALES_API_TOKENS", "AFTERSALES_WEBHOOK_SECRETS", "AFTERSALES_SMS_API_KEY",
                 "AFTERSALES_CONSOLE_SIGNING_KEY", "AFTERSALES_CONSOLE_PUBLIC_KEY", "GRAFANA_ADMIN_PASSWORD"):
        assert f"${{{name}:?" in text, f"{name} must be required (${{{name}:?…}})"
    without = {k: v for k, v in env_example().items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        compose(without)
    # the database passwords reach their users as set, never the old fallback `aftersales`
    example = env_example() | {"POSTGRES_PASSWORD": "Zq7" * 12, "POSTGRES_INTAKE_PASSWORD": "Yx8" * 12}
    url = urlsplit(environment(compose(example)["services"]["db-roles"])["AFTERSALES_DATABASE_URL"])
    assert url.password == "Zq7" * 12
    intake = environment(compose(example)["services"]["intake"])["AFTERSALES_DATABASE_ROLE_PASSWORDS"]
    assert intake == "intake=" + "Yx8" * 12
    for name in (f"POSTGRES_{p.upper()}_PASSWORD" for p in (*PROCESSES, "ops")):
        assert f"${{{name}:?" in text, f"{name} must be required"
        with pytest.raises(AssertionError, match=name):
            compose({k: v for k, v in env_example().items() if k != name})


def test_the_services_trust_forwarded_for_only_because_the_proxy_sets_it() -> None:
    services = compose()["services"]
    for name in (*SERVICES, "console"):
        assert environment(services[name])["AFTERSALES_TRUST_FORWARDED_FOR"] == "true", name
    assert "trusted_proxies" not in CADDYFILE.read_text(), "Caddy must not pass on a client's own X-Forwarded-For"


def test_the_services_bind_loopback_unless_configured() -> None:
    assert Settings.model_fields["http_host"].default == "127.0.0.1"


# ---------------------------------------------------------------------------------------
# Postgres: a role per service owning only its schema, TLS with verify-full, no superuser for
# services (docs/security.md; the roles themselves are proven on a real server in
# tests/integration/test_security_db_roles.py).

POSTGRES_DIR = ROOT / "deploy" / "postgres"


def _service_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("AFTERSALES_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("AFTERSALES_"):
            monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_each_service_connects_as_its_own_role_over_verify_full_tls_without_the_admins_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    example = env_example()
    services = compose()["services"]
    admin_password = environment(services["postgres"])["POSTGRES_PASSWORD"]
    own_passwords = {name: example[f"POSTGRES_{name.upper()}_PASSWORD"] for name in PROCESSES}
    for name in PROCESSES:
        service = services[name]
        env = environment(service)
        url = urlsplit(env["AFTERSALES_DATABASE_URL"])
        # no credentials in the URL: the admin's are nowhere in a service's environment
        assert url.username is None and url.password is None, name
        assert not any(admin_password in value for value in env.values()), f"{name} holds the admin's password"
        assert dict(pair.split("=", 1) for pair in url.query.split("&"))["sslmode"] == "verify-full", name
        assert env["AFTERSALES_DATABASE_SSL_ROOTCERT"] == "/etc/aftersales/postgres-ca/ca.pem", name
        assert "postgres-ca:/etc/aftersales/postgres-ca:ro" in service["volumes"], name
        assert not any(str(v).startswith("postgres-tls:") for v in service["volumes"]), f"{name} mounts the keys"
        # exactly its own role's password, and the settings turn it into its own role's login
        assert env["AFTERSALES_DATABASE_ROLE_PASSWORDS"] == f"{name}={own_passwords[name]}", name
        settings = _service_settings(env, monkeypatch)
        assert role_passwords(settings) == {name: own_passwords[name]}
        login = urlsplit(service_database_url(settings, name))
        assert (login.username, login.password, login.hostname) == (role_name(settings, name), own_passwords[name],
                                                                     "postgres"), name
        assert service["depends_on"]["db-roles"] == {"condition": "service_completed_successfully"}, name
    # the roles and their passwords: the db-roles job makes them all, as the admin, over TLS too
    job = services["db-roles"]
    assert job["command"] == ["infra", "db-roles"] and job["restart"] == "no"
    job_env = environment(job)
    assert dict(pair.split("=", 1) for pair in urlsplit(job_env["AFTERSALES_DATABASE_URL"]).query.split("&")) == {
        "sslmode": "verify-full"}
    made = dict(pair.split("=", 1) for pair in job_env["AFTERSALES_DATABASE_ROLE_PASSWORDS"].split(","))
    assert made == {**own_passwords, "ops": example["POSTGRES_OPS_PASSWORD"]}
    assert job["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert _has_command("infra", "db-roles")


def _has_command(*path: str) -> bool:
    from aftersales.cli import app

    command: Any = typer.main.get_command(app)
    for part in path:
        command = getattr(command, "commands", {}).get(part)
        if command is None:
            return False
    return True


def test_the_cli_has_the_db_roles_command_the_compose_job_runs() -> None:
    assert _has_command("infra", "db-roles")
    assert not _has_command("infra", "no-such-command")  # the check can fail


def test_postgres_serves_tls_only_with_a_certificate_for_its_compose_name() -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    command = postgres["command"]
    options = dict(command[i + 1].split("=", 1) for i, part in enumerate(command) if part == "-c")
    assert options["ssl"] == "on"
    assert (options["ssl_cert_file"], options["ssl_key_file"]) == ("/tls/server.crt", "/tls/server.key")
    assert "postgres-tls:/tls:ro" in postgres["volumes"]
    assert postgres["depends_on"]["postgres-tls"] == {"condition": "service_completed_successfully"}
    hba_mount = next(v for v in postgres["volumes"] if v.endswith(":" + options["hba_file"] + ":ro"))
    hba = (ROOT / hba_mount.split(":", 1)[0]).read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    network = [r for r in rules if r[0] != "local"]
    assert ["hostssl", "all", "all", "all", "scram-sha-256"] in network
    assert ["hostnossl", "all", "all", "all", "reject"] in network
    assert all(r[0] in ("hostssl", "hostnossl") and r[-1] in ("scram-sha-256", "reject") for r in network), network
    job = services["postgres-tls"]
    assert job["entrypoint"] == ["sh", "/scripts/tls-init.sh"] and job["restart"] == "no"
    assert "./deploy/postgres/tls-init.sh:/scripts/tls-init.sh:ro" in job["volumes"]
    assert {"postgres-tls:/tls", "postgres-ca:/ca"} <= set(job["volumes"])
    # the certificate is made for the host name the services check (verify-full)
    host = urlsplit(environment(services["intake"])["AFTERSALES_DATABASE_URL"]).hostname
    assert 'host="${POSTGRES_TLS_HOST:-postgres}"' in (POSTGRES_DIR / "tls-init.sh").read_text() and host == "postgres"


def test_the_tls_script_makes_a_certificate_that_verify_full_accepts_for_postgres_only(tmp_path: Path) -> None:
    """deploy/postgres/tls-init.sh run for real (openssl), its server certificate served on a
    loopback socket and checked the way asyncpg checks it with the CA (shared/db.py)."""
    import shutil
    import socket
    import ssl
    import subprocess
    import threading

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to check deploy/postgres/tls-init.sh")
    script = (POSTGRES_DIR / "tls-init.sh").read_text().replace("tls=/tls", f"tls={tmp_path}/tls").replace(
        "ca=/ca", f"ca={tmp_path}/ca").replace("chown postgres:postgres", "true")
    (tmp_path / "tls").mkdir()
    (tmp_path / "ca").mkdir()
    (tmp_path / "run.sh").write_text(script)
    for _ in range(2):  # the second run keeps what the first made
        done = subprocess.run(["sh", str(tmp_path / "run.sh")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    first_cert = (tmp_path / "tls" / "server.crt").read_bytes()
    assert (tmp_path / "ca" / "ca.pem").read_bytes() == (tmp_path / "tls" / "ca.pem").read_bytes()
    assert oct((tmp_path / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "tls" / "server.crt", tmp_path / "tls" / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))  # what shared.db uses

    def handshake(name: str) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(b"x")

    handshake("postgres")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|doesn't match"):
        handshake("evil.example")
    thread.join(10)
    listener.close()
    assert (tmp_path / "tls" / "server.crt").read_bytes() == first_cert
