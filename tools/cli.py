"""The tools' commands, added to `aftersales` when the tools are installed: `demo`, `bench …`,
`faults`, `docs` and `peers` (the local SMTP and SMS-gateway sinks `infra up` starts)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
tools = typer.Typer()
bench_app = typer.Typer(help="Benchmarks, reported as ratios against a baseline measured in the same run.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the tools' commands to the product's `aftersales` command."""
    for command in tools.registered_commands:
        app.registered_commands.append(command)
    app.add_typer(bench_app, name="bench")


@tools.command("docs")
def docs(
    out: Annotated[Path | None, typer.Option(help="the docs directory to write into (default: docs/ of the repository)")]
    = None,
    check: Annotated[bool, typer.Option("--check", help="change nothing; exit 1 if a document is stale")] = False,
    release: Annotated[str | None, typer.Option(help="freeze the current event schemas as this release "
                                                     "(docs/schemas/releases/<release>/, never rewritten)")] = None,
) -> None:
    """Write the generated documents under docs/: every service's OpenAPI (FastAPI) and AsyncAPI
    (FastStream) document in api/, the JSON Schema of every event type and version in schemas/,
    and the catalog and business-rule pages (events-catalog.md, rules.md)."""
    from tools import apidocs, eventschemas, generated_pages

    root = out or apidocs.DOCS_DIR.parent
    directory, schemas = root / "api", root / "schemas"
    if release:
        console.print(f"{eventschemas.snapshot(release, schemas)}: the event schemas of release {release}")
        return
    if check:
        stale = [f"api/{name}" for name in apidocs.stale(directory)] + eventschemas.stale(schemas) \
            + generated_pages.stale(root)
        if stale:
            console.print(f"[red]stale in {root}:[/red] {', '.join(stale)}; run `aftersales docs` and commit them")
            raise typer.Exit(1)
        console.print(f"{root}: every document is current")
        return
    changed = apidocs.write(directory) + eventschemas.write(schemas) + generated_pages.write(root)
    console.print(f"{root}: {len(changed)} document(s) written" if changed else f"{root}: already current")


@tools.command("peers", hidden=True)
def peers(
    dir: Annotated[Path, typer.Option(help="where received messages are kept")] = Path(".local/peers"),
    smtp_port: int = 1025,
    http_port: int = 8025,
    host: Annotated[str, typer.Option(envvar="AFTERSALES_PEERS_HOST")] = "127.0.0.1",
) -> None:
    """Run the local SMTP server and SMS-gateway sink (started by `infra up`)."""
    from services.notifier.app import load_notifier_settings
    from tools.peers import run_peers

    notifier = load_notifier_settings()
    asyncio.run(run_peers(dir, smtp_port, http_port, notifier.sms_api_key.get_secret_value() or None, host))


# --- demo ----------------------------------------------------------------------------------
@tools.command("demo")
def demo(
    days: Annotated[int, typer.Option(help="days of traffic, ending yesterday", min=1, max=90)] = 30,
    vehicles: Annotated[int, typer.Option(help="vehicles sold before the month", min=100)] = 5000,
    dealers: Annotated[int, typer.Option(help="dealers in the network", min=1)] = 20,
    pickups_per_day: Annotated[float, typer.Option(help="vehicles picked up after service per day")] = 35.0,
    seed: Annotated[int | None, typer.Option(help="random seed (default: the time)")] = None,
    until: Annotated[datetime | None, typer.Option(
        help="the day after the month's last (YYYY-MM-DD; default: today in China)", formats=["%Y-%m-%d"])] = None,
) -> None:
    """A month of a dealer network through the live services: sales, pickups, receipts, complaints,
    defects with one bad batch, a campaign; agents, complaint handlers and quality engineers
    working through the APIs; then the KPIs and where to look."""
    from tools.demo import Plan, run

    plan = Plan(days=days, vehicles=vehicles, dealers=dealers, pickups_per_day=pickups_per_day,
                until=until.date() if until else None)
    if seed is not None:
        plan.seed = seed
    asyncio.run(run(plan))


# --- bench ---------------------------------------------------------------------------------
@bench_app.command("pipeline")
def bench_pipeline(
    events: Annotated[int, typer.Option(help="pickups to publish")] = 50_000,
    rate: Annotated[float, typer.Option(help="events/s to publish at; 0 = as fast as possible")] = 0,
    profile: Annotated[bool, typer.Option("--profile", help="py-spy each service during the full-speed pass")] = False,
    steady: Annotated[str, typer.Option(help="steady feeds, as fractions of the backlog rate (comma-separated; "
                                             "empty: none)")] = "0.8,0.9,1.0",
) -> None:
    """VehiclePickedUp on upstream.dms → FollowUpScheduled on aftersales.followup, beside two
    baselines on the same broker: an aiokafka pass-through and two hops with the guarantees only."""
    from tools.bench.pipeline import run

    fractions = tuple(float(f) for f in steady.split(",") if f.strip())
    asyncio.run(run(events, rate=rate, profile=profile, steady=fractions))


@bench_app.command("console")
def bench_console(
    customers: Annotated[int, typer.Option(help="customers in the read model", min=100)] = 100_000,
    events: Annotated[int, typer.Option(help="events on the topics the console reads", min=1_000)] = 1_000_000,
    requests: Annotated[int, typer.Option(help="timed requests per page", min=10)] = 200,
    seed: Annotated[int, typer.Option(help="random seed")] = 17,
    keep: Annotated[bool, typer.Option("--keep", help="keep the scratch database and topics afterwards")] = False,
) -> None:
    """The console's pages (desk queue, customer page, search) timed on the server with
    100,000 customers and 1,000,000 events loaded, beside the /health route of the same run."""
    from tools.bench.console import run

    run(customers=customers, events=events, requests=requests, seed=seed, keep=keep)


@bench_app.command("quality")
def bench_quality(
    vehicles: Annotated[int, typer.Option(help="vehicles in each simulated fleet")] = 100_000,
    sales_months: Annotated[int, typer.Option(help="months over which the fleet is sold")] = 12,
    months: Annotated[int, typer.Option(help="months observed from the first sale")] = 18,
    null_fleets: Annotated[int, typer.Option(help="fleets without a problem (false alarms)")] = 20,
    batches: Annotated[int, typer.Option(help="shifted batches per shift size (2x, 3x, 5x) and kind of fleet "
                                              "(excess in one failure mode / spread)")] = 1_200,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same table")] = 20261120,
) -> None:
    """Quality early warning on simulated fleets (vectorised): false alarms per cell-month and
    detection delay of 2x, 3x and 5x batch problems, with the service's own detector and settings."""
    from tools.bench.quality import run

    run(vehicles=vehicles, sales_months=sales_months, horizon_months=months, null_fleets=null_fleets,
        batches=batches, seed=seed)


@bench_app.command("backfill")
def bench_backfill(
    orders: Annotated[int, typer.Option(help="historical repair orders to import", min=1_000)] = 1_000_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 11,
    keep: Annotated[bool, typer.Option("--keep", help="keep the scratch database and topics afterwards")] = False,
) -> None:
    """A DMS import of historical repair orders through intake and followup (processes, real
    broker and database): minutes taken, beside the pass-through baseline of the same run."""
    from tools.bench.backfill import run

    run(orders, seed=seed, keep=keep)


@bench_app.command("audit")
def bench_audit(
    events: Annotated[int, typer.Option(help="events on the log", min=10_000)] = 1_000_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 20261129,
    keep: Annotated[bool, typer.Option("--keep", help="keep the scratch topics afterwards")] = False,
) -> None:
    """The trail of one VIN among a million events (checked: none missing, none extra), beside a
    scan of every partition of the same topics in the same run."""
    from tools.bench.audit import run

    run(events, seed=seed, keep=keep)


@bench_app.command("intake")
def bench_intake(
    events: Annotated[int, typer.Option(help="pickups to publish")] = 100_000,
    rate: Annotated[float, typer.Option(help="events/s to publish at; 0 = as fast as possible")] = 0,
) -> None:
    """Intake alone: VehiclePickedUp on upstream.dms → canonical VehiclePickedUp on aftersales.intake,
    beside an aiokafka consume→produce pass-through baseline on the same broker."""
    from tools.bench.intake import run

    asyncio.run(run(events, rate=rate))


# --- faults --------------------------------------------------------------------------------
@tools.command("faults")
def faults(
    events: Annotated[int, typer.Option(help="upstream records to publish, valid and bad", min=500)] = 20_000,
    replicas: Annotated[int, typer.Option(help="replicas of every service", min=1, max=4)] = 1,
    kills: Annotated[int, typer.Option(help="SIGKILLs of every service during the run", min=0)] = 3,
    rate: Annotated[float, typer.Option(help="records/s to publish; 0 = events / 100 s")] = 0,
    seed: Annotated[int | None, typer.Option(help="random seed (default: random; the report names it)")] = None,
    quiet_timeout: Annotated[float, typer.Option(help="seconds to wait for the system to be quiet")] = 1800,
    keep: Annotated[bool, typer.Option("--keep", help="keep the run's database and topics when it passes")] = False,
) -> None:
    """Fault injection on a private broker and database: upstream traffic while every service is
    SIGKILLed and restarted, Kafka and Postgres restarted once; then the invariants (exit 1 if one fails)."""
    from aftersales.infra import InfraError
    from tools import faults as suite

    options = suite.FaultOptions(events=events, replicas=replicas, kills=kills, rate=rate, seed=seed,
                                 quiet_timeout=quiet_timeout, keep=keep)
    try:
        report = suite.run(options)
    except InfraError as exc:
        console.print(f"[red]fault run failed to set up:[/red] {exc}")
        raise typer.Exit(2) from None
    if not report.ok:
        raise typer.Exit(1)
