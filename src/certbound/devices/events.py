"""The device registry's System Log events: suspend, unsuspend (resume) and deactivate.

Each builder turns one status change into one :class:`certbound.syslog.events.Event` (Okta's
``device.lifecycle.*`` types); the caller hands it to the recorder. The target is the
device (``Device``: id, subject DN, and the user or, unmapped, the serial number) and
``debugData.changeDetails`` holds the status before and after. A refused change (an
unknown device, a deactivated one) is a FAILURE event of the same type built by
:func:`lifecycle_refused`. ``docs/events.md`` describes the fields.
"""

from __future__ import annotations

from typing import Any

from certbound.devices.registry import Device, DeviceStatus
from certbound.errors import CertboundError
from certbound.syslog.events import (
    CLI_ACTOR,
    Actor,
    Client,
    Event,
    EventType,
    Outcome,
    Result,
    Severity,
    Target,
)

DEVICE_TARGET = "Device"

# What each change is called in display messages.
_VERBS = {
    EventType.DEVICE_LIFECYCLE_SUSPEND: "suspended",
    EventType.DEVICE_LIFECYCLE_UNSUSPEND: "resumed",
    EventType.DEVICE_LIFECYCLE_DEACTIVATE: "deactivated",
}
# The status each change leads to.
STATUS_OF = {
    EventType.DEVICE_LIFECYCLE_SUSPEND: DeviceStatus.SUSPENDED,
    EventType.DEVICE_LIFECYCLE_UNSUSPEND: DeviceStatus.ACTIVE,
    EventType.DEVICE_LIFECYCLE_DEACTIVATE: DeviceStatus.DEACTIVATED,
}


def device_target(device: Device) -> Target:
    """A device as an event target."""
    return Target(device.id, DEVICE_TARGET, device.subject_dn, device.user or device.serial_number)


def _facts(device: Device) -> dict[str, Any]:
    return {
        "serialNumber": device.serial_number,
        "issuerDn": device.issuer_dn,
        "sha256Thumbprint": device.thumbprint,
        "user": device.user,
        "mappedBy": device.mapped_by,
    }


def _changed(
    event_type: EventType, before: Device, after: Device, actor: Actor, client: Client | None
) -> Event:
    verb = _VERBS[event_type]
    unchanged = before.status is after.status
    message = f"Device {verb}: {after.subject_dn} ({after.id})"
    if unchanged:
        message = f"Device already {after.status.value.lower()}, nothing changed: {after.id}"
    return Event(
        event_type=event_type,
        display_message=message,
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        severity=Severity.INFO,
        targets=(device_target(after),),
        client=client or Client(),
        debug_data={
            **_facts(after),
            "changeDetails": {
                "before": {"status": before.status.value},
                "after": {"status": after.status.value},
            },
        },
    )


def device_suspended(
    before: Device, after: Device, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """``device.lifecycle.suspend``: the device is refused (DEVICE_SUSPENDED) from now on."""
    return _changed(EventType.DEVICE_LIFECYCLE_SUSPEND, before, after, actor, client)


def device_unsuspended(
    before: Device, after: Device, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """``device.lifecycle.unsuspend``: a suspended device is ACTIVE again."""
    return _changed(EventType.DEVICE_LIFECYCLE_UNSUSPEND, before, after, actor, client)


def device_deactivated(
    before: Device, after: Device, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """``device.lifecycle.deactivate``: the device is refused for good."""
    return _changed(EventType.DEVICE_LIFECYCLE_DEACTIVATE, before, after, actor, client)


def lifecycle_refused(
    event_type: EventType,
    ref: str,
    error: CertboundError,
    device: Device | None = None,
    *,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """A change that was refused: no device ``ref`` (DEVICE_NOT_FOUND; the target is then
    the reference as given) or a deactivated one (DEVICE_DEACTIVATED)."""
    target = device_target(device) if device else Target(ref, DEVICE_TARGET, None, None)
    debug: dict[str, Any] = {"ref": ref, "detail": error.detail}
    if device is not None:
        debug |= _facts(device) | {"status": device.status.value}
    return Event(
        event_type=event_type,
        display_message=f"Device not {_VERBS[event_type]} ({error.reason.value}): {ref}",
        outcome=Outcome(Result.FAILURE, error.reason),
        actor=actor,
        severity=Severity.WARN,
        targets=(target,),
        client=client or Client(),
        debug_data={**debug, "requestedStatus": STATUS_OF[event_type].value},
    )
