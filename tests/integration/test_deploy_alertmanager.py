"""deploy/alertmanager/alertmanager.yml, checked by Debian's amtool and run with Debian's
alertmanager (package prometheus-alertmanager, installed by `aftersales infra up`): every alert
rule of deploy/prometheus/alerts.yml is routed by its severity (page -> the on-call's e-mail and
webhook; ticket -> the owning team's e-mail), Prometheus sends its alerts there, and a real
Alertmanager delivers a page by e-mail and webhook and a ticket by e-mail only."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tools.peers import MailSink, PeerStore, SmsGatewaySink
from tools.sandbox import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus"

# Who must hear of a rule, by its labels (the department's decision, see alertmanager.yml).
EXPECTED = {
    ("page", "platform"): "on-call",
    ("ticket", "platform"): "ops-email",
    ("ticket", "customer-service"): "customer-service-email",
    ("ticket", "quality"): "quality-email",
}


def tool(name: str) -> str:
    binary = shutil.which(name) or shutil.which(f"prometheus-{name}")  # Debian names the server prometheus-alertmanager
    if binary is None:
        pytest.fail(f"{name} is missing: run `aftersales infra up` (it installs Debian's prometheus-alertmanager)")
    return binary


def amtool(*args: str, config: Path = ALERTMANAGER) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("amtool"), *args, f"--config.file={config}"] if args[0] == "config" else
                          [tool("amtool"), *args, str(config)], capture_output=True, text=True, timeout=60)


def route(labels: dict[str, str], config: Path = ALERTMANAGER) -> str:
    result = amtool("config", "routes", "test", *(f"{k}={v}" for k, v in sorted(labels.items())), config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def receivers(config: Path = ALERTMANAGER) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in yaml.safe_load(config.read_text())["receivers"]}


def test_the_configuration_loads() -> None:
    result = amtool("check-config")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    assert f"{len(receivers())} receivers" in result.stdout


def test_every_alert_rule_reaches_its_receiver_by_severity_and_team() -> None:
    seen = set()
    for rule in rules():
        labels = {"alertname": rule["alert"], **{k: str(v) for k, v in rule["labels"].items()}}
        key = (labels["severity"], labels["team"])
        assert key in EXPECTED, f"{rule['alert']}: no routing decided for severity/team {key}"
        assert route(labels) == EXPECTED[key], rule["alert"]
        seen.add(key)
    assert seen == set(EXPECTED), f"routes no rule uses: {set(EXPECTED) - seen}"


def test_critical_pages_go_by_e_mail_and_webhook_and_warnings_by_e_mail_only() -> None:
    by_name = receivers()
    # The names operators elsewhere use mean the same here.
    assert route({"alertname": "X", "severity": "critical"}) == "on-call"
    assert route({"alertname": "X", "severity": "warning", "team": "quality"}) == "quality-email"
    on_call = by_name["on-call"]
    assert on_call["email_configs"] and on_call["webhook_configs"]
    for name in {"ops-email", "customer-service-email", "quality-email"}:
        assert by_name[name]["email_configs"] and "webhook_configs" not in by_name[name], name
    # Nothing is dropped: an alert without a known severity still reaches ops by e-mail.
    assert route({"alertname": "Unlabelled"}) == "ops-email"
    assert all(r.get("email_configs") for r in by_name.values())


def test_a_route_test_fails_when_a_page_would_only_be_mailed(tmp_path: Path) -> None:
    # The check can fail: the same file with the page route sent to ops' mailbox is caught.
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(ALERTMANAGER.read_text().replace("      receiver: on-call\n", "      receiver: ops-email\n", 1))
    result = amtool("config", "routes", "test", "--verify.receivers=on-call", "severity=page", "team=platform",
                    config=broken)
    assert result.returncode != 0 and "ops-email" in result.stdout


def test_prometheus_sends_its_alerts_to_alertmanager() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    expected = {"prometheus.yml": "alertmanager:9093", "prometheus.local.yml": "127.0.0.1:9093"}
    for name, target in expected.items():
        config = yaml.safe_load((PROMETHEUS / name).read_text())
        targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
        assert targets == [target], name
    service = compose["alertmanager"]
    assert "9093" in service["expose"] and "./deploy/alertmanager:/etc/alertmanager:ro" in service["volumes"]
    # The compose stack replaces the file's defaults with its SMTP settings and webhook: both are there to replace.
    text = ALERTMANAGER.read_text()
    config = yaml.safe_load(text)
    assert config["global"]["smtp_smarthost"] == "mail:1025"
    assert service["environment"]["SMTP_SMARTHOST"] == "${AFTERSALES_SMTP_HOST:-mail}:${AFTERSALES_SMTP_PORT:-1025}"
    assert receivers()["on-call"]["webhook_configs"][0]["url"] == "http://sms-sink:8025/v1/alerts"
    command = service["command"][0]
    assert command.startswith("sh /etc/alertmanager/render.sh /etc/alertmanager/alertmanager.yml "
                              "/alertmanager/alertmanager.yml &&"), command
    assert "--config.file=/alertmanager/alertmanager.yml" in command
    # The same SMTP settings as the notifier's: relay, login, STARTTLS; the password to those two only.
    notifier = compose["notifier"]["environment"]
    assert service["environment"]["SMTP_USERNAME"] == notifier["AFTERSALES_SMTP_USERNAME"] == \
        "${AFTERSALES_SMTP_USERNAME:-}"
    assert service["environment"]["SMTP_PASSWORD"] == notifier["AFTERSALES_SMTP_PASSWORD"] == \
        "${AFTERSALES_SMTP_PASSWORD:-}"
    assert service["environment"]["SMTP_REQUIRE_TLS"] == "${AFTERSALES_SMTP_STARTTLS:-false}"
    assert notifier["AFTERSALES_SMTP_STARTTLS"] == "${AFTERSALES_SMTP_STARTTLS:-false}"
    holders = {name for name, svc in compose.items()
               if "${AFTERSALES_SMTP_PASSWORD:-}" in yaml.safe_dump(svc.get("environment", {}))}
    assert holders == {"notifier", "alertmanager"}, holders


# A relay password with everything a naive substitution would break on.
RELAY_PASSWORD = "p'a|s#s: \\w\"d&$x"


def render(tmp_path: Path, **env: str) -> Path:
    """deploy/alertmanager/render.sh as compose runs it, with these settings."""
    out = tmp_path / "alertmanager.yml"
    subprocess.run(["sh", str(ALERTMANAGER.parent / "render.sh"), str(ALERTMANAGER), str(out)], check=True,
                   env={"PATH": "/usr/bin:/bin", **env}, timeout=30)
    return out


def test_the_rendered_file_carries_the_relay_settings_exactly_and_still_loads(tmp_path: Path) -> None:
    plain = render(tmp_path)
    assert plain.read_text() == ALERTMANAGER.read_text(), "without settings, the file's defaults"
    out = render(tmp_path, SMTP_SMARTHOST="smtp.example.com:587", SMTP_USERNAME="alerts@example.com",
                 SMTP_PASSWORD=RELAY_PASSWORD, SMTP_REQUIRE_TLS="true",
                 WEBHOOK_URL="https://chat.example.com/hooks/on-call?a=1&b='2'")
    config = yaml.safe_load(out.read_text())
    assert {k: config["global"][k] for k in ("smtp_smarthost", "smtp_auth_username", "smtp_auth_password",
                                             "smtp_require_tls")} == {
        "smtp_smarthost": "smtp.example.com:587", "smtp_auth_username": "alerts@example.com",
        "smtp_auth_password": RELAY_PASSWORD, "smtp_require_tls": True}
    hook = next(r for r in config["receivers"] if r["name"] == "on-call")["webhook_configs"][0]["url"]
    assert hook == "https://chat.example.com/hooks/on-call?a=1&b='2'"
    result = amtool("check-config", config=out)
    assert result.returncode == 0, result.stdout + result.stderr
    # the routes are the file's: a page still reaches the on-call
    routed = amtool("config", "routes", "test", "severity=page", "team=platform", config=out)
    assert routed.stdout.strip() == "on-call", routed.stdout + routed.stderr


async def test_a_real_alertmanager_logs_in_to_the_relay_with_the_rendered_settings(tmp_path: Path) -> None:
    """A relay that refuses mail without a login: the page arrives only because the rendered
    file logs in with the stack's username and password."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins: list[tuple[str, bool]] = []
    received: list[Any] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"alerts@example.com", RELAY_PASSWORD.encode())
        logins.append((mechanism, ok))
        return AuthResult(success=ok)

    class Relay:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    smtp_port, port = free_port(), free_port()
    # PLAIN only: aiosmtpd's LOGIN prompts "User Name", which Alertmanager does not take for "Username:"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # AUTH without TLS: on loopback, for the test
        relay = Controller(Relay(), hostname="127.0.0.1", port=smtp_port, authenticator=authenticator,
                           auth_required=True, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"])
    relay.start()
    config = render(tmp_path, SMTP_SMARTHOST=f"127.0.0.1:{smtp_port}", SMTP_USERNAME="alerts@example.com",
                    SMTP_PASSWORD=RELAY_PASSWORD, WEBHOOK_URL="http://127.0.0.1:9/unused")
    config.write_text(config.read_text().replace("group_wait: 10s", "group_wait: 1s"))
    process = subprocess.Popen(
        [tool("alertmanager"), f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "alertmanager.log").open("wb"))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
                await asyncio.sleep(0.2)
            page = {"labels": {"alertname": "ServiceDown", "severity": "page", "team": "platform", "job": "intake"},
                    "annotations": {"summary": "intake is down"}}
            assert (await client.post("/api/v2/alerts", json=[page])).status_code == 200
            deadline = time.monotonic() + 40
            while not received:
                assert time.monotonic() < deadline, (logins, (tmp_path / "alertmanager.log").read_text())
                await asyncio.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=15)
        relay.stop()
    assert logins and all(ok for _, ok in logins), logins
    assert received[0].rcpt_tos == ["oncall@aftersales.local"] and b"ServiceDown" in received[0].content


async def test_a_real_alertmanager_mails_a_page_and_a_ticket_and_posts_only_the_page(tmp_path: Path) -> None:
    store = PeerStore()
    mail = MailSink(store).start()
    hook = await SmsGatewaySink(store).start()
    port = free_port()
    # The deployed file, pointed at this test's peers the way compose points it at its own, with
    # the waits shortened so the first notification leaves within seconds.
    text = (ALERTMANAGER.read_text()
            .replace("mail:1025", f"127.0.0.1:{mail.port}")
            .replace("http://sms-sink:8025/v1/alerts", f"http://127.0.0.1:{hook.port}/v1/alerts")
            .replace("group_wait: 30s", "group_wait: 1s").replace("group_wait: 10s", "group_wait: 1s"))
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    process = subprocess.Popen(
        [tool("alertmanager"), f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "alertmanager.log").open("wb"))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
                await asyncio.sleep(0.2)
            alerts = [
                {"labels": {"alertname": "ServiceDown", "severity": "page", "team": "platform", "job": "followup"},
                 "annotations": {"summary": "followup is down"}},
                {"labels": {"alertname": "SatisfactionBelowTarget", "severity": "ticket", "team": "customer-service",
                            "job": "followup-kpi"},
                 "annotations": {"summary": "Service satisfaction is 96 %"}},
            ]
            assert (await client.post("/api/v2/alerts", json=alerts)).status_code == 200
            deadline = time.monotonic() + 40
            while not ({"oncall@aftersales.local", "customer-service-supervisors@aftersales.local"}
                       <= {to for m in store.mails for to in m.rcpt_to} and store.alerts):
                assert time.monotonic() < deadline, (store.mails, store.alerts, (tmp_path / "alertmanager.log").read_text())
                await asyncio.sleep(0.3)
            await asyncio.sleep(2)  # anything else that was going to arrive
    finally:
        process.terminate()
        process.wait(timeout=15)
        await hook.stop()
        mail.stop()
    subjects = {to: m.subject for m in store.mails for to in m.rcpt_to}
    assert "ServiceDown" in subjects["oncall@aftersales.local"]
    assert "SatisfactionBelowTarget" in subjects["customer-service-supervisors@aftersales.local"]
    assert set(subjects) == {"oncall@aftersales.local", "customer-service-supervisors@aftersales.local"}
    posted = [a["labels"]["alertname"] for n in store.alerts for a in n["alerts"]]
    assert posted == ["ServiceDown"], "only the page goes to the webhook"
    assert store.alerts[0]["receiver"] == "on-call" and store.alerts[0]["status"] == "firing"
