"""`aftersales console …`: staff accounts, the console's key pair, rebuilding its read model."""

from __future__ import annotations

import asyncio
import getpass
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.settings import load_settings

console = Console()
console_app = typer.Typer(help="The people's console: staff accounts, its key pair, its read model.",
                          no_args_is_help=True)
users_app = typer.Typer(help="Staff accounts (argon2 hashes; 5 wrong passwords lock one for 30 minutes).",
                        no_args_is_help=True)
console_app.add_typer(users_app, name="users")


def _password(given: str | None) -> str:
    if given:
        return given
    env = os.environ.get("AFTERSALES_CONSOLE_PASSWORD")
    if env:
        return env
    first = getpass.getpass("password (10+ characters): ")
    if getpass.getpass("again: ") != first:
        console.print("[red]the two passwords differ[/red]")
        raise typer.Exit(2)
    return first


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="what the person types to sign in, e.g. wang.fang")],
    name: Annotated[str, typer.Option(help="the name shown in the console, e.g. 王芳")] = "",
    role: Annotated[str, typer.Option(help="agent, supervisor, quality or department")] = "agent",
    department: Annotated[str, typer.Option(
        help="for role department: the department cases are routed to, e.g. quality_inspection")] = "",
    locale: Annotated[str, typer.Option(help="zh-CN or en")] = "zh-CN",
    password: Annotated[str | None, typer.Option(
        help="the password (default: AFTERSALES_CONSOLE_PASSWORD, else asked for)")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="change an existing account (and its password)")] = False,
    regions: Annotated[str, typer.Option(
        help="for an agent: the regions whose customers they serve, comma separated (default: the whole group)")] = "",
    dealers: Annotated[str, typer.Option(
        help="for an agent: the dealers whose customers they serve, comma separated")] = "",
) -> None:
    """Create a staff account."""
    from services.console.users import AccountError, add

    try:
        asyncio.run(add(load_settings(), username, name, role, _password(password), locale, replace=replace,
                        department=department or None,
                        regions=[r.strip() for r in regions.split(",") if r.strip()],
                        dealers=[d.strip() for d in dealers.split(",") if d.strip()]))
    except AccountError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{username} ({role}) can sign in to the console")


@users_app.command("password")
def users_password(username: str, password: Annotated[str | None, typer.Option()] = None) -> None:
    """Set a new password (signs the person out everywhere, and unlocks the account)."""
    from services.console.users import AccountError, set_password

    try:
        asyncio.run(set_password(load_settings(), username, _password(password)))
    except AccountError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{username}: new password set")


@users_app.command("unlock")
def users_unlock(username: str) -> None:
    """Unlock an account locked after wrong passwords."""
    from services.console.users import AccountError, unlock

    try:
        asyncio.run(unlock(load_settings(), username))
    except AccountError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{username}: unlocked")


@users_app.command("list")
def users_list() -> None:
    """The staff accounts, their roles and locks."""
    from services.console.users import listing

    table = Table("user", "name", "role", "locale", "wrong passwords", "locked until", "last sign-in")
    for a in asyncio.run(listing(load_settings())):
        table.add_row(a["username"], a["display_name"], a["role"], a["locale"], str(a["failed_attempts"]),
                      str(a["locked_until"] or ""), str(a["last_sign_in_at"] or ""))
    console.print(table)


@console_app.command("keys")
def keys() -> None:
    """Print a new Ed25519 key pair for the console's person tokens (for .env or a secret store)."""
    from aftersales.infra import console_key_pair

    private, public = console_key_pair()
    console.print(f"AFTERSALES_CONSOLE_SIGNING_KEY={private}\nAFTERSALES_CONSOLE_PUBLIC_KEY={public}", soft_wrap=True)
    console.print("[dim]the signing key only to the console; the public key to every service[/dim]")


@console_app.command("rebuild")
def rebuild(yes: Annotated[bool, typer.Option("--yes", help="do it without asking")] = False) -> None:
    """Empty the console's read model and rewind its consumer group to the start of the topics:
    the console, started again, rebuilds every customer's story by replaying the log. Stop the
    console first. Accounts, sessions, the audit log and inbound calls are kept."""
    from services.console.rebuild import rebuild as run_rebuild

    if not yes and not typer.confirm("rebuild the console's read model from the topics?"):
        raise typer.Exit(1)
    counts = asyncio.run(run_rebuild(load_settings()))
    console.print(f"read model emptied ({sum(counts.values()):,} rows) and the consumer group rewound; "
                  "start the console to replay the topics into it")
