"""`aftersales`: the one console script for developers and operations."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from aftersales.console_cli import console_app
from shared.settings import (
    PROCESSES,
    SERVICES,
    InsecureKafka,
    WeakSecrets,
    load_settings,
    refuse_plaintext_kafka,
    refuse_weak_secrets,
    secrets_file,
)

console = Console()
app = typer.Typer(help="Aftersales: the after-sales customer-service platform.", no_args_is_help=True)
infra_app = typer.Typer(help="Local Kafka (KRaft), Postgres and message peers, without Docker.", no_args_is_help=True)
app.add_typer(infra_app, name="infra")
app.add_typer(console_app, name="console")


def main() -> None:
    _add_tools()
    app()


def _add_tools() -> bool:
    """The tools' commands (demo, bench, faults, docs, peers) where the tools are installed: a
    checkout with `pip install '.[tools]'` (`make` does it), not the production image."""
    if getattr(app, "tools_added", False):
        return True
    try:
        from tools.cli import register
    except ImportError:
        return False
    register(app)
    app.tools_added = True  # type: ignore[attr-defined]
    return True


# --- infra ---------------------------------------------------------------------------------
@infra_app.command("up")
def infra_up() -> None:
    """Start Kafka, Postgres and the message peers; create the topics. Idempotent."""
    from aftersales import infra

    try:
        infra.up()
    except infra.InfraError as exc:
        console.print(f"[red]infra up failed:[/red] {exc}")
        raise typer.Exit(1) from None


@infra_app.command("topics")
def infra_topics() -> None:
    """Create the contract topics on the configured cluster (any cluster; idempotent) and bring
    existing ones to the configured retention (AFTERSALES_TOPIC_RETENTION_DAYS; each change logged)."""
    from shared.kafka.clients import ensure_topics, retention_summary

    settings = load_settings()
    created = asyncio.run(ensure_topics(settings))
    console.print(f"{len(created)} topics created" if created else "all topics present")
    console.print(f"retention {retention_summary(settings)}")


@infra_app.command("kafka-tls")
def infra_kafka_tls(
    folder: Annotated[str, typer.Option("--dir", help="the brokers' folder: ca.pem, ca.key, broker.pem")],
    host: Annotated[list[str], typer.Option("--host", help="a name the brokers are reached by (repeat)")],
    ca_copy: Annotated[str | None, typer.Option("--ca-copy", help="also put ca.pem here (the clients' folder)")] = None,
) -> None:
    """Generate Kafka's CA and broker keystore (PEM) once, for these host names (compose's kafka-tls job)."""
    import shutil
    from pathlib import Path

    from aftersales.kafka_tls import ensure_tls

    keystore = ensure_tls(Path(folder), host)
    keystore.chmod(0o644)  # the brokers' image runs as another user; only the brokers mount this folder
    if ca_copy:
        Path(ca_copy).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(folder) / "ca.pem", Path(ca_copy) / "ca.pem")
    console.print(f"kafka TLS in {folder}: ca.pem, {keystore.name} ({', '.join(sorted(host))}); ca.key stays 600")


@infra_app.command("kafka-acls")
def infra_kafka_acls(
    topic_prefix: Annotated[str | None, typer.Option(help="the topics' and groups' prefix (AFTERSALES_TOPIC_PREFIX)")] = None,
) -> None:
    """Print every ACL the principals need (shared/kafka/acls.py) as kafka-acls.sh commands, for a
    cluster whose operators create them (the Helm chart's). `infra topics` as a super user creates them itself."""
    from shared.kafka.acls import OPERATION_NAMES, TOPIC, acls

    settings = load_settings() if topic_prefix is None else load_settings(topic_prefix=topic_prefix)
    for rule in acls(settings):
        kind = "--topic" if rule.resource_type == TOPIC else "--group"
        typer.echo(f'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config admin.properties --add '
                   f"--allow-principal User:{rule.principal} --operation {OPERATION_NAMES[rule.operation].title()} "
                   f"{kind} {rule.resource}")


@infra_app.command("kafka-configs")
def infra_kafka_configs(
    topic_prefix: Annotated[str | None, typer.Option(help="the topics' prefix (AFTERSALES_TOPIC_PREFIX)")] = None,
) -> None:
    """Print each contract topic's configs (the retention of AFTERSALES_TOPIC_RETENTION_DAYS, the
    dead letters' record size) as kafka-configs.sh commands, for a cluster whose operators create the
    topics (the Helm chart's). `infra topics` as a super user sets them itself."""
    from shared.events import ALL_TOPICS
    from shared.kafka.clients import topic_config

    settings = load_settings() if topic_prefix is None else load_settings(topic_prefix=topic_prefix)
    for logical in ALL_TOPICS:
        configs = ",".join(f"{name}={value}" for name, value in topic_config(logical, settings).items())
        typer.echo(f'kafka-configs.sh --bootstrap-server "$BOOTSTRAP" --command-config admin.properties --alter '
                   f"--entity-type topics --entity-name {settings.topic(logical)} --add-config {configs}")


@infra_app.command("db-roles")
def infra_db_roles() -> None:
    """Create each service's Postgres role (AFTERSALES_DATABASE_ROLE_PASSWORDS) and hand it its
    schema, as AFTERSALES_DATABASE_URL's admin (compose's db-roles job; `infra up` does it too). Idempotent."""
    from aftersales import infra
    from shared.db import ensure_database
    from shared.db_roles import role_passwords

    settings = load_settings()
    if not role_passwords(settings):
        console.print("[red]AFTERSALES_DATABASE_ROLE_PASSWORDS names no role (service=password pairs)[/red]")
        raise typer.Exit(2)
    asyncio.run(ensure_database(settings))
    asyncio.run(infra.ensure_database_roles(settings))


@infra_app.command("down")
def infra_down() -> None:
    """Stop what `infra up` started."""
    from aftersales import infra

    infra.down()


@infra_app.command("status")
def infra_status() -> None:
    """Show each part, its address and state."""
    from aftersales import infra

    table = Table("part", "state", "address", "detail")
    rows = infra.status()
    for row in rows:
        table.add_row(row[0], f"[green]{row[1]}[/green]" if row[1] == "up" else f"[red]{row[1]}[/red]", row[2], row[3])
    console.print(table)
    if any(r[1] != "up" for r in rows):
        raise typer.Exit(1)


@app.command("tokens")
def tokens() -> None:
    """Print this machine's API tokens by role (from .local/secrets.env)."""
    settings = load_settings()
    table = Table("role", "subject", "token")
    for token, (role, subject) in settings.parsed_api_tokens().items():
        table.add_row(role, subject, token)
    console.print(table)


# --- serve ---------------------------------------------------------------------------------
@app.command("serve")
def serve(service: Annotated[str, typer.Argument(help=f"one of {', '.join(PROCESSES)}, or 'all'")]) -> None:
    """Run a service (or all five and the console, one process each) until SIGTERM/SIGINT."""
    if service == "all":
        raise typer.Exit(_serve_all())
    from services import load
    from shared.logging import configure_logging
    from shared.runtime import ServiceRuntime

    settings = load_settings(kafka_principal=service)  # its own Kafka principal (shared/kafka/acls.py)
    configure_logging(settings.log_level, settings.log_format, service=service)
    try:
        definition = load(service)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    try:
        weak = refuse_weak_secrets(settings, _service_secrets(service))
    except WeakSecrets as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise typer.Exit(78) from None  # EX_CONFIG
    if weak:
        print(f"{service}: development flag set on loopback; running with {len(weak)} weak secret(s)", file=sys.stderr)
    try:
        plaintext = refuse_plaintext_kafka(settings)
    except InsecureKafka as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise typer.Exit(78) from None  # EX_CONFIG
    if plaintext:
        print(f"{service}: {plaintext}", file=sys.stderr)
    from shared.db_roles import DatabaseRoleRefused, service_database_url

    try:  # its own Postgres role, never a superuser (checked again once connected)
        service_database_url(settings, service)
        asyncio.run(ServiceRuntime(definition, settings).serve())
    except DatabaseRoleRefused as exc:
        print(f"{service}: refusing to start: {exc}", file=sys.stderr)
        raise typer.Exit(78) from None  # EX_CONFIG


def _service_secrets(service: str) -> dict[str, str | None]:
    """A service's own secrets beside the shared ones (read by its own settings model)."""
    if service != "notifier":
        return {}
    from services.notifier.config import NotifierSettings

    s = NotifierSettings(_env_file=secrets_file() if secrets_file().exists() else None)  # type: ignore[call-arg]
    return {"AFTERSALES_SMS_API_KEY": s.sms_api_key.get_secret_value(),
            "AFTERSALES_SMTP_PASSWORD": s.smtp_password.get_secret_value() if s.smtp_password else None}


def _serve_all() -> int:
    """One process per service; SIGTERM/SIGINT stops them all gracefully."""
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "aftersales", "serve", name]) for name in PROCESSES
    }
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        codes = {name: p.poll() for name, p in processes.items()}
        if all(code is not None for code in codes.values()):
            return 0 if stopping else 1
        if not stopping and any(code is not None for code in codes.values()):
            dead = [n for n, c in codes.items() if c is not None]
            console.print(f"[red]{', '.join(dead)} exited; stopping the others[/red]")
            stop()
        time.sleep(0.5)


# --- migrate -------------------------------------------------------------------------------
@app.command("migrate")
def migrate_command(
    service: Annotated[str, typer.Argument(help=f"one of {', '.join(PROCESSES)}, or 'all'")] = "all",
) -> None:
    """Apply the database migrations (the kernel's and the service's own) and exit: the Helm
    chart's pre-install/pre-upgrade Job, so new replicas start on the new schema. Services also
    apply them at start (under the same advisory lock), so running it twice changes nothing."""
    from services import load
    from shared.db import connect, ensure_database
    from shared.db_roles import owner_for_migrations, role_passwords
    from shared.migrations import KERNEL_MIGRATIONS, migrate

    names = list(PROCESSES) if service == "all" else [service]
    unknown = [n for n in names if n not in PROCESSES]
    if unknown:
        console.print(f"[red]unknown service {unknown[0]!r}: one of {', '.join(PROCESSES)}, or 'all'[/red]")
        raise typer.Exit(2)
    settings = load_settings()

    async def run() -> dict[str, list[str]]:
        await ensure_database(settings)
        if role_passwords(settings):  # the roles first, each schema handed to its own (the Helm Job)
            from aftersales.infra import ensure_database_roles

            await ensure_database_roles(settings)
        applied: dict[str, list[str]] = {}
        for name in names:
            sources = {"kernel": KERNEL_MIGRATIONS}
            definition = load(name)
            if definition.migrations is not None:
                sources[name] = definition.migrations
            conn = await connect(settings, schema=name)
            try:  # as the schema's own role where the server has one (shared/db_roles.py)
                owner = await owner_for_migrations(conn, settings, name)
                applied[name] = await migrate(conn, name, sources, owner=owner)
            finally:
                await conn.close()
        return applied

    for name, done in asyncio.run(run()).items():
        console.print(f"{name:<11} {len(done)} applied" + (f": {', '.join(done)}" if done else " (up to date)"))


# --- audit ---------------------------------------------------------------------------------
@app.command("audit")
def audit(
    vin: Annotated[str | None, typer.Option(help="a vehicle's VIN")] = None,
    customer: Annotated[str | None, typer.Option(help="a customer id")] = None,
    complaint: Annotated[str | None, typer.Option(help="a complaint id")] = None,
    json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The ordered trail of every event about a vehicle, customer or complaint, across all topics,
    with causation links (reads only the partitions the keys map to)."""
    from aftersales import audit as auditing

    if sum(x is not None for x in (vin, customer, complaint)) != 1:
        console.print("[red]name exactly one of --vin, --customer, --complaint[/red]")
        raise typer.Exit(2)
    from aftersales.progress import bars

    with bars() as progress:
        entries, stats = auditing.run(load_settings(), progress, vin=vin, customer=customer, complaint=complaint)
    if json:
        sys.stdout.buffer.write(auditing.as_json(entries, stats) + b"\n")
        return
    table = Table("occurred at", "topic", "event", "key", "event id", "caused by", "details")
    for column in table.columns:
        column.overflow = "fold"  # an audit printed to a file keeps every character
    for e in entries:
        table.add_row(e.occurred_at[:19], e.topic, "  " * e.depth + e.event_type, e.key[:20], e.event_id[:8],
                      f"{e.caused_by or ''} {(e.causation_id or '')[:8]}".strip(), e.summary)
    console.print(table)
    console.print(f"{len(entries)} events; read {stats['records_read']:,} records from {stats['partitions_read']} "
                  f"partitions in {stats['seconds']} s")
    if not entries:
        raise typer.Exit(1)


# --- erase ---------------------------------------------------------------------------------
@app.command("erase")
def erase(
    customer: Annotated[str, typer.Option(help="the customer id whose personal data is erased")],
    reason: Annotated[str, typer.Option(help="the legal ground, or the customer's request reference (5-500 characters)")],
    by: Annotated[str | None, typer.Option(help="who erases (default: $AFTERSALES_OPERATOR, else user@host)")] = None,
) -> None:
    """Erase a customer's personal data in intake (as POST /v1/customers/{id}/erasure does) and
    publish CustomerErased, which every service applies; prints the register's record."""
    import getpass
    import socket

    import orjson

    from services.intake import erasure
    from shared.clock import clock_from_settings
    from shared.db import connect
    from shared.db_roles import DatabaseRoleRefused, service_settings

    reason = reason.strip()
    if not 5 <= len(reason) <= 500:
        console.print("[red]--reason must be 5-500 characters: the legal ground or the request's reference[/red]")
        raise typer.Exit(2)
    who = (by or os.environ.get("AFTERSALES_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}").strip()
    settings = load_settings()
    try:  # intake's own role, as the service connects
        intake_settings = service_settings(settings, "intake")
    except DatabaseRoleRefused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(78) from None

    async def run() -> tuple[dict[str, object], bool]:
        conn = await connect(intake_settings, schema="intake")
        try:
            return await erasure.erase(
                conn, settings=settings, clock=clock_from_settings(settings.clock_offset_seconds, settings.clock_file),
                customer_id=customer, reason=reason, requested_by=who, role="operator", via="aftersales erase")
        finally:
            await conn.close()

    try:
        record, created = asyncio.run(run())
    except erasure.UnknownCustomer as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    sys.stdout.buffer.write(orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")
    Console(stderr=True).print("erased now; CustomerErased published" if created
                               else "erased before: the record on file (nothing done)")


# --- replay --------------------------------------------------------------------------------
@app.command("replay")
def replay(
    since: Annotated[datetime, typer.Option("--from", help="start of the range (log time, ISO 8601)")],
    until: Annotated[datetime, typer.Option("--to", help="end of the range (log time, ISO 8601)")],
    service: Annotated[str, typer.Option(help=f"one of {', '.join(SERVICES)}")],
    keep: Annotated[bool, typer.Option(help="keep the scratch database for inspection")] = False,
    json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Re-drive a range of the log into a scratch copy of a service's state and report every
    difference from the live state. Nothing is published and no notification is sent."""
    from aftersales.replay import replay as run_replay

    since, until = (moment if moment.tzinfo else moment.astimezone() for moment in (since, until))
    if since >= until:
        console.print("[red]--from must be before --to[/red]")
        raise typer.Exit(2)
    if service not in SERVICES:
        console.print(f"[red]unknown service {service!r}; the services are: {', '.join(SERVICES)}[/red]")
        raise typer.Exit(2)
    from aftersales.progress import bars

    with bars() as progress:
        report = asyncio.run(run_replay(load_settings(), service, since, until, keep=keep, progress=progress))
    if json:
        sys.stdout.buffer.write(report.as_json() + b"\n")
    else:
        table = Table("compared", "rows or events", "changed later (not compared)", "note")
        for name, n in report.compared.items():
            table.add_row(name, str(n), str(report.changed_later.get(name, "")), report.notes.get(name, ""))
        console.print(f"replayed {report.records_replayed:,} records of {service}'s inputs; "
                      f"{report.inputs_in_range:,} in the range")
        console.print(table)
        for d in report.differences:
            console.print(f"[red]{d.what} {d.key}: {d.kind}[/red] {d.detail or ''}")
        console.print("no differences" if not report.differences else f"{len(report.differences)} differences")
        if report.scratch_database:
            console.print(f"scratch database kept: {report.scratch_database}")
    if report.differences:
        raise typer.Exit(1)


# --- dead letters ---------------------------------------------------------------------------
dlq_app = typer.Typer(help="Dead letters: inspect them by reason, and send them back once fixed.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str | None, typer.Option(help="only this service's")] = None,
    error: Annotated[str | None, typer.Option(help="only this error class, e.g. ValidationFailed")] = None,
    reason: Annotated[str | None, typer.Option(help="reasons containing this text")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="every dead letter, not only the new")] = False,
    since: Annotated[datetime | None, typer.Option(help="dead-lettered since this moment (ISO 8601)")] = None,
    peek: Annotated[bool, typer.Option("--peek", help="leave the stored position where it is")] = False,
    json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Dead letters new since the last listing (the stored position; --from-beginning, --since
    for others), grouped by service and error, then one line each with its reason; letters
    already sent back are marked with when, by whom and where to."""
    from aftersales import dlq
    from aftersales.progress import bars

    if from_beginning and since:
        console.print("[red]--from-beginning and --since exclude each other[/red]")
        raise typer.Exit(2)
    start: dlq.Start = "beginning" if from_beginning else (
        (since if since.tzinfo else since.astimezone()) if since else "stored")
    filtered = bool(service or error or reason)
    with bars() as progress:
        found = asyncio.run(dlq.listing(load_settings(), start=start, store=not (peek or filtered), progress=progress))
    letters = dlq.select(found.letters, service=service, error=error, reason=reason)
    where = ("from the beginning" if from_beginning else f"since {since:%Y-%m-%d %H:%M}" if since
             else "new since the stored position" if found.stored else "from the beginning (no stored position yet)")
    moved = "position kept (--peek)" if peek else "position kept (a filtered listing)" if filtered else \
        "position stored at the end"
    note = f"{len(letters)} dead letters {where}; {moved}"
    if json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps([{k: v for k, v in vars(d).items() if k != "value"} for d in letters],
                                             option=orjson.OPT_INDENT_2) + b"\n")
        Console(stderr=True).print(note)
        return
    groups: dict[tuple[str, str], list[int]] = {}
    for letter in letters:
        counts = groups.setdefault((letter.service, letter.error), [0, 0])
        counts[0] += 1
        counts[1] += letter.redriven is not None
    summary = Table("service", "error", "dead letters", "redriven")
    for (svc, err), (n, redriven) in sorted(groups.items()):
        summary.add_row(svc, err, str(n), str(redriven))
    console.print(summary)
    detail = Table("id (topic:partition:offset)", "event", "reason", "dead-lettered at", "redriven")
    for column in detail.columns:
        column.overflow = "fold"
    for letter in letters:
        r = letter.redriven
        detail.add_row(letter.id, letter.event_type or "-", letter.reason, letter.dead_lettered_at[:19],
                       f"[green]{r.at[:19]} by {r.by} -> {r.sent_to}[/green]" + (" (corrected)" if r.corrected else "")
                       if r else "")
    console.print(detail)
    console.print(note)


@dlq_app.command("redrive")
def dlq_redrive(
    ids: Annotated[list[str] | None, typer.Argument(help="dead letter ids (topic:partition:offset)")] = None,
    service: Annotated[str | None, typer.Option(help="all of this service's")] = None,
    error: Annotated[str | None, typer.Option(help="all with this error class")] = None,
    reason: Annotated[str | None, typer.Option(help="all whose reason contains this text")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="correct a field: data.vin=LJ1EEAUU5N0123456")] = None,
    again: Annotated[bool, typer.Option("--again", help="also those already redriven (by --service/--error/"
                                                         "--reason; named ids are always sent)")] = False,
    by: Annotated[str | None, typer.Option(help="who redrives (default: $AFTERSALES_OPERATOR, else user@host)")] = None,
    dry_run: Annotated[bool, typer.Option(help="show what would be sent")] = False,
) -> None:
    """Send dead letters back to their topics (unchanged, or with --set corrections), recording
    each redrive (when, by whom, where to) so `dlq list` marks them."""
    from aftersales import dlq
    from aftersales.progress import bars

    if not (ids or service or error or reason):
        console.print("[red]name dead letters by id, or select them with --service, --error or --reason[/red]")
        raise typer.Exit(2)
    settings = load_settings()
    try:
        with bars() as progress:
            letters = asyncio.run(dlq.read(settings, progress=progress))
        chosen = dlq.select(letters, ids=ids, service=service, error=error, reason=reason)
        if not ids and not again:
            skipped = [d for d in chosen if d.redriven is not None]
            chosen = [d for d in chosen if d.redriven is None]
            if skipped:
                console.print(f"{len(skipped)} already redriven, left out (--again sends them too)")
        assignments = [dlq.parse_assignment(text) for text in set_ or []]
        for letter in chosen:
            dlq.corrected(letter, assignments)
    except (LookupError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if dry_run or not chosen:
        console.print(f"{len(chosen)} dead letters would be sent back" if chosen else "no dead letters match")
        for letter in chosen:
            console.print(f"  {letter.id} -> {letter.topic}")
        return
    with bars() as progress:
        sent = asyncio.run(dlq.redrive(settings, chosen, assignments, by=by, progress=progress))
    for letter, partition, offset in sent:
        console.print(f"{letter.id} sent back to {letter.topic}:{partition}:{offset}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
