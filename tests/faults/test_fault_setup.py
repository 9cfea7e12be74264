"""The fault suite's traffic and its private infrastructure, without starting anything: the
stream holds what the invariants assume (every valid record valid, every bad record refused,
dependents after what they depend on), and the private broker and database can never be the
shared ones."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from aftersales.infra import DEPLOY, InfraError, Kafka, Paths, Postgres
from services.intake.config import IntakeRules
from services.intake.domain import FileSet, Rejected
from services.intake.handlers import precheck
from shared.events import InvalidRecord, decode
from shared.settings import load_settings
from tools.faults import BAD_KINDS, FaultInfra, FaultOptions, build_traffic, daytime_offset, next_victim

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
# Refused by intake's handlers (domain rules), not by decoding. The first two need nothing on
# file and are checked here; the other two are decided against the records before them (a
# shipment's lines, a repair order's pickup), which the fault run's checks cover.
HANDLER_REFUSALS = {"vin_check_digit", "in_the_future", "discrepancy_not_a_line", "receipt_before_pickup"}
NEEDS_FILES = {"discrepancy_not_a_line", "receipt_before_pickup"}
# The latest moment the services' clock reads while the traffic is fed (the window the
# complaints' deadlines are placed in, below).
RUN_ENDS = T0 + timedelta(seconds=60 + 30)


@pytest.fixture(scope="module")
def traffic():  # type: ignore[no-untyped-def]
    return build_traffic(3000, seed=11, t0=T0, publish_seconds=60)


def test_the_stream_has_the_size_asked_for_and_every_group_of_the_mix(traffic) -> None:  # type: ignore[no-untyped-def]
    groups = traffic.by_group
    assert len(traffic.items) == 3000
    assert {"sale.new", "sale.of_pickup", "pickup.recent", "pickup.old", "pickup.worked", "receipt", "shipment",
            "discrepancy", "defect", "complaint.crm", "campaign", "customer_update", "bad"} == set(groups)
    assert {i.topic for i in traffic.items} == {"upstream.sales", "upstream.dms", "upstream.erp", "upstream.crm"}
    assert len({i.digest for i in traffic.items}) == 3000, "every record is told apart by its content"
    assert len({i.event_id for i in traffic.items if i.valid}) == sum(1 for i in traffic.items if i.valid)


def test_every_valid_record_decodes_and_passes_intakes_checks(traffic) -> None:  # type: ignore[no-untyped-def]
    rules = IntakeRules()
    for item in (i for i in traffic.items if i.valid):
        event = decode(item.value, item.topic, strict_types=True, check_key=True)
        precheck(event.event_type, event.data, rules)
        assert event.occurred_at <= T0 + timedelta(hours=1), item.kind


def test_every_bad_record_is_refused_by_decoding_or_by_a_named_handler_rule(traffic) -> None:  # type: ignore[no-untyped-def]
    rules = IntakeRules()
    kinds = Counter()
    for item in (i for i in traffic.items if not i.valid):
        kinds[item.kind] += 1
        if item.kind in NEEDS_FILES:
            continue
        if item.kind not in HANDLER_REFUSALS:
            with pytest.raises(InvalidRecord):
                decode(item.value, item.topic, strict_types=True, check_key=True)
            continue
        event = decode(item.value, item.topic, strict_types=True, check_key=True)  # decodes: refused by a rule
        with pytest.raises(Rejected) as refused:
            precheck(event.event_type, event.data, rules)
            files = FileSet(future_tolerance=timedelta(hours=rules.future_tolerance_hours))
            files.apply_pickup(event.data, RUN_ENDS)  # a pickup with nothing on file: only its own dates decide
        expected = {"vin_check_digit": "data.vin", "in_the_future": "data.picked_up_at"}[item.kind]
        assert refused.value.reason.startswith(expected), (item.kind, refused.value.reason)
        if item.kind == "in_the_future":
            assert "is in the future" in refused.value.reason
    assert set(kinds) == {k for k, _ in BAD_KINDS}, "every kind of damage is in the stream"
    assert kinds["vin_check_digit"] and kinds["in_the_future"]


def test_a_record_that_depends_on_another_comes_after_it(traffic) -> None:  # type: ignore[no-untyped-def]
    position = {}
    for n, item in enumerate(traffic.items):
        if not item.valid:
            continue
        data = orjson.loads(item.value)["data"]
        if item.kind == "PartShipped":
            position[("shipment", data["shipment_id"])] = n
        elif item.kind == "VehiclePickedUp":
            position[("ro", data["repair_order_id"])] = n
    for n, item in enumerate(traffic.items):
        if item.kind in ("PartShipmentDiscrepancy", "discrepancy_not_a_line"):
            assert position[("shipment", orjson.loads(item.value)["data"]["shipment_id"])] < n
        if item.kind in ("ReceiptReturned", "receipt_before_pickup"):
            assert position[("ro", orjson.loads(item.value)["data"]["repair_order_id"])] < n


def test_crm_complaints_come_due_during_the_run_and_agents_pickups_are_due_for_a_call(traffic) -> None:  # type: ignore[no-untyped-def]
    lags = {"acknowledge": timedelta(hours=4), "resolve": timedelta(days=2), "superior_leader": timedelta(days=3)}
    for item in (i for i in traffic.items if i.group == "complaint.crm"):
        due = datetime.fromisoformat(item.extra["filed_at"]) + lags[item.extra["lag_name"]]
        assert T0 < due <= T0 + timedelta(seconds=60 + 30)
    for item in traffic.worked:
        picked = datetime.fromisoformat(orjson.loads(item.value)["data"]["picked_up_at"])
        assert picked + timedelta(days=3) < T0 < picked + timedelta(days=7), "due now, not overdue"


def test_the_same_seed_makes_the_same_stream() -> None:
    a, b = (build_traffic(600, seed=5, t0=T0, publish_seconds=10) for _ in range(2))
    assert [(i.topic, i.kind, i.group) for i in a.items] == [(i.topic, i.kind, i.group) for i in b.items]


def test_a_stream_too_small_for_the_mix_is_refused_with_the_minimum() -> None:
    with pytest.raises(ValueError, match="at least 500"):
        build_traffic(100, seed=1, t0=T0, publish_seconds=10)


def test_the_publish_rate_defaults_to_a_hundred_seconds_of_traffic() -> None:
    assert FaultOptions(events=20_000).publish_rate() == 200
    assert FaultOptions(events=1_000).publish_rate() == 25
    assert FaultOptions(events=1_000, rate=80).publish_rate() == 80


@pytest.mark.parametrize(("utc", "shift_hours"), [("2026-11-20T02:00", 0.0), ("2026-11-20T10:00", 15.5),
                                                  ("2026-11-20T22:30", 3.0)])
def test_the_services_clock_runs_inside_daytime_in_china(utc: str, shift_hours: float) -> None:
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert daytime_offset(now) == shift_hours * 3600


def test_the_default_broker_properties_are_the_template_with_its_data_folder(tmp_path: Path) -> None:
    kafka = Kafka(load_settings(kafka_bootstrap="127.0.0.1:9092", kafka_controller_port=9093,
                                kafka_security_protocol="PLAINTEXT"), Paths(tmp_path))
    template = (DEPLOY / "kafka" / "server.plaintext.properties").read_text()
    assert kafka.template.read_text() == template
    assert kafka.render_properties(template) == template.replace("${LOG_DIRS}", str(kafka.data))
    assert kafka.address == "127.0.0.1:9092 (controller 127.0.0.1:9093)"


def test_a_private_broker_listens_on_its_own_ports_and_keeps_its_own_data(tmp_path: Path) -> None:
    private = Paths(tmp_path, local_dir=tmp_path / ".local" / "faults")
    kafka = Kafka(load_settings(kafka_bootstrap="127.0.0.1:19092"), private, controller_port=19093,
                  libs=tmp_path / "libs")
    text = kafka.render_properties(kafka.template.read_text())  # SASL_SSL or the PLAINTEXT dev broker
    protocol = "SASL_SSL" if kafka.secure else "PLAINTEXT"
    assert f"listeners={protocol}://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert "controller.quorum.voters=1@127.0.0.1:19093" in text
    assert f"advertised.listeners={protocol}://127.0.0.1:19092" in text
    assert ":9092" not in text.replace(":19092", "") and ":9093" not in text.replace(":19093", "")
    assert kafka.data == tmp_path / ".local" / "faults" / "kafka" / "data"
    assert kafka.pid_file == tmp_path / ".local" / "faults" / "run" / "kafka.pid"
    assert kafka.libs == tmp_path / "libs"


@pytest.mark.parametrize("ports", [{"kafka_port": 9092}, {"controller_port": 9093}, {"postgres_port": 5432}])
def test_the_fault_suite_refuses_the_shared_ports(tmp_path: Path, ports: dict[str, int]) -> None:
    with pytest.raises(InfraError, match="must not use the shared"):
        FaultInfra(tmp_path, **ports)


def test_the_fault_suite_keeps_its_state_apart_from_infra_up(tmp_path: Path) -> None:
    infra = FaultInfra(tmp_path)
    assert infra.postgres.cluster == "faults" and infra.postgres.port == 15432
    assert infra.kafka.port == 19092 and infra.kafka.controller_port == 19093
    assert infra.postgres.state_file == tmp_path / ".local" / "faults" / "run" / "postgres.json"
    assert infra.kafka.data.is_relative_to(tmp_path / ".local" / "faults")


def _clusters(*rows: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"version": v, "name": n, "port": p, "status": "online"} for v, n, p in rows]


def test_each_postgres_instance_finds_only_its_own_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _clusters(("15", "faults", "15432"), ("15", "main", "5432"))
    monkeypatch.setattr(Postgres, "_clusters", lambda self: rows)
    shared = Postgres(load_settings(database_url="postgresql://postgres@127.0.0.1:5432/aftersales"), Paths(tmp_path))
    private = Postgres(load_settings(database_url="postgresql://postgres@127.0.0.1:15432/x"), Paths(tmp_path),
                       cluster="faults")
    assert shared._find_cluster("15")["name"] == "main"  # not `faults`, which pg_lsclusters lists first
    assert private._find_cluster("15")["name"] == "faults"
    rows[:] = _clusters(("15", "main", "5432"))
    assert private._find_cluster("15") is None, "the private cluster is created, never borrowed"
    rows[:] = _clusters(("15", "default", "5432"))
    assert shared._find_cluster("15")["name"] == "default", "infra up still adopts a default cluster on its port"


def test_only_the_last_runs_reports_and_logs_are_kept(tmp_path: Path) -> None:
    infra = FaultInfra(tmp_path)
    for n in range(25):
        (infra.runs_dir / f"20261120-1000{n:02d}-abcdef").mkdir(parents=True)
    infra._prune_runs(keep=20)
    kept = sorted(p.name for p in infra.runs_dir.iterdir())
    assert len(kept) == 20 and kept[0] == "20261120-100005-abcdef"


class _Replica:
    def __init__(self, name: str) -> None:
        self.name, self.up = name, True

    def alive(self) -> bool:
        return self.up


@pytest.mark.parametrize("seed", range(50))
def test_a_services_kills_are_spread_over_its_replicas(seed: int) -> None:
    # a CI run once drew the same replica twice for every service, so "both replicas were hit" failed
    rng, kills = random.Random(seed), Counter[str]()
    replicas = [_Replica("quality#0"), _Replica("quality#1")]
    for _ in range(4):
        victim = next_victim(replicas, kills, rng)  # type: ignore[arg-type]
        assert victim is not None
        kills[victim.name] += 1
    assert kills == {"quality#0": 2, "quality#1": 2}


def test_the_next_kill_waits_for_the_replica_not_hit_yet_rather_than_hitting_one_twice() -> None:
    rng, kills = random.Random(1), Counter({"intake#0": 1})
    replicas = [_Replica("intake#0"), _Replica("intake#1")]
    replicas[1].up = False
    assert next_victim(replicas, kills, rng) is None  # type: ignore[arg-type]
    replicas[1].up = True
    assert next_victim(replicas, kills, rng) is replicas[1]  # type: ignore[arg-type]
    single = [_Replica("notifier#0")]
    assert next_victim(single, Counter({"notifier#0": 5}), rng) is single[0]  # type: ignore[arg-type]
