"""``/api/v1/devices`` over a real server on both databases: a help-desk admin suspends and
resumes a device (the registry refuses it at once) but cannot deactivate it; deactivation is
final; every change is an event naming the admin."""

from __future__ import annotations

from typing import Any

from certbound.admin.roles import Role
from certbound.devices.registry import DeviceStatus

HELP, ORG, APP_ADMIN = Role.HELP_DESK_ADMIN, Role.ORG_ADMIN, Role.APP_ADMIN
DEVICES = "/api/v1/devices"


def test_help_desk_suspends_and_resumes_but_cannot_deactivate(
    api: Any, dev_pki: Any, refused: Any
) -> None:
    cert = dev_pki.devices["good"].cert
    device = api.device(cert)
    url = f"{DEVICES}/{device.id}"
    suspended = api.call(HELP, "POST", f"{url}/lifecycle/suspend")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "SUSPENDED"
    assert api.device(cert).status is DeviceStatus.SUSPENDED  # the app's registry, at once
    listed = api.call(HELP, "GET", DEVICES, params={"status": "SUSPENDED"}).json()
    assert [d["id"] for d in listed] == [device.id]
    resumed = api.call(HELP, "POST", f"{url}/lifecycle/unsuspend")
    assert resumed.json()["status"] == "ACTIVE"
    refused(api.call(HELP, "POST", f"{url}/lifecycle/deactivate"), 403, "FORBIDDEN_ROLE")
    refused(api.call(APP_ADMIN, "POST", f"{url}/lifecycle/suspend"), 403, "FORBIDDEN_ROLE")
    [event] = api.events("device.lifecycle.suspend")
    assert event["actor"]["id"] == api.admins[HELP].id
    assert event["debugContext"]["debugData"]["changeDetails"] == {
        "before": {"status": "ACTIVE"},
        "after": {"status": "SUSPENDED"},
    }
    denied = api.events("admin.access.deny")
    assert [e["debugContext"]["debugData"]["role"] for e in denied] == [
        "HELP_DESK_ADMIN",
        "APP_ADMIN",
    ]


def test_deactivation_is_final(api: Any, dev_pki: Any, refused: Any) -> None:
    device = api.device(dev_pki.devices["cn-only"].cert)
    url = f"{DEVICES}/{device.id}"
    assert api.call(ORG, "POST", f"{url}/lifecycle/deactivate").json()["status"] == "DEACTIVATED"
    refused(api.call(ORG, "POST", f"{url}/lifecycle/unsuspend"), 409, "DEVICE_DEACTIVATED")
    by_serial = api.call(HELP, "GET", f"{DEVICES}/{device.serial_number}")
    assert by_serial.json()["id"] == device.id
    refused(api.call(HELP, "GET", f"{DEVICES}/dev_0000000000000000"), 404, "DEVICE_NOT_FOUND")
    refused(api.call(HELP, "GET", f"{DEVICES}/not-a-serial"), 404, "DEVICE_NOT_FOUND")
