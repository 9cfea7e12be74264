"""The Prometheus files under deploy/prometheus, checked by Debian's promtool (installed by
`aftersales infra up`): the scrape configs and the rules load, and the alert rules fire,
and stay quiet, as alerts.test.yml expects on synthetic series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run `aftersales infra up` (it installs Debian's prometheus package)")
    result = subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_the_alert_rules_load() -> None:
    out = promtool("check", "rules", "alerts.yml")
    rules = (PROMETHEUS / "alerts.yml").read_text().count("- alert: ")
    assert rules >= 14 and f"SUCCESS: {rules} rules found" in out


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_the_scrape_configs_load_with_their_rules(config: str) -> None:
    out = promtool("check", "config", config)
    assert "is valid prometheus config file syntax" in out and "SUCCESS: 1 rule files found" in out


def test_the_alert_rules_fire_only_as_their_unit_tests_expect() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


def test_a_rule_unit_test_that_expects_the_wrong_alert_fails(tmp_path: Path) -> None:
    # The unit tests can fail: the same rules with a 'for' one hour longer break them.
    shutil.copy(PROMETHEUS / "alerts.test.yml", tmp_path / "alerts.test.yml")
    rules = (PROMETHEUS / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(rules.replace("for: 2h", "for: 3h"))
    result = subprocess.run([shutil.which("promtool") or "promtool", "test", "rules", "alerts.test.yml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "SatisfactionBelowTarget" in result.stdout + result.stderr
