"""Debian's Prometheus scraping the running services during an end-to-end run: real service
processes on the real broker and database, upstream traffic, an agent working the call queue
through the follow-up API, then the KPI gauges read back through Prometheus's HTTP API with
the values that traffic must give, the alert rules of deploy/prometheus evaluated on them,
and every Grafana panel's query answered."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.clock import offset_to
from tests.support import API_TOKENS, TOKENS, Namespace, ServiceProcess, day_at, publish, working_day
from tests.unit.test_deploy_metrics import DASHBOARDS, dashboard_queries
from tools.sandbox import free_port
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
SERVICES = ("intake", "followup", "complaints", "quality")


class Prometheus:
    """Debian's `prometheus` binary with the project's local scrape config and alert rules,
    pointed at this test's service ports, scraping and evaluating every second."""

    def __init__(self, ports: dict[str, int], workdir: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("Debian's prometheus is missing: run `aftersales infra up` (it installs the package)")
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.local.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
        config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        config["scrape_configs"] = [
            {**jobs[name], "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]} for name, port in ports.items()
        ]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    async def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log.read_text()}")
                try:
                    if (await client.get(f"{self.url}/-/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"prometheus not ready within {timeout}s:\n{self.log.read_text()}")

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = (await client.get(f"{self.url}/api/v1/query", params={"query": expr})).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]["result"]  # type: ignore[no-any-return]

    async def value(self, expr: str) -> float | None:
        result = await self.query(expr)
        assert len(result) <= 1, f"{expr} gives {len(result)} series: {result}"
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


async def eventually(check: Any, timeout: float, what: str) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}")


def grafana_free(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would for this stack."""
    return (expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
            .replace("$service", "|".join(SERVICES)))


def panel_queries() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        yield from dashboard_queries(path)


async def test_prometheus_reads_the_department_kpis_from_the_running_services(ns: Namespace, logs_dir: Path,
                                                                              tmp_path: Path) -> None:
    # The services live at 11:00 Shanghai time on the first working day from the test day, inside the
    # agents' calling hours of a calling day.
    service_now = day_at(11, days=working_day())
    env = {
        "AFTERSALES_CLOCK_OFFSET_SECONDS": f"{offset_to(service_now):.3f}",
        "AFTERSALES_KPI_REFRESH_SECONDS": "0.5", "AFTERSALES_API_TOKENS": API_TOKENS,
        "AFTERSALES_CONSUMER_POLL_TIMEOUT_MS": "50", "AFTERSALES_DB_POOL_MIN": "1", "AFTERSALES_DB_POOL_MAX": "4",
        "AFTERSALES_LOG_LEVEL": "WARNING",
    }
    processes = {name: ServiceProcess(ns, name, logs_dir, **env) for name in SERVICES}
    prometheus = Prometheus({name: p.port for name, p in processes.items()}, tmp_path / "prometheus")
    try:
        for process in processes.values():
            process.start()
        # Upstream traffic: four vehicles sold last year (under warranty), one whose sale never
        # arrived (not counted as under warranty; its file lacks the plate, so it is incomplete),
        # all picked up five days ago; a parts shipment of five lines, one of them short.
        fleet = Fleet(seed=88)
        sold = [fleet.vehicle(service_now - timedelta(days=300 + 10 * i)) for i in range(4)]
        unsold = fleet.vehicle(service_now - timedelta(days=400))
        picked_up_at = service_now - timedelta(days=5)
        pickups = [fleet.pickup(v, picked_up_at + timedelta(minutes=i)) for i, v in enumerate([*sold, unsold])]
        pickups[-1]["data"].pop("plate")
        shipment = fleet.shipment(sold[0].dealer_id, service_now - timedelta(days=2), lines=5)
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in sold])
        await publish(ns.settings, "upstream.dms", pickups)
        await publish(ns.settings, "upstream.erp", [
            shipment, fleet.discrepancy(shipment, 3, "short", service_now - timedelta(days=1))])

        for process in processes.values():
            process.wait_ready(timeout=90)
        await prometheus.wait_ready()

        # An agent works the queue through the follow-up API: three customers reached (scores
        # 5, 4 and 2 with a complaint), one whose number is wrong (a visit done but missed: it
        # counts against the warranty return-visit rate), one not called yet (not due: no miss).
        followup = f"http://127.0.0.1:{processes['followup'].port}"
        async with httpx.AsyncClient(base_url=followup, timeout=10,
                                     headers={"Authorization": f"Bearer {TOKENS['agent']}"}) as agent:

            async def queue() -> dict[str, str] | None:
                items = (await agent.get("/v1/queue", params={"kind": "first_visit"})).json()["items"]
                return {i["vin"]: i["followup_id"] for i in items} if len(items) == 5 else None

            by_vin = await eventually(queue, 45, "five first visits in the agents' queue")
            calls = [
                {"outcome": "reached", "satisfaction": 5, "talking_points": "all fine"},
                {"outcome": "reached", "satisfaction": 4, "requests": "car wash next time"},
                {"outcome": "reached", "satisfaction": 2, "categories": ["repair_quality"],
                 "complaint": {"category": "repair_quality", "description": "刹车异响，保养后出现"}},
                {"outcome": "wrong_number", "notes": "the number belongs to someone else"},
            ]
            for vehicle, call in zip(sold, calls, strict=True):
                followup_id = by_vin[vehicle.vin]
                assert (await agent.post(f"/v1/followups/{followup_id}/claim")).status_code == 200
                recorded = await agent.post(f"/v1/followups/{followup_id}/attempts", json=call)
                assert recorded.status_code == 201, recorded.text

        # What that traffic must give, read back through Prometheus's HTTP API.
        expected = {
            'aftersales_warranty_return_visit_rate{job="followup"}': 3 / 4,
            'aftersales_satisfaction_rate{job="followup"}': 2 / 3,
            'aftersales_followups_open{job="followup", kind="first_visit"}': 1,
            'aftersales_followups_open{job="followup", kind="second_visit"}': 3,
            'aftersales_followups_overdue{job="followup", kind="first_visit"}': 0,
            'aftersales_customer_files{job="intake"}': 5,
            'aftersales_customer_files_incomplete{job="intake"}': 1,
            'aftersales_complaints_open{job="complaints", level="handler"}': 1,
            'aftersales_parts_shipment_accuracy{job="quality"}': 4 / 5,
            'sum(aftersales_events_published_total{job="intake", topic=~".*aftersales.intake", event_type="VehiclePickedUp"})': 5,
            'sum(aftersales_http_requests_total{job="followup", route="/v1/followups/{followup_id}/attempts", status="201"})': 4,
        }

        async def values() -> dict[str, float | None]:
            return {expr: await prometheus.value(expr) for expr in expected}

        async def settled() -> dict[str, float | None] | None:
            got = await values()
            return got if all(v is not None and abs(v - expected[e]) < 1e-9 for e, v in got.items()) else None

        try:
            await eventually(settled, 45, "the KPI gauges in Prometheus")
        except AssertionError:
            got = await values()
            mismatches = {e: (got[e], want) for e, want in expected.items() if got[e] != pytest.approx(want)}
            raise AssertionError(f"Prometheus has (got, expected): {mismatches}") from None

        # The same figures as the follow-up API gives its supervisors.
        async with httpx.AsyncClient(base_url=followup, timeout=10,
                                     headers={"Authorization": f"Bearer {TOKENS['supervisor']}"}) as supervisor:
            figures = (await supervisor.get("/v1/kpis")).json()
        assert figures["warranty_return_visit_rate"] == await prometheus.value(
            'aftersales_warranty_return_visit_rate{job="followup"}')
        assert figures["satisfaction_rate"] == pytest.approx(await prometheus.value(
            'aftersales_satisfaction_rate{job="followup"}'))
        assert await prometheus.value('count(up{job=~"intake|followup|complaints|quality"} == 1)') == 4

        # deploy/prometheus/alerts.yml evaluates on these series: the three KPIs below target
        # are pending (for: 2h), and only for the job that owns each gauge.
        async def pending() -> set[tuple[str, str]] | None:
            alerts = await prometheus.query('ALERTS{alertstate="pending"}')
            found = {(a["metric"]["alertname"], a["metric"].get("job", "")) for a in alerts}
            wanted = {("WarrantyReturnVisitRateBelowTarget", "followup"), ("SatisfactionBelowTarget", "followup"),
                      ("PartsShipmentAccuracyBelowTarget", "quality")}
            return found if wanted <= found else None

        alerts = await eventually(pending, 15, "the KPI alerts pending")
        assert not {a for a in alerts if a[0].endswith("BelowTarget") and a[1] not in ("followup", "quality")}
        assert await prometheus.query('ALERTS{alertname=~"ServiceDown|DeadLettersArriving"}') == []

        # Every query of the Grafana dashboards parses and runs; the KPI panels show the figures.
        shown: dict[str, float | None] = {}
        for where, expr in panel_queries():
            result = await prometheus.query(grafana_free(expr))
            if re.search(r"panel '(Warranty return-visit rate|Service satisfaction|Parts-shipment accuracy|"
                         r"Customer files|Incomplete files)'", where):
                shown[where.split("'")[1]] = float(result[0]["value"][1]) if result else None
        assert shown == {"Warranty return-visit rate": 0.75, "Service satisfaction": pytest.approx(2 / 3),
                         "Parts-shipment accuracy": 0.8, "Customer files": 5, "Incomplete files": 1}
    finally:
        prometheus.stop()
        for process in processes.values():
            process.terminate(timeout=30)
