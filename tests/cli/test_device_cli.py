"""``certbound device list|show|suspend|resume|deactivate``: the real command in a subprocess
against the test database (SQLite and PostgreSQL), devices registered by
``DeviceRegistry.observe`` in this process, events read back from the System Log."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certbound.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from certbound.clock import FixedClock
from certbound.devices.mapping import MappingRules
from certbound.devices.registry import Device, DeviceRegistry, DeviceStatus
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.pki.devpki import Issued
from certbound.storage.database import Database

Run = Callable[..., subprocess.CompletedProcess[str]]
Logged = Callable[[str], list[dict[str, Any]]]
DEFAULT_RULES = MappingRules.parse(["san_email", "san_upn", "cn"])


@pytest.fixture
def env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The conftest's environment, with a data directory of the test's own (the spool)."""
    return {**env, "CERTBOUND_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture(scope="module")
def issuer() -> Issued:
    return devpki.ca("Device CLI CA")


@pytest.fixture
def register(database: Database, clock: FixedClock, issuer: Issued) -> Callable[..., Device]:
    """Register a device as the mTLS path would: ``register("name", email=..., rules=...)``."""

    def make(
        name: str,
        *,
        email: str | None = None,
        rules: MappingRules = DEFAULT_RULES,
        serial: int | None = None,
        by: Issued | None = None,
    ) -> Device:
        sans: list[x509.GeneralName] = [x509.RFC822Name(email)] if email else []
        profile = devpki.Profile(sans=sans, serial=serial)
        leaf = devpki.issue(f"{name}.devices.test", by or issuer, profile=profile).cert
        clock.advance(dt.timedelta(seconds=1))  # one first_seen each: a known list order
        return DeviceRegistry(database, clock, rules).observe(leaf, der(leaf))

    return make


def registry(database: Database) -> DeviceRegistry:
    return DeviceRegistry(database, FixedClock(dt.datetime.now(dt.UTC)), DEFAULT_RULES)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    return result.stdout


def test_list_table_json_and_pages(cmd: Run, register: Callable[..., Device]) -> None:
    alice = register("alice-laptop", email="alice@corp.example")
    nobody = register("kiosk", rules=MappingRules.parse(["san_email"]))
    out = ok(cmd("device", "list"))
    for item in (alice, nobody):
        assert item.id in out and item.subject_dn in out
    assert "alice@corp.example" in out and "(unmapped)" in out and "ACTIVE" in out
    assert out.count("ACTIVE") == 2

    data = json.loads(ok(cmd("device", "list", "--json")))
    assert data == {"devices": [alice.to_dict(), nobody.to_dict()], "next": None}

    first = json.loads(ok(cmd("device", "list", "--limit", "1", "--json")))
    assert [d["id"] for d in first["devices"]] == [alice.id] and first["next"] == alice.id
    assert f"more: certbound device list --after {alice.id}" in ok(
        cmd("device", "list", "--limit", "1")
    )
    rest = json.loads(ok(cmd("device", "list", "--after", alice.id, "--json")))
    assert [d["id"] for d in rest["devices"]] == [nobody.id]

    mine = json.loads(ok(cmd("device", "list", "--user", "alice@corp.example", "--json")))
    assert [d["id"] for d in mine["devices"]] == [alice.id]
    unmapped = json.loads(ok(cmd("device", "list", "--unmapped", "--json")))
    assert [d["id"] for d in unmapped["devices"]] == [nobody.id]


def test_list_empty_and_by_status(cmd: Run, register: Callable[..., Device]) -> None:
    assert "no devices" in ok(cmd("device", "list"))
    item = register("tablet")
    ok(cmd("device", "suspend", item.id))
    suspended = json.loads(ok(cmd("device", "list", "--status", "suspended", "--json")))
    assert [d["status"] for d in suspended["devices"]] == ["SUSPENDED"]
    active = json.loads(ok(cmd("device", "list", "--status", "ACTIVE", "--json")))
    assert active["devices"] == []


def test_show_by_any_reference(cmd: Run, register: Callable[..., Device]) -> None:
    item = register("phone", email="bob@corp.example", serial=0xC0FFEE)
    for ref in (item.id, "c0:ff:ee", item.thumbprint):
        assert json.loads(ok(cmd("device", "show", ref, "--json"))) == item.to_dict()
    out = ok(cmd("device", "show", "C0FFEE"))
    assert item.id in out and "ACTIVE" in out and item.subject_dn in out
    assert "bob@corp.example (by san_email)" in out and item.thumbprint in out
    assert "email:bob@corp.example" in out


def test_suspend_and_resume_are_logged(
    cmd: Run, register: Callable[..., Device], database: Database, logged: Logged
) -> None:
    item = register("desktop", email="carol@corp.example")
    out = ok(cmd("device", "suspend", item.serial_number))
    assert item.id in out and "ACTIVE -> SUSPENDED" in out
    assert registry(database).get(item.id).status is DeviceStatus.SUSPENDED
    assert "already SUSPENDED; nothing changed" in ok(cmd("device", "suspend", item.id))
    resumed = json.loads(ok(cmd("device", "resume", item.id, "--json")))
    assert (resumed["before"]["status"], resumed["after"]["status"]) == ("SUSPENDED", "ACTIVE")

    suspends = logged("device.lifecycle.suspend")
    assert len(suspends) == 2
    event = suspends[0]
    assert event["outcome"] == {"result": "SUCCESS", "reason": None}
    assert event["actor"]["id"] == "cli"
    assert event["target"] == [
        {
            "id": item.id,
            "type": "Device",
            "alternateId": item.subject_dn,
            "displayName": "carol@corp.example",
        }
    ]
    details = event["debugContext"]["debugData"]["changeDetails"]
    assert details == {"before": {"status": "ACTIVE"}, "after": {"status": "SUSPENDED"}}
    again = suspends[1]["debugContext"]["debugData"]["changeDetails"]
    assert again == {"before": {"status": "SUSPENDED"}, "after": {"status": "SUSPENDED"}}
    [unsuspend] = logged("device.lifecycle.unsuspend")
    assert unsuspend["debugContext"]["debugData"]["changeDetails"]["after"] == {"status": "ACTIVE"}


def test_deactivate_asks_and_is_final(
    cmd: Run,
    env: dict[str, str],
    register: Callable[..., Device],
    database: Database,
    logged: Logged,
) -> None:
    item = register("old-laptop", rules=MappingRules.parse([]))
    declined = subprocess.run(
        [sys.executable, "-m", "certbound", "device", "deactivate", item.id],
        input="n\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert declined.returncode == EXIT_FAILED and "This is final" in declined.stdout
    assert registry(database).get(item.id).status is DeviceStatus.ACTIVE
    assert logged("device.lifecycle.deactivate") == []

    out = ok(cmd("device", "deactivate", item.id, "--yes"))
    assert "ACTIVE -> DEACTIVATED" in out
    assert registry(database).get(item.id).status is DeviceStatus.DEACTIVATED
    [event] = logged("device.lifecycle.deactivate")
    assert event["target"][0]["displayName"] == item.serial_number  # unmapped: the serial

    refused = cmd("device", "resume", item.id)
    assert refused.returncode == EXIT_USAGE
    assert refused.stderr.startswith("error DEVICE_DEACTIVATED: ")
    [failure] = logged("device.lifecycle.unsuspend")
    assert failure["outcome"] == {"result": "FAILURE", "reason": "DEVICE_DEACTIVATED"}
    assert failure["target"][0]["id"] == item.id
    assert failure["debugContext"]["debugData"]["status"] == "DEACTIVATED"


def test_an_unknown_device_exits_2(
    cmd: Run, register: Callable[..., Device], logged: Logged
) -> None:
    register("known")
    for args in (("show", "dev_nosuchdevice00"), ("suspend", "ABCDEF"), ("deactivate", "x")):
        result = cmd("device", *args)
        assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
        assert result.stderr.startswith("error DEVICE_NOT_FOUND: "), result.stderr
        assert "certbound device list" in result.stderr  # the fix
    data = json.loads(cmd("device", "show", "ABCDEF", "--json").stdout)
    assert data["error"]["reason"] == "DEVICE_NOT_FOUND"
    [failure] = logged("device.lifecycle.suspend")
    assert failure["outcome"] == {"result": "FAILURE", "reason": "DEVICE_NOT_FOUND"}
    assert failure["target"][0]["id"] == "ABCDEF"
    [refused] = logged("device.lifecycle.deactivate")
    assert refused["outcome"]["reason"] == "DEVICE_NOT_FOUND"


def test_an_ambiguous_serial_names_the_devices(cmd: Run, register: Callable[..., Device]) -> None:
    one = register("twin-a", serial=0x7777)
    two = register("twin-b", serial=0x7777, by=devpki.ca("Device CLI Other CA"))
    result = cmd("device", "suspend", "7777")
    assert result.returncode == EXIT_USAGE
    assert "ambiguous" in result.stderr and one.id in result.stderr and two.id in result.stderr


def test_a_bad_mapping_rule_is_a_usage_error(cmd: Run, env: dict[str, str]) -> None:
    env["CERTBOUND_DEVICE_MAPPING"] = "san_email,san_mail"
    result = cmd("device", "list")
    assert result.returncode == EXIT_USAGE
    assert "unknown rule 'san_mail'" in result.stderr


def test_a_running_registry_sees_the_cli_suspension_within_status_ttl(
    cmd: Run, database: Database, clock: FixedClock, issuer: Issued
) -> None:
    """The server's registry (here, this process) and the CLI (another process)."""
    leaf = devpki.issue("served.devices.test", issuer).cert
    served = DeviceRegistry(database, clock, DEFAULT_RULES, status_ttl=2)
    item = served.observe(leaf, der(leaf))
    ok(cmd("device", "suspend", item.id))
    assert served.observe(leaf, der(leaf)).status is DeviceStatus.ACTIVE  # cached
    clock.advance(dt.timedelta(seconds=2))
    assert served.observe(leaf, der(leaf)).status is DeviceStatus.SUSPENDED
    ok(cmd("device", "resume", item.id))
    clock.advance(dt.timedelta(seconds=2))
    assert served.observe(leaf, der(leaf)).status is DeviceStatus.ACTIVE
