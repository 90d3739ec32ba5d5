"""``certbound doctor``: every policy analysed against the database (SQLite and
PostgreSQL): the classic mistake (an ALLOW rule without conditions above the mTLS rule),
the default policy's ALLOW catch-all for an app that requires device trust, dangling
references after a group is deleted; exit 1 on an ERROR, 0 once fixed; --json."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from certbound.cli.main import EXIT_FAILED, EXIT_OK
from certbound.clock import SystemClock
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata
from certbound.storage.database import Database

Run = Callable[..., subprocess.CompletedProcess[str]]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    return result.stdout


def test_a_fresh_database_is_healthy(cmd: Run) -> None:
    assert "0 error(s)" in ok(cmd("doctor"))


def test_the_classic_mistake_and_its_fix(cmd: Run, database: Database) -> None:
    metadata = ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC)
    Apps(database, SystemClock()).create("Web", metadata, client_id="web")
    flagged = json.loads(cmd("doctor", "--json").stdout)
    (default,) = flagged["policies"]
    assert [f["kind"] for f in default["findings"]] == ["NO_DEVICE_TRUST_RULE"]
    ok(cmd("policy", "create", "Devices"))
    ok(cmd("policy", "assign", "Devices", "web"))
    ok(cmd("policy", "rule", "add", "Devices", "--name", "Managed devices", "--action",
           "ALLOW", "--device-trust", "VERIFIED"))  # fmt: skip
    assert "0 error(s)" in ok(cmd("doctor"))
    ok(cmd("policy", "rule", "add", "Devices", "--name", "Everyone", "--action", "ALLOW",
           "--priority", "1"))  # fmt: skip
    done = cmd("doctor")
    assert done.returncode == EXIT_FAILED, done.stderr
    assert "ERROR SHADOWED" in done.stdout and "Managed devices" in done.stdout
    assert "fix: Move rule 'Managed devices' above rule 'Everyone'" in done.stdout
    as_json = cmd("doctor", "--json")
    assert as_json.returncode == EXIT_FAILED
    report = json.loads(as_json.stdout)
    devices = next(p for p in report["policies"] if p["name"] == "Devices")
    assert {f["kind"] for f in devices["findings"]} >= {"SHADOWED", "NO_DEVICE_TRUST_RULE"}
    assert report["errors"] >= 2
    ok(cmd("policy", "rule", "delete", "Devices", "Everyone"))
    assert "0 error(s)" in ok(cmd("doctor"))


def test_a_deleted_group_leaves_a_dangling_reference(cmd: Run) -> None:
    ok(cmd("group", "create", "staff"))
    ok(cmd("policy", "create", "Staff"))
    ok(cmd("policy", "rule", "add", "Staff", "--name", "Staff only", "--action", "ALLOW",
           "--group", "staff"))  # fmt: skip
    ok(cmd("group", "delete", "staff"))
    done = cmd("doctor")
    assert done.returncode == EXIT_FAILED
    assert "DANGLING_REFERENCE" in done.stdout and "groups.anyOf" in done.stdout
