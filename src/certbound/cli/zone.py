"""``certbound zone``: network zones (list, create, update, delete) that policy rules name
in their ``network`` conditions.

A zone is named by its id (``nzn_...``) or name and holds IPv4 and IPv6 networks
(``--cidr``, repeat; a host address is a /32 or /128, and a network given with host bits is
stored as its network). Every change is a System Log event (``zone.lifecycle.*``), and so
is every refused one. Deleting a zone that rules still name leaves them a dangling
reference (a warning here; ``certbound doctor`` reports it until the rules are changed).
"""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from certbound.cli.main import Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock
from certbound.errors import CertboundError
from certbound.policy import events
from certbound.policy.store import ZoneChange, Zones
from certbound.syslog.events import EventType

_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _zones(ctx: Context) -> Zones:
    return Zones(ctx.database(), SystemClock())


def _refused(ctx: Context, event_type: EventType, ref: str, exc: CertboundError) -> None:
    ctx.recorder().record(events.refused(event_type, events.ZONE_TARGET, ref, exc))


def _done(change: ZoneChange, message: str, as_json: bool) -> None:
    zone = change.after or change.before
    assert zone is not None
    if as_json:
        print_json({"zone": zone.to_dict(), "referencedBy": list(change.referenced_by)})
        return
    make_console().print(Text(message))
    if change.after is None and change.referenced_by:
        named = ", ".join(change.referenced_by)
        make_console(stderr=True).print(
            Text(
                f"warning DANGLING_REFERENCE: policies {named} still name zone {zone.id}; "
                "their rules' network conditions now match no address (see `certbound "
                "doctor`)",
                style="yellow",
            )
        )


@click.group()
def zone() -> None:
    """Network zones: named sets of IP networks for policy rules."""


@zone.command("list")
@_json_option
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    """List the zones by name."""
    items = _zones(ctx).list()
    if as_json:
        print_json({"zones": [item.to_dict() for item in items]})
        return
    console = make_console(wide_off_terminal=True)
    if not items:
        console.print("no zones; create one with `certbound zone create NAME --cidr CIDR`")
        return
    table = Table("id", "name", "networks")
    for item in items:
        table.add_row(Text(item.id), Text(item.name), Text(", ".join(item.cidrs)))
    console.print(table)


@zone.command("create")
@click.argument("name")
@click.option("--cidr", "cidrs", multiple=True, required=True, metavar="CIDR",
              help="An IPv4 or IPv6 network or address (repeat).")  # fmt: skip
@_json_option
@pass_context
def create(ctx: Context, name: str, cidrs: tuple[str, ...], as_json: bool) -> None:
    """Create a zone."""
    try:
        change = _zones(ctx).create(name, list(cidrs))
    except CertboundError as exc:
        _refused(ctx, EventType.ZONE_LIFECYCLE_CREATE, name, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.zone_changed(EventType.ZONE_LIFECYCLE_CREATE, change))
    assert change.after is not None
    _done(change, f"created zone {change.after.name} ({change.after.id})", as_json)


@zone.command("update")
@click.argument("ref", metavar="ZONE")
@click.option("--name", help="A new name.")
@click.option("--cidr", "cidrs", multiple=True, metavar="CIDR",
              help="The zone's networks from now on, replacing its own (repeat).")  # fmt: skip
@_json_option
@pass_context
def update(ctx: Context, ref: str, name: str | None, cidrs: tuple[str, ...], as_json: bool) -> None:
    """Rename a zone or replace its networks (every rule naming it sees them within 2 s)."""
    try:
        change = _zones(ctx).update(ref, name=name, cidrs=list(cidrs) if cidrs else None)
    except CertboundError as exc:
        _refused(ctx, EventType.ZONE_LIFECYCLE_UPDATE, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.zone_changed(EventType.ZONE_LIFECYCLE_UPDATE, change))
    assert change.after is not None
    _done(change, f"updated zone {change.after.name} ({change.after.id})", as_json)


@zone.command("delete")
@click.argument("ref", metavar="ZONE")
@_json_option
@pass_context
def delete(ctx: Context, ref: str, as_json: bool) -> None:
    """Delete a zone (rules that name it keep a dangling reference)."""
    try:
        change = _zones(ctx).delete(ref)
    except CertboundError as exc:
        _refused(ctx, EventType.ZONE_LIFECYCLE_DELETE, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.zone_changed(EventType.ZONE_LIFECYCLE_DELETE, change))
    assert change.before is not None
    _done(change, f"deleted zone {change.before.name} ({change.before.id})", as_json)
