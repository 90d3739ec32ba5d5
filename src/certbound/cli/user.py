"""``certbound user``: create, list, show, update, set-password, suspend, activate, delete.

A user is named by its id (``usr_...``) or username (any case). A password is read from
stdin (``--password-stdin``), never from the command line. Every change is a System Log
event (``user.lifecycle.*``, ``user.account.update_password``), and so is every refused
one; a refusal prints ``error <CODE>: <detail>`` and the fix on stderr and exits 2.
"""

from __future__ import annotations

import sys

import click
from rich.table import Table
from rich.text import Text

from certbound.cli.main import Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock, format_rfc3339
from certbound.directory import events
from certbound.directory.groups import Groups
from certbound.directory.users import UNSET, User, Users, UserStatus
from certbound.errors import CertboundError
from certbound.syslog.events import EventType

MAX_LIMIT = 10_000
_STYLES = {
    UserStatus.ACTIVE: "green",
    UserStatus.SUSPENDED: "bold yellow",
    UserStatus.DEPROVISIONED: "bold red",
}
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _users(ctx: Context) -> Users:
    return Users(ctx.database(), SystemClock())


def read_password() -> str:
    """The password on stdin: its first line, without the line ending."""
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def _refused(ctx: Context, event_type: EventType, ref: str, exc: CertboundError) -> None:
    ctx.recorder().record(events.refused(event_type, events.USER_TARGET, ref, exc))


def _status(user: User) -> Text:
    return Text(user.status.value, style=_STYLES[user.status])


def _print_user(user: User) -> None:
    console = make_console(wide_off_terminal=True)
    console.print(Text.assemble((user.id, "bold cyan"), "  ", user.username, "  ", _status(user)))
    for label, value in (
        ("email", user.email or "-"),
        ("name", user.display_name or "-"),
        ("created", format_rfc3339(user.created)),
        ("updated", format_rfc3339(user.updated)),
    ):
        console.print(Text.assemble("  ", (f"{label:<10}", "dim"), value))


@click.group()
def user() -> None:
    """Users: the people who sign in, their status, password and groups."""


@user.command("create")
@click.argument("username")
@click.option("--email", metavar="E", help="The user's email address.")
@click.option("--name", "display_name", metavar="N", help="The user's display name.")
@click.option("--password-stdin", is_flag=True, help="Read a password (>= 12 chars) from stdin.")
@_json_option
@pass_context
def create(
    ctx: Context,
    username: str,
    email: str | None,
    display_name: str | None,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Create an ACTIVE user."""
    password = read_password() if password_stdin else None
    try:
        item = _users(ctx).create(
            username, email=email, display_name=display_name, password=password
        )
    except CertboundError as exc:
        _refused(ctx, EventType.USER_LIFECYCLE_CREATE, username, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.user_created(item, password_set=password is not None))
    if as_json:
        print_json(item.to_dict())
        return
    _print_user(item)


@user.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in UserStatus], case_sensitive=False),
    help="Only users with this status.",
)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)
@click.option("--after", metavar="ID", help="The page after the user ID (the last listed).")
@_json_option
@pass_context
def list_(ctx: Context, status: str | None, limit: int, after: str | None, as_json: bool) -> None:
    """List users in the order created."""
    wanted = UserStatus(status.upper()) if status else None
    try:
        items = _users(ctx).list(status=wanted, limit=limit, after=after)
    except CertboundError as exc:
        fail(exc, as_json)
    following = items[-1].id if len(items) == limit else None
    if as_json:
        print_json({"users": [item.to_dict() for item in items], "next": following})
        return
    console = make_console(wide_off_terminal=True)
    if not items:
        console.print("no users; create one with `certbound user create USERNAME`")
        return
    table = Table("id", "username", "email", "name", "status")
    for item in items:
        table.add_row(
            Text(item.id),
            Text(item.username),
            Text(item.email or "-"),
            Text(item.display_name or "-"),
            _status(item),
        )
    console.print(table)
    if following:
        console.print(f"more: certbound user list --after {following}")


@user.command("show")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def show(ctx: Context, ref: str, as_json: bool) -> None:
    """Show one user and its groups. REF: its id or username."""
    try:
        item = _users(ctx).get(ref)
        groups = Groups(ctx.database(), SystemClock()).groups_of(item.id)
    except CertboundError as exc:
        fail(exc, as_json)
    if as_json:
        print_json({**item.to_dict(), "groups": [g.to_dict() for g in groups]})
        return
    _print_user(item)
    names = ", ".join(f"{g.name} ({g.id})" for g in groups) or "-"
    make_console(wide_off_terminal=True).print(Text.assemble("  ", ("groups    ", "dim"), names))


@user.command("update")
@click.argument("ref", metavar="REF")
@click.option("--email", metavar="E", help="A new email address ('' clears it).")
@click.option("--name", "display_name", metavar="N", help="A new display name ('' clears it).")
@_json_option
@pass_context
def update(
    ctx: Context, ref: str, email: str | None, display_name: str | None, as_json: bool
) -> None:
    """Change a user's email or display name."""
    if email is None and display_name is None:
        raise click.UsageError("give --email or --name")
    try:
        before, after = _users(ctx).update(
            ref,
            email=UNSET if email is None else (email or None),
            display_name=UNSET if display_name is None else (display_name or None),
        )
    except CertboundError as exc:
        _refused(ctx, EventType.USER_LIFECYCLE_UPDATE, ref, exc)
        fail(exc, as_json)
    _changed(ctx, EventType.USER_LIFECYCLE_UPDATE, before, after, as_json)


@user.command("set-password")
@click.argument("ref", metavar="REF")
@click.option("--password-stdin", is_flag=True, required=True, help="Read it from stdin.")
@_json_option
@pass_context
def set_password(ctx: Context, ref: str, password_stdin: bool, as_json: bool) -> None:
    """Set a user's password (at least 12 characters), read from stdin."""
    password = read_password()
    try:
        item = _users(ctx).set_password(ref, password)
    except CertboundError as exc:
        _refused(ctx, EventType.USER_ACCOUNT_UPDATE_PASSWORD, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.password_updated(item))
    if as_json:
        print_json(item.to_dict())
        return
    make_console().print(f"password set for {item.username} ({item.id})")


def _changed(ctx: Context, event_type: EventType, before: User, after: User, as_json: bool) -> None:
    ctx.recorder().record(events.user_changed(event_type, before, after))
    if as_json:
        print_json({"before": before.to_dict(), "after": after.to_dict()})
        return
    console = make_console(wide_off_terminal=True)
    if before == after:
        console.print(f"{after.username} ({after.id}): nothing changed")
        return
    console.print(
        Text.assemble((after.id, "bold"), f"  {after.username}: ", _status(before), " -> ")
        + _status(after)
    )


def _status_command(ctx: Context, ref: str, event_type: EventType, as_json: bool) -> None:
    users = _users(ctx)
    change = users.suspend if event_type is EventType.USER_LIFECYCLE_SUSPEND else users.activate
    try:
        before, after = change(ref)
    except CertboundError as exc:
        _refused(ctx, event_type, ref, exc)
        fail(exc, as_json)
    _changed(ctx, event_type, before, after, as_json)


@user.command("suspend")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def suspend(ctx: Context, ref: str, as_json: bool) -> None:
    """Suspend a user: it cannot sign in until activated."""
    _status_command(ctx, ref, EventType.USER_LIFECYCLE_SUSPEND, as_json)


@user.command("activate")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def activate(ctx: Context, ref: str, as_json: bool) -> None:
    """Make a user ACTIVE again."""
    _status_command(ctx, ref, EventType.USER_LIFECYCLE_ACTIVATE, as_json)


@user.command("delete")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def delete(ctx: Context, ref: str, as_json: bool) -> None:
    """Delete a user and its group memberships."""
    try:
        item = _users(ctx).delete(ref)
    except CertboundError as exc:
        _refused(ctx, EventType.USER_LIFECYCLE_DELETE, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.user_deleted(item))
    if as_json:
        print_json(item.to_dict())
        return
    make_console().print(f"deleted user {item.username} ({item.id})")
