"""Issue 19: start-up refuses default, placeholder or short secrets, unless a development flag is
set and everything listens on loopback; what `aftersales infra up` generates passes; `.env` is
never committed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aftersales.infra import ensure_secrets
from shared.settings import Settings, WeakSecrets, load_settings, refuse_weak_secrets, secret_problems

ROOT = Path(__file__).resolve().parents[2]
STRONG = "k3Jx9vQ2mW7pL0sT5yB8nR4cF6hD1gZa"  # 32 characters


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize("secret", ["replace-me", "changeme", "change-me", "aftersales",
                                    "replace-with-a-long-random-token-0123456789"])
def test_a_placeholder_or_default_is_refused_whatever_its_length(secret: str) -> None:
    problems = secret_problems(_settings(webhook_secrets=f"dms={secret}"))
    assert len(problems) == 1 and "producer dms" in problems[0] and "placeholder or default" in problems[0]


def test_a_short_secret_is_refused_and_the_message_names_where_not_what() -> None:
    settings = _settings(api_tokens="Qz8vN2kL5pR7xT1w=ops:ops-01", database_url="postgresql://svc:Pa55w0rdXYZ@db:5432/a")
    with pytest.raises(WeakSecrets) as refused:
        refuse_weak_secrets(settings)
    message = str(refused.value)
    assert "the token of ops:ops-01): it has 16 characters; a secret has at least 32" in message
    assert "the password in AFTERSALES_DATABASE_URL: it has 11 characters" in message
    assert "Qz8vN2kL5pR7xT1w" not in message and "Pa55w0rdXYZ" not in message, "a message never quotes a secret"
    assert "token_urlsafe(32)" in message


def test_the_compose_example_values_are_refused() -> None:
    example = dict(line.split("=", 1) for line in (ROOT / "deploy/compose.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    settings = _settings(api_tokens=example["AFTERSALES_API_TOKENS"], webhook_secrets=example["AFTERSALES_WEBHOOK_SECRETS"],
                         database_url=f"postgresql://aftersales:{example['POSTGRES_PASSWORD']}@postgres:5432/aftersales")
    problems = secret_problems(settings, {"AFTERSALES_SMS_API_KEY": example["AFTERSALES_SMS_API_KEY"]})
    assert len(problems) == 2 + 4 + 1 + 1, problems
    assert secret_problems(_settings(database_url="postgresql://aftersales:aftersales@postgres:5432/a")), \
        "compose's fallback database password"


def test_strong_secrets_pass() -> None:
    settings = _settings(api_tokens=f"{STRONG}=ops:ops-01", webhook_secrets=f"dms={STRONG[::-1]}",
                         database_url=f"postgresql://intake:{STRONG}@db:5432/aftersales")
    assert refuse_weak_secrets(settings, {"AFTERSALES_SMS_API_KEY": STRONG, "AFTERSALES_SMTP_PASSWORD": None}) == []


def test_the_development_flag_lets_weak_secrets_pass_only_on_loopback() -> None:
    weak = {"api_tokens": "agent-token=agent:agent-01", "dev_weak_secrets": True}
    assert refuse_weak_secrets(_settings(**weak)), "passes, and says what is weak (for the warning)"
    assert refuse_weak_secrets(_settings(**weak, http_host="::1", kafka_bootstrap="localhost:9092,127.0.0.1:9094"))
    for exposed in ({"http_host": "0.0.0.0"}, {"kafka_bootstrap": "kafka-1:9092"},
                    {"kafka_bootstrap": "127.0.0.1:9092,10.0.0.5:9092"}):
        with pytest.raises(WeakSecrets, match="only applies while AFTERSALES_HTTP_HOST and AFTERSALES_KAFKA_BOOTSTRAP"):
            refuse_weak_secrets(_settings(**weak, **exposed))


def test_what_infra_up_generates_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERSALES_HOME", str(tmp_path))
    for name in ("AFTERSALES_API_TOKENS", "AFTERSALES_WEBHOOK_SECRETS", "AFTERSALES_SMS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    ensure_secrets()
    settings = load_settings()
    assert len(settings.parsed_api_tokens()) == 9 and len(settings.parsed_webhook_secrets()) == 4
    assert secret_problems(settings) == []


def test_serve_exits_with_the_reason_before_connecting_to_anything(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AFTERSALES_HOME": str(tmp_path), "AFTERSALES_HTTP_HOST": "0.0.0.0",
           "AFTERSALES_API_TOKENS": "replace-me=ops:ops-01", "AFTERSALES_WEBHOOK_SECRETS": f"dms={STRONG}",
           "AFTERSALES_KAFKA_BOOTSTRAP": "127.0.0.1:1", "AFTERSALES_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}
    done = subprocess.run([sys.executable, "-m", "aftersales", "serve", "intake"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "refusing to start with default, placeholder or short secrets" in done.stderr
    assert "the token of ops:ops-01): it contains the placeholder or default 'replace-me'" in done.stderr


def test_dot_env_is_ignored_by_git() -> None:
    done = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert done.returncode == 0, ".env (compose's secrets) must be in .gitignore"
