"""``certbound admin token create|list|revoke``: the admin API's bearer tokens.

``create`` prints the token once (only its hash is stored). Creating and revoking a token
are System Log events (``system.api_token.create`` / ``.revoke``) naming the token id,
never the secret. An unknown id or an invalid option exits 2.
"""

from __future__ import annotations

import datetime as dt

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from certbound.admin.tokens import DEFAULT_ROLE, ApiTokens, TokenInfo, TokenNotFoundError
from certbound.cli.main import EXIT_USAGE, Context, pass_context
from certbound.cli.output import print_json
from certbound.clock import SystemClock, format_rfc3339


def _tokens(ctx: Context) -> ApiTokens:
    return ApiTokens(ctx.database(), SystemClock(), recorder=ctx.recorder())


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else format_rfc3339(value)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def admin() -> None:
    """Administration of Certbound itself."""


@admin.group()
def token() -> None:
    """Admin API tokens (`Authorization: Bearer <token>` on /api/v1/...)."""


@token.command("create")
@click.option("--name", required=True, help="What the token is for (1 to 200 characters).")
@click.option("--role", default=DEFAULT_ROLE, show_default=True, help="The token's role.")
@click.option(
    "--expires-days",
    type=click.IntRange(min=1),
    help="Days until the token expires (default: never).",
)
@_json_option
@pass_context
def create(ctx: Context, name: str, role: str, expires_days: int | None, as_json: bool) -> None:
    """Create a token and print it. It is shown this once: store it now."""
    expires_in = None if expires_days is None else dt.timedelta(days=expires_days)
    try:
        secret, info = _tokens(ctx).create(name, role, expires_in)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if as_json:
        print_json({"token": secret, **info.to_dict()})
        return
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        Text.assemble(
            ("created ", "bold green"),
            f"API token {info.id} ({info.name}), ",
            f"role {info.role}, expires {_when(info.expires_at)}",
        )
    )
    console.print(Text("Copy the token now; it cannot be shown again:", style="yellow"))
    click.echo(secret)


def _table(tokens: list[TokenInfo], now: dt.datetime) -> Table:
    table = Table("id", "name", "role", "status", "created", "expires", "last used")
    for info in tokens:
        cells = (
            info.id,
            info.name,
            info.role,
            info.status(now),
            _when(info.created_at),
            _when(info.expires_at),
            _when(info.last_used_at),
        )
        table.add_row(*(Text(cell) for cell in cells))  # a name is text, never markup
    return table


@token.command("list")
@_json_option
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    """List every token (never their secrets), revoked and expired ones included."""
    tokens = ApiTokens(ctx.database(), SystemClock()).list()
    now = SystemClock().now()
    if as_json:
        print_json({"tokens": [info.to_dict(now) for info in tokens]})
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 200  # never cut ids and times when writing to a file or a pipe
    if not tokens:
        console.print("no API tokens; create one with `certbound admin token create --name N`")
        return
    console.print(_table(tokens, now))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@_json_option
@pass_context
def revoke(ctx: Context, token_id: str, as_json: bool) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    try:
        info = _tokens(ctx).revoke(token_id)
    except TokenNotFoundError as exc:
        click.echo(f"error: {exc.args[0]}; `certbound admin token list` shows the ids", err=True)
        raise click.exceptions.Exit(EXIT_USAGE) from exc
    if as_json:
        print_json({"revoked": info.to_dict()})
        return
    click.echo(f"revoked API token {info.id} ({info.name}) at {_when(info.revoked_at)}")
