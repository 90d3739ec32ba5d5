"""``certbound policy``: the real command in a subprocess against the test database (SQLite
and PostgreSQL): policies, rules and the catch-all, assignment, the change warning in
yellow, events and refused events, simulate (exit 0 allow, 1 deny) and replay of logged
token requests against a draft."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certbound.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from certbound.clock import SystemClock
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata
from certbound.pki import devpki
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.policy.simulate import NO_DEVICE, DeviceContext, SignOn
from certbound.policy.store import CompiledPolicies
from certbound.storage.database import Database
from certbound.syslog import chain
from certbound.syslog.events import Event, EventType, Outcome, Result
from certbound.syslog.rows import event_row

Run = Callable[..., subprocess.CompletedProcess[str]]
Logged = Callable[[str], list[dict[str, Any]]]
PKI = devpki.build_dev_pki()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert f"error {code}:" in result.stderr, result.stderr
    return result.stderr


@pytest.fixture
def app(database: Database) -> str:
    metadata = ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC)
    created, _ = Apps(database, SystemClock()).create("Web", metadata, client_id="web")
    return created.id


def test_policies_rules_and_their_events(cmd: Run, logged: Logged, app: str) -> None:
    created = json.loads(ok(cmd("policy", "create", "Devices", "--description", "d", "--json")))
    policy = created["policy"]
    assert policy["rules"][0]["catchAll"] and policy["rules"][0]["action"] == "DENY"
    ok(cmd("policy", "assign", "Devices", "web"))
    added = cmd("policy", "rule", "add", "Devices", "--name", "Managed devices", "--action",
                "allow", "--device-trust", "VERIFIED", "--device-status", "ACTIVE")  # fmt: skip
    assert "added rule Managed devices" in ok(added) and added.stderr == ""
    shadowing = cmd("policy", "rule", "add", "Devices", "--name", "Everyone", "--action",
                    "ALLOW", "--priority", "1")  # fmt: skip
    ok(shadowing)
    assert "warning SHADOWED" in shadowing.stderr and "Managed devices" in shadowing.stderr
    shown = json.loads(ok(cmd("policy", "show", policy["id"], "--json")))
    assert [r["name"] for r in shown["rules"]] == ["Everyone", "Managed devices", "Catch-all"]
    assert shown["appIds"] == [app] and shown["revision"] == 4
    assert "Managed devices" in ok(cmd("policy", "show", "Devices"))
    ok(cmd("policy", "rule", "move", "Devices", "Managed devices", "1"))
    ok(cmd("policy", "rule", "update", "Devices", "Everyone", "--action", "DENY",
           "--conditions", '{"deviceTrust": "NOT_VERIFIED"}'))  # fmt: skip
    ok(cmd("policy", "rule", "delete", "Devices", "Everyone"))
    listed = json.loads(ok(cmd("policy", "list", "--json")))["policies"]
    assert [p["name"] for p in listed] == ["Default Policy", "Devices"]
    creates = logged("policy.rule.create")
    assert [e["severity"] for e in creates] == ["INFO", "WARN"]
    warning = creates[1]["debugContext"]["debugData"]["warnings"][0]
    assert warning["kind"] == "SHADOWED" and warning["severity"] == "ERROR"
    details = creates[1]["debugContext"]["debugData"]["changeDetails"]
    assert len(details["after"]["rules"]) == len(details["before"]["rules"]) + 1
    assert [e["target"][0]["alternateId"] for e in logged("policy.lifecycle.update")] == ["Devices"]
    assert logged("policy.lifecycle.update")[0]["target"][1]["alternateId"] == "web"
    for event_type in ("policy.rule.reorder", "policy.rule.update", "policy.rule.delete"):
        (event,) = logged(event_type)
        assert event["outcome"]["result"] == "SUCCESS"
    ok(cmd("policy", "delete", "Devices"))
    assert (
        logged("policy.lifecycle.delete")[0]["debugContext"]["debugData"]["changeDetails"]["after"]
        is None
    )


def test_refusals_exit_2_and_are_logged(cmd: Run, logged: Logged, app: str) -> None:
    ok(cmd("policy", "create", "Devices"))
    refused(cmd("policy", "create", "Devices"), "NAME_TAKEN")
    refused(cmd("policy", "rule", "delete", "Devices", "Catch-all"), "CATCH_ALL_RULE_FIXED")
    refused(cmd("policy", "rule", "move", "Devices", "Catch-all", "1"), "CATCH_ALL_RULE_FIXED")
    refused(cmd("policy", "rule", "update", "Devices", "Catch-all", "--device-trust",
                "VERIFIED"), "CATCH_ALL_RULE_FIXED")  # fmt: skip
    refused(cmd("policy", "rule", "add", "Devices", "--name", "x", "--action", "ALLOW",
                "--conditions", '{"deviceTrust": "MAYBE"}'), "POLICY_INVALID")  # fmt: skip
    refused(cmd("policy", "rule", "add", "Devices", "--name", "x", "--action", "ALLOW",
                "--group", "nobody"), "GROUP_NOT_FOUND")  # fmt: skip
    refused(cmd("policy", "show", "Nothing"), "POLICY_NOT_FOUND")
    refused(cmd("policy", "assign", "Devices", "nobody"), "APP_NOT_FOUND")
    refused(cmd("policy", "delete", "Default Policy"), "POLICY_INVALID")
    as_json = cmd("policy", "rule", "delete", "Devices", "nothing", "--json")
    assert as_json.returncode == EXIT_USAGE
    assert json.loads(as_json.stdout)["error"]["reason"] == "RULE_NOT_FOUND"
    failed = [e for e in logged("policy.rule.delete") if e["outcome"]["result"] == "FAILURE"]
    assert [e["outcome"]["reason"] for e in failed] == ["CATCH_ALL_RULE_FIXED", "RULE_NOT_FOUND"]
    assert logged("policy.lifecycle.create")[1]["outcome"]["reason"] == "NAME_TAKEN"


def test_simulate(cmd: Run, database: Database, app: str, tmp_path: Path) -> None:
    store = TrustStore(database, SystemClock())
    off = RevocationPolicy(mode=Mode.OFF)
    store.add(devpki.pem_bundle([PKI.intermediate, PKI.root]), "dev", revocation=off)
    ok(cmd("policy", "create", "Devices"))
    ok(cmd("policy", "assign", "Devices", "web"))
    ok(cmd("policy", "rule", "add", "Devices", "--name", "Managed devices", "--action",
           "ALLOW", "--device-trust", "VERIFIED"))  # fmt: skip
    good, foreign = tmp_path / "good.pem", tmp_path / "foreign.pem"
    good.write_bytes(PKI.devices["good"].cert_pem())
    foreign.write_bytes(PKI.devices["foreign"].cert_pem())
    allowed = cmd("policy", "simulate", "--app", "web", "--cert", str(good), "--ip", "10.0.0.1")
    assert "Decision: ALLOW" in ok(allowed) and "Managed devices: MATCHED" in allowed.stdout
    denied = cmd("policy", "simulate", "--app", app, "--cert", str(foreign), "--json")
    assert denied.returncode == EXIT_FAILED, denied.stderr
    answer = json.loads(denied.stdout)
    assert answer["reason"] == "POLICY_NOT_MATCHED"
    assert answer["deviceTrust"]["reason"] == "UNKNOWN_CA"
    draft = json.loads(ok(cmd("policy", "show", "Devices", "--json")))
    draft["rules"][-1]["action"] = "ALLOW"
    (tmp_path / "draft.json").write_text(json.dumps(draft))
    ok(cmd("policy", "simulate", "--app", "web", "--cert", str(foreign), "--draft",
           str(tmp_path / "draft.json")))  # fmt: skip
    bad = cmd("policy", "simulate", "--app", "web", "--at", "yesterday")
    assert bad.returncode == EXIT_USAGE and "--at" in bad.stderr


def test_replay_lists_the_decisions_a_draft_changes(
    cmd: Run, database: Database, app: str, tmp_path: Path
) -> None:
    ok(cmd("policy", "create", "Devices"))
    ok(cmd("policy", "assign", "Devices", "web"))
    ok(cmd("policy", "rule", "add", "Devices", "--name", "Managed devices", "--action",
           "ALLOW", "--device-trust", "VERIFIED"))  # fmt: skip
    logged = _token_events(database, app)
    with database.session() as session:
        chain.append(session, [event_row(e) for e in logged])
    draft = json.loads(ok(cmd("policy", "show", "Devices", "--json")))
    draft["rules"][-1]["action"] = "ALLOW"  # the draft lets unverified devices in
    path = tmp_path / "draft.json"
    path.write_text(json.dumps(draft))
    report = json.loads(
        ok(cmd("policy", "replay", "Devices", "--draft", str(path), "--days", "1", "--json"))
    )
    assert (report["evaluated"], report["changed"]) == (2, 1)
    (change,) = report["changes"]
    assert change["eventUuid"] == logged[1].uuid
    assert (change["before"], change["after"]) == ("DENY", "ALLOW")
    text = ok(cmd("policy", "replay", "Devices", "--draft", str(path), "--days", "1"))
    assert "1 decision(s) would change" in text and logged[1].uuid in text
    refused(cmd("policy", "replay", "Devices", "--draft", str(tmp_path / "none.json")),
            "POLICY_INVALID")  # fmt: skip


def _token_events(database: Database, app: str) -> list[Any]:
    """Two logged token requests for ``app``: a verified device allowed, an unverified one
    refused by the catch-all (and one for another app, which replay leaves out)."""
    clock = SystemClock()
    path = (PKI.devices["good"].cert, PKI.intermediate.cert, PKI.root.cert)
    anchors = TrustStore(database, clock).load()
    sign_on = SignOn(CompiledPolicies(database, clock), lambda offline=False: anchors)
    verified = DeviceContext(True, None, "ACTIVE", path, None)
    out = []
    for app_id, device in ((app, verified), (app, NO_DEVICE), ("app_other", NO_DEVICE)):
        decision = sign_on.evaluate(app_id, device, at=clock.now())
        result = Result.SUCCESS if decision.allowed else Result.FAILURE
        event = Event(
            EventType.APP_OAUTH2_TOKEN_GRANT, "token", Outcome(result, decision.reason),
            policy_evaluation=decision.to_dict(),
        )  # fmt: skip
        out.append(dataclasses.replace(event, published=clock.now()))
    return out
