"""``certbound group``: create, list, show (with members), add, remove, delete.

A group is named by its id (``grp_...``) or name; a user by its id or username. Every
change is a System Log event (``group.lifecycle.*``, ``group.user_membership.*``), and so
is every refused one; a refusal prints ``error <CODE>: <detail>`` and the fix on stderr and
exits 2.
"""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from certbound.cli.main import Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock, format_rfc3339
from certbound.directory import events
from certbound.directory.groups import Groups
from certbound.directory.users import Users
from certbound.errors import CertboundError
from certbound.syslog.events import EventType

MAX_LIMIT = 10_000
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _groups(ctx: Context) -> Groups:
    return Groups(ctx.database(), SystemClock())


def _refused(ctx: Context, event_type: EventType, ref: str, exc: CertboundError) -> None:
    ctx.recorder().record(events.refused(event_type, events.GROUP_TARGET, ref, exc))


@click.group()
def group() -> None:
    """Groups: named sets of users (policies refer to them)."""


@group.command("create")
@click.argument("name")
@click.option("--description", metavar="D", help="What the group is for.")
@_json_option
@pass_context
def create(ctx: Context, name: str, description: str | None, as_json: bool) -> None:
    """Create a group."""
    try:
        item = _groups(ctx).create(name, description)
    except CertboundError as exc:
        _refused(ctx, EventType.GROUP_LIFECYCLE_CREATE, name, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.group_created(item))
    if as_json:
        print_json(item.to_dict())
        return
    make_console().print(f"created group {item.name} ({item.id})")


@group.command("list")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)
@click.option("--after", metavar="ID", help="The page after the group ID (the last listed).")
@_json_option
@pass_context
def list_(ctx: Context, limit: int, after: str | None, as_json: bool) -> None:
    """List groups in the order created."""
    try:
        items = _groups(ctx).list(limit=limit, after=after)
    except CertboundError as exc:
        fail(exc, as_json)
    following = items[-1].id if len(items) == limit else None
    if as_json:
        print_json({"groups": [item.to_dict() for item in items], "next": following})
        return
    console = make_console(wide_off_terminal=True)
    if not items:
        console.print("no groups; create one with `certbound group create NAME`")
        return
    table = Table("id", "name", "description", "created")
    for item in items:
        table.add_row(
            Text(item.id),
            Text(item.name),
            Text(item.description or "-"),
            Text(format_rfc3339(item.created)),
        )
    console.print(table)
    if following:
        console.print(f"more: certbound group list --after {following}")


@group.command("show")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def show(ctx: Context, ref: str, as_json: bool) -> None:
    """Show a group and its members. REF: its id or name."""
    groups = _groups(ctx)
    try:
        item = groups.get(ref)
        members = groups.members(item.id)
    except CertboundError as exc:
        fail(exc, as_json)
    if as_json:
        print_json({**item.to_dict(), "members": [m.to_dict() for m in members]})
        return
    console = make_console(wide_off_terminal=True)
    console.print(Text.assemble((item.id, "bold cyan"), "  ", item.name))
    console.print(Text.assemble("  ", ("description ", "dim"), item.description or "-"))
    console.print(Text.assemble("  ", ("created     ", "dim"), format_rfc3339(item.created)))
    console.print(Text.assemble("  ", ("members     ", "dim"), str(len(members))))
    for member in members:
        console.print(Text(f"    {member.username} ({member.id}) {member.status.value}"))


def _membership(
    ctx: Context, event_type: EventType, group_ref: str, user_ref: str, as_json: bool
) -> None:
    groups = _groups(ctx)
    adding = event_type is EventType.GROUP_USER_MEMBERSHIP_ADD
    try:
        item = groups.get(group_ref)
        member = Users(ctx.database(), SystemClock()).get(user_ref)
        change = groups.add_member if adding else groups.remove_member
        changed = change(item.id, member.id)
    except CertboundError as exc:
        _refused(ctx, event_type, f"{group_ref} {user_ref}", exc)
        fail(exc, as_json)
    ctx.recorder().record(events.membership_changed(event_type, item, member, changed))
    if as_json:
        print_json({"group": item.to_dict(), "user": member.to_dict(), "changed": changed})
        return
    if not changed:
        state = "already a member of" if adding else "not a member of"
        make_console().print(f"{member.username} is {state} {item.name}; nothing changed")
        return
    verb = "added to" if adding else "removed from"
    make_console().print(f"{member.username} {verb} {item.name}")


@group.command("add")
@click.argument("group_ref", metavar="GROUP")
@click.argument("user_ref", metavar="USER")
@_json_option
@pass_context
def add(ctx: Context, group_ref: str, user_ref: str, as_json: bool) -> None:
    """Add USER to GROUP."""
    _membership(ctx, EventType.GROUP_USER_MEMBERSHIP_ADD, group_ref, user_ref, as_json)


@group.command("remove")
@click.argument("group_ref", metavar="GROUP")
@click.argument("user_ref", metavar="USER")
@_json_option
@pass_context
def remove(ctx: Context, group_ref: str, user_ref: str, as_json: bool) -> None:
    """Remove USER from GROUP."""
    _membership(ctx, EventType.GROUP_USER_MEMBERSHIP_REMOVE, group_ref, user_ref, as_json)


@group.command("delete")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def delete(ctx: Context, ref: str, as_json: bool) -> None:
    """Delete a group and its memberships (the users stay)."""
    groups = _groups(ctx)
    try:
        members = len(groups.members(ref))
        item = groups.delete(ref)
    except CertboundError as exc:
        _refused(ctx, EventType.GROUP_LIFECYCLE_DELETE, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.group_deleted(item, members))
    if as_json:
        print_json({**item.to_dict(), "members": members})
        return
    make_console().print(f"deleted group {item.name} ({item.id}), {members} membership(s)")
