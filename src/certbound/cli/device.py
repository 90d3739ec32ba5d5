"""``certbound device``: list, show, suspend, resume and deactivate registered devices.

A device is one client certificate seen over mTLS (:mod:`certbound.devices.registry`); a
device is named by its id (``dev_...``), its serial number (hex, any case, colons allowed)
or its SHA-256 thumbprint. Output is for people (rich) or, with ``--json``, one JSON
object. Every change is a System Log event (``device.lifecycle.suspend`` / ``.unsuspend``
/ ``.deactivate``), and so is every refused one; an unknown or ambiguous device prints
``error DEVICE_NOT_FOUND: <detail>`` and the fix on stderr and exits 2, a change a
deactivated device cannot take ``error DEVICE_DEACTIVATED: ...`` (exit 2).
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from certbound.cli.main import Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock, format_rfc3339
from certbound.config import ConfigError
from certbound.devices import events
from certbound.devices.mapping import MappingRules
from certbound.devices.registry import Device, DeviceRegistry, DeviceStatus
from certbound.errors import CertboundError
from certbound.syslog.events import EventType

UNMAPPED = "(unmapped)"
MAX_LIMIT = 10_000
_STYLES = {
    DeviceStatus.ACTIVE: "green",
    DeviceStatus.SUSPENDED: "bold yellow",
    DeviceStatus.DEACTIVATED: "bold red",
}


def _registry(ctx: Context) -> DeviceRegistry:
    try:
        mapping = MappingRules.parse(ctx.settings.device_mapping)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    return DeviceRegistry(ctx.database(), SystemClock(), mapping)


def _status(device: Device) -> Text:
    return Text(device.status.value, style=_STYLES[device.status])


def _user(device: Device) -> Text:
    if device.user is None:
        return Text(UNMAPPED, style="dim")
    return Text(device.user)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group()
def device() -> None:
    """Devices: the client certificates seen over mTLS, their users and statuses."""


def _table(devices: list[Device]) -> Table:
    table = Table("id", "subject", "user", "status", "last seen")
    for item in devices:
        table.add_row(
            Text(item.id),
            Text(item.subject_dn),  # names are text, never markup
            _user(item),
            _status(item),
            Text(format_rfc3339(item.last_seen)),
        )
    return table


@device.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in DeviceStatus], case_sensitive=False),
    help="Only devices with this status.",
)
@click.option("--user", metavar="USER", help="Only the devices mapped to USER.")
@click.option("--unmapped", is_flag=True, help="Only the devices no mapping rule mapped.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=100,
    show_default=True,
    help="Devices per page.",
)
@click.option("--after", metavar="ID", help="The page after the device ID (the last listed).")
@_json_option
@pass_context
def list_(
    ctx: Context,
    status: str | None,
    user: str | None,
    unmapped: bool,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List devices in the order they were first seen."""
    if user is not None and unmapped:
        raise click.UsageError("--user and --unmapped exclude each other")
    wanted = DeviceStatus(status.upper()) if status else None
    try:
        devices = _registry(ctx).list(
            status=wanted, user=user, limit=limit, after=after, unmapped=unmapped
        )
    except CertboundError as exc:
        fail(exc, as_json)
    following = devices[-1].id if len(devices) == limit else None
    if as_json:
        print_json({"devices": [item.to_dict() for item in devices], "next": following})
        return
    console = make_console(wide_off_terminal=True)
    if not devices:
        console.print("no devices; a device is registered when it first connects over mTLS")
        return
    console.print(_table(devices))
    if following:
        console.print(f"more: certbound device list --after {following}")


_FIELDS = (
    ("subject", lambda d: d.subject_dn),
    ("issuer", lambda d: d.issuer_dn),
    ("serial", lambda d: d.serial_number),
    ("sha256", lambda d: d.thumbprint),
    ("sans", lambda d: ", ".join(d.sans) or "-"),
    ("user", lambda d: f"{d.user} (by {d.mapped_by})" if d.user else UNMAPPED),
    ("first seen", lambda d: format_rfc3339(d.first_seen)),
    ("last seen", lambda d: format_rfc3339(d.last_seen)),
    ("not after", lambda d: format_rfc3339(d.not_after)),
)


def _print_device(console: Console, item: Device) -> None:
    console.print(Text.assemble((item.id, "bold cyan"), "  ", _status(item)))
    for label, value in _FIELDS:
        console.print(Text.assemble("  ", (f"{label:<12}", "dim"), value(item)))


@device.command("show")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def show(ctx: Context, ref: str, as_json: bool) -> None:
    """Show one device. REF: its id, serial number or SHA-256 thumbprint."""
    try:
        item = _registry(ctx).get(ref)
    except CertboundError as exc:
        fail(exc, as_json)
    if as_json:
        print_json(item.to_dict())
        return
    _print_device(make_console(wide_off_terminal=True), item)


def _record_refused(
    ctx: Context, registry: DeviceRegistry, event_type: EventType, ref: str, exc: CertboundError
) -> None:
    """Log a refused change, naming the device when there is one."""
    try:
        found: Device | None = registry.get(ref)
    except CertboundError:
        found = None
    ctx.recorder().record(events.lifecycle_refused(event_type, ref, exc, found))


def _change(ctx: Context, ref: str, event_type: EventType, as_json: bool) -> None:
    registry = _registry(ctx)
    actions = {
        EventType.DEVICE_LIFECYCLE_SUSPEND: (registry.suspend, events.device_suspended),
        EventType.DEVICE_LIFECYCLE_UNSUSPEND: (registry.resume, events.device_unsuspended),
        EventType.DEVICE_LIFECYCLE_DEACTIVATE: (registry.deactivate, events.device_deactivated),
    }
    change, build = actions[event_type]
    try:
        before, after = change(ref)
    except CertboundError as exc:
        _record_refused(ctx, registry, event_type, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(build(before, after))
    if as_json:
        print_json({"before": before.to_dict(), "after": after.to_dict()})
        return
    console = make_console(wide_off_terminal=True)
    if before.status is after.status:
        console.print(Text.assemble(after.id, " is already ", _status(after), "; nothing changed"))
        return
    console.print(
        Text.assemble(
            (after.id, "bold"), f"  {after.subject_dn}: ", _status(before), " -> ", _status(after)
        )
    )


@device.command("suspend")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def suspend(ctx: Context, ref: str, as_json: bool) -> None:
    """Suspend a device: it is refused (DEVICE_SUSPENDED) until resumed, on every instance
    within a few seconds."""
    _change(ctx, ref, EventType.DEVICE_LIFECYCLE_SUSPEND, as_json)


@device.command("resume")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def resume(ctx: Context, ref: str, as_json: bool) -> None:
    """Make a suspended device ACTIVE again."""
    _change(ctx, ref, EventType.DEVICE_LIFECYCLE_UNSUSPEND, as_json)


@device.command("deactivate")
@click.argument("ref", metavar="REF")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@pass_context
def deactivate(ctx: Context, ref: str, yes: bool, as_json: bool) -> None:
    """Deactivate a device for good: it is refused (DEVICE_DEACTIVATED) and cannot be
    resumed; the certificate's holder needs a new certificate."""
    if not yes:
        try:
            item = _registry(ctx).get(ref)
        except CertboundError as exc:
            ctx.recorder().record(
                events.lifecycle_refused(EventType.DEVICE_LIFECYCLE_DEACTIVATE, ref, exc)
            )
            fail(exc, as_json)
        click.confirm(
            f"Deactivate {item.id} ({item.subject_dn}, {item.status.value})? This is final",
            abort=True,
        )
    _change(ctx, ref, EventType.DEVICE_LIFECYCLE_DEACTIVATE, as_json)
