"""``certbound zone``: the real command in a subprocess against the test database (SQLite
and PostgreSQL): create, list, update, delete, refusals, events, and the warning a deleted
zone that rules still name leaves."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from certbound.cli.main import EXIT_OK, EXIT_USAGE

Run = Callable[..., subprocess.CompletedProcess[str]]
Logged = Callable[[str], list[dict[str, Any]]]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    return result.stdout


def test_zones_and_their_events(cmd: Run, logged: Logged) -> None:
    created = json.loads(ok(cmd("zone", "create", "office", "--cidr", "10.1.2.3/8", "--cidr",
                                "2001:db8::/32", "--json")))  # fmt: skip
    zone = created["zone"]
    assert zone["id"].startswith("nzn_") and zone["cidrs"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert "office" in ok(cmd("zone", "list")) and "10.0.0.0/8" in ok(cmd("zone", "list"))
    ok(cmd("zone", "update", "office", "--name", "hq", "--cidr", "192.168.0.0/16"))
    listed = json.loads(ok(cmd("zone", "list", "--json")))["zones"]
    assert listed == [{"id": zone["id"], "name": "hq", "cidrs": ["192.168.0.0/16"]}]
    ok(cmd("policy", "create", "Office"))
    ok(cmd("policy", "rule", "add", "Office", "--name", "At HQ", "--action", "ALLOW",
           "--zone", "hq"))  # fmt: skip
    deleted = cmd("zone", "delete", "hq")
    assert "deleted zone hq" in ok(deleted)
    assert "warning DANGLING_REFERENCE" in deleted.stderr
    (update,) = logged("zone.lifecycle.update")
    details = update["debugContext"]["debugData"]["changeDetails"]
    assert details["before"]["name"] == "office" and details["after"]["name"] == "hq"
    (removed,) = logged("zone.lifecycle.delete")
    assert removed["debugContext"]["debugData"]["referencedBy"]
    assert logged("zone.lifecycle.create")[0]["target"][0]["type"] == "NetworkZone"


def test_refusals(cmd: Run, logged: Logged) -> None:
    ok(cmd("zone", "create", "office", "--cidr", "10.0.0.0/8"))
    for args, code in (
        (("zone", "create", "office", "--cidr", "10.0.0.0/8"), "NAME_TAKEN"),
        (("zone", "create", "bad", "--cidr", "10.0.0.0/33"), "POLICY_INVALID"),
        (("zone", "update", "nowhere", "--name", "x"), "ZONE_NOT_FOUND"),
        (("zone", "delete", "nowhere"), "ZONE_NOT_FOUND"),
    ):
        result = cmd(*args)
        assert result.returncode == EXIT_USAGE and f"error {code}:" in result.stderr, result.stderr
    assert [e["outcome"]["reason"] for e in logged("zone.lifecycle.create")] == [
        None,
        "NAME_TAKEN",
        "POLICY_INVALID",
    ]
