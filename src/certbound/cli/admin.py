"""``certbound admin create|list`` and ``certbound admin token create|list|revoke``: the
admins of Certbound and their admin API bearer tokens.

``admin create --username U [--email E] --role R`` makes an admin (the first
``SUPER_ADMIN`` is made this way, on the server; docs/roles.md lists the roles).
``token create --name N --role R --admin ADMIN`` prints a token of that admin once (only
its hash is stored); its role is the admin's or a lower one (default: the admin's), and
``--bind-cert FILE`` binds it to a client certificate, which every request with it must
then present. Without ``--admin`` a token belongs to no admin, which is refused once
admins exist. Creating admins and creating and revoking tokens are System Log events
(``admin.account.create``, ``system.api_token.create`` / ``.revoke``) naming the ids,
never a secret. An unknown id or an invalid option exits 2.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from certbound.admin import events
from certbound.admin.admins import Admin, Admins
from certbound.admin.roles import Role
from certbound.admin.tokens import DEFAULT_ROLE, ApiTokens, TokenInfo, TokenNotFoundError
from certbound.cli.main import EXIT_USAGE, Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock, format_rfc3339
from certbound.errors import CertboundError
from certbound.pki.certificate import der
from certbound.pki.pem import load_presented_file


def _tokens(ctx: Context) -> ApiTokens:
    return ApiTokens(ctx.database(), SystemClock(), recorder=ctx.recorder())


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else format_rfc3339(value)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


_ROLES = click.Choice([role.value for role in Role])


@click.group()
def admin() -> None:
    """Administration of Certbound itself: admins, their roles and API tokens."""


def _admins(ctx: Context) -> Admins:
    return Admins(ctx.database(), SystemClock())


@admin.command("create")
@click.option("--username", required=True, help="The admin's username (unique).")
@click.option("--email", metavar="E", help="The admin's email address.")
@click.option("--role", required=True, type=_ROLES, help="The admin's role (docs/roles.md).")
@_json_option
@pass_context
def create_admin(ctx: Context, username: str, email: str | None, role: str, as_json: bool) -> None:
    """Create an admin (the first SUPER_ADMIN is made this way); then give it a token with
    `certbound admin token create --admin USERNAME`."""
    try:
        made = _admins(ctx).create(username, Role(role), email=email)
    except CertboundError as exc:
        fail(exc, as_json)
    ctx.recorder().record(events.admin_created(made))
    if as_json:
        print_json(made.to_dict())
        return
    what = f"admin {made.id} ({made.username}), role {made.role.value}"
    make_console().print(Text.assemble(("created ", "bold green"), what))
    click.echo(
        f"Create its API token with: certbound admin token create --name NAME "
        f"--admin {made.username}"
    )


def _admin_table(admins: list[Admin]) -> Table:
    table = Table("id", "username", "email", "role", "status", "created")
    for item in admins:
        cells = (
            item.id,
            item.username,
            item.email or "-",
            item.role.value,
            item.status.value,
            _when(item.created),
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


@admin.command("list")
@_json_option
@pass_context
def list_admins(ctx: Context, as_json: bool) -> None:
    """List the admins, deactivated ones included."""
    found = _admins(ctx).list(limit=100_000)
    if as_json:
        print_json({"admins": [item.to_dict() for item in found]})
        return
    console = make_console(wide_off_terminal=True)
    if not found:
        console.print(
            "no admins; create the first with `certbound admin create --role SUPER_ADMIN`"
        )
        return
    console.print(_admin_table(found))


@admin.group()
def token() -> None:
    """Admin API tokens (`Authorization: Bearer <token>` on /api/v1/...)."""


def _thumbprint(path: Path | None) -> str | None:
    """The SHA-256 thumbprint of the certificate in a PEM or DER file (its first one)."""
    if path is None:
        return None
    try:
        certificates = load_presented_file(path.read_bytes())
    except (OSError, CertboundError) as exc:
        detail = exc.detail if isinstance(exc, CertboundError) else str(exc)
        raise click.BadParameter(f"{path}: {detail}", param_hint="--bind-cert") from exc
    return hashlib.sha256(der(certificates[0])).hexdigest()


def _owner(ctx: Context, ref: str | None, role: str | None) -> tuple[str | None, str]:
    """The token's admin (None: none) and role (default: the admin's, else SUPER_ADMIN)."""
    if ref is None:
        if _admins(ctx).count():
            raise click.UsageError(
                "admins exist: name the token's admin with --admin (`certbound admin list`)"
            )
        return None, role or DEFAULT_ROLE
    try:
        owner = _admins(ctx).get(ref)
    except CertboundError as exc:
        fail(exc, False)
    return owner.id, role or owner.role.value


@token.command("create")
@click.option("--name", required=True, help="What the token is for (1 to 200 characters).")
@click.option("--role", help="The token's role (default: its admin's; SUPER_ADMIN without one).")
@click.option("--admin", "admin_ref", metavar="ADMIN", help="The admin (id or username) it is for.")
@click.option(
    "--bind-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Bind the token to this client certificate (PEM or DER): it must be presented too.",
)
@click.option(
    "--expires-days",
    type=click.IntRange(min=1),
    help="Days until the token expires (default: never).",
)
@_json_option
@pass_context
def create(
    ctx: Context,
    name: str,
    role: str | None,
    admin_ref: str | None,
    bind_cert: Path | None,
    expires_days: int | None,
    as_json: bool,
) -> None:
    """Create a token and print it. It is shown this once: store it now."""
    expires_in = None if expires_days is None else dt.timedelta(days=expires_days)
    thumbprint = _thumbprint(bind_cert)
    owner, token_role = _owner(ctx, admin_ref, role)
    try:
        secret, info = _tokens(ctx).create(
            name, token_role, expires_in, admin=owner, cert_sha256=thumbprint
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    except CertboundError as exc:
        fail(exc, as_json)
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
    if info.cert_sha256 is not None:
        console.print(Text(f"bound to the client certificate with SHA-256 {info.cert_sha256}"))
    console.print(Text("Copy the token now; it cannot be shown again:", style="yellow"))
    click.echo(secret)


def _table(tokens: list[TokenInfo], now: dt.datetime) -> Table:
    table = Table("id", "name", "admin", "role", "status", "created", "expires", "last used")
    for info in tokens:
        cells = (
            info.id,
            info.name,
            info.admin_id or "-",
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
        console.print(
            "no API tokens; create one with `certbound admin token create --name N --admin A`"
        )
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
