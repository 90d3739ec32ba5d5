"""``/api/v1/devices``: the device registry (:class:`~certbound.devices.registry.DeviceRegistry`).

``{id}`` is a device's id, serial number or thumbprint. ``POST .../lifecycle/suspend`` and
``.../unsuspend`` (help-desk admins may) and ``.../deactivate`` (final) change its status
through the app's own registry, so the mTLS path refuses a suspended device at once in this
process and within the registry's poll elsewhere; a deactivated device is never resumed
(409 ``DEVICE_DEACTIVATED``). Changes are ``device.lifecycle.*`` events stamped with the
admin.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from certbound.admin.roles import Permission
from certbound.devices import events
from certbound.devices.registry import Device, DeviceRegistry, DeviceStatus
from certbound.devices.trust import DeviceTrust
from certbound.syslog.events import Event
from certbound.web.api import pagination
from certbound.web.api.operation import Call, Operation, Param, json_response

DEVICES, DEVICE = "/api/v1/devices", "/api/v1/devices/{id}"
TAG = "devices"

Change = Callable[[DeviceRegistry, str], tuple[Device, Device]]
Describe = Callable[[Device, Device], Event]


def _registry(call: Call) -> DeviceRegistry:
    trust: DeviceTrust = call.state.device_trust
    return trust.registry


def list_devices(call: Call) -> Response:
    registry = _registry(call)
    status = call.query.get("status")
    wanted = None if status is None else DeviceStatus(status)
    user = call.query.get("user")
    page = pagination.fetch(
        lambda limit, after: registry.list(status=wanted, user=user, limit=limit, after=after),
        lambda device: device.id,
        call.page,
    )
    return pagination.response(call.request, page, Device.to_dict)


def show_device(call: Call) -> Response:
    return json_response(_registry(call).get(call.path["id"]).to_dict())


def _lifecycle(call: Call, change: Change, describe: Describe) -> Response:
    before, after = change(_registry(call), call.path["id"])
    call.record(describe(before, after), before=before.to_dict(), after=after.to_dict())
    return json_response(after.to_dict())


def suspend(call: Call) -> Response:
    return _lifecycle(call, DeviceRegistry.suspend, events.device_suspended)


def unsuspend(call: Call) -> Response:
    return _lifecycle(call, DeviceRegistry.resume, events.device_unsuspended)


def deactivate(call: Call) -> Response:
    return _lifecycle(call, DeviceRegistry.deactivate, events.device_deactivated)


_FILTERS = (
    Param("status", "Only devices of this status.", tuple(s.value for s in DeviceStatus)),
    Param("user", "Only the devices mapped to this user."),
)
_READ = Permission.DEVICES_READ
_LIFECYCLE = DEVICE + "/lifecycle/"

OPERATIONS = (
    Operation("GET", DEVICES, "List devices", TAG, _READ, list_devices, query=_FILTERS, paged=True),
    Operation("GET", DEVICE, "Show a device", TAG, _READ, show_device),
    Operation("POST", _LIFECYCLE + "suspend", "Suspend a device", TAG, Permission.DEVICES_SUSPEND,
              suspend),
    Operation("POST", _LIFECYCLE + "unsuspend", "Resume a suspended device", TAG,
              Permission.DEVICES_SUSPEND, unsuspend),
    Operation("POST", _LIFECYCLE + "deactivate", "Deactivate a device for good", TAG,
              Permission.DEVICES_DEACTIVATE, deactivate),
)  # fmt: skip
