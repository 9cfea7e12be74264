"""The fault-injection run, short: two replicas of every service on the suite's own broker and
database, 1,500 upstream records (valid and bad) while every service is SIGKILLed twice and
restarted, Kafka is killed and restarted and Postgres crash-stopped and restarted; then every
invariant of `aftersales.faults.check`. About two and a half minutes. The full runs (20,000
records, one and two replicas, three kills per service) are `make test-faults`.

It never touches the shared broker or database: the suite runs its own (ports 19092/19093 and
15432, see aftersales/faults.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.settings import SERVICES
from tests.support import day_at
from tools import faults

pytestmark = [pytest.mark.infra, pytest.mark.slow, pytest.mark.dates]

def test_two_replicas_lose_nothing_and_do_nothing_twice_while_services_kafka_and_postgres_are_killed() -> None:
    # the services' day starts at 09:30 in Shanghai on the test day: inside the calling and SMS hours
    options = faults.FaultOptions(events=1_500, replicas=2, kills=2, rate=50, quiet_timeout=300, start=day_at(9, 30))
    report = faults.run(options)

    injected = report.stats.faults
    kills = Counter(f.target.split("#")[0] for f in injected if f.what == "SIGKILL")
    assert kills == {service: options.kills for service in SERVICES}, "every service was killed, as often as asked"
    assert len({f.target for f in injected if f.what == "SIGKILL"}) > len(SERVICES), "both replicas were hit"
    assert [f.what for f in injected if f.what in ("Kafka back", "Postgres back")] == ["Kafka back", "Postgres back"]
    assert report.stats.published == options.events and report.stats.quiet_after is not None
    assert len(report.invariants) == 12, "eleven invariants and the deliveries' first visits"

    where = f"(run {report.run_id}, seed {report.seed}, logs {report.logs})"
    broken = [f"{i.name}: {i.figures} | {'; '.join(i.problems)}" for i in report.failed()]
    assert not broken, "\n".join(broken) + f"\n{where}"
