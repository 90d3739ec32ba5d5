"""The policy layer's events: changes with the whole Policy JSON before and after and their
warnings (severity WARN), zones, refusals, and the login's sign-on decision (ALLOW or DENY
with its reason and policyEvaluationDetail); each in the shape ``Event.to_dict`` writes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from certbound.errors import CertboundError, ReasonCode
from certbound.policy import events
from certbound.policy.analysis import Finding
from certbound.policy.engine import compile_policy
from certbound.policy.model import Action, Conditions, DeviceTrustRequirement, Policy, Rule, Zone
from certbound.policy.request import SignOnRequest
from certbound.policy.store import PolicyChange, ZoneChange
from certbound.syslog.events import Actor, Client, Event, EventType, Target

NOW = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)
VERIFIED = Conditions(device_trust=DeviceTrustRequirement.VERIFIED)
CATCH_ALL = Rule("rul_last", "Catch-all", Action.DENY, catch_all=True)
MANAGED = Rule("rul_managed", "Managed devices", Action.ALLOW, VERIFIED)
BEFORE = Policy("pol_a", "Devices", None, (CATCH_ALL,), ("app_1",), revision=1)
AFTER = dataclasses.replace(BEFORE, rules=(MANAGED, CATCH_ALL), revision=2)
APP = Target("app_1", "AppInstance", "web", "Web")


def body(event: Event) -> dict[str, Any]:
    return dataclasses.replace(event, published=NOW).to_dict()


def test_a_rule_change_has_the_policy_before_and_after() -> None:
    change = PolicyChange(BEFORE, AFTER, rule=MANAGED)
    data = body(events.policy_changed(EventType.POLICY_RULE_CREATE, change))
    assert data["eventType"] == "policy.rule.create" and data["severity"] == "INFO"
    assert [t["type"] for t in data["target"]] == ["PolicyEntity", "PolicyRule"]
    debug = data["debugContext"]["debugData"]
    assert debug["changeDetails"] == {"before": BEFORE.to_dict(), "after": AFTER.to_dict()}
    assert "warnings" not in debug
    assert data["displayMessage"] == (
        "Policy rule created: Devices (pol_a), rule Managed devices (rul_managed)"
    )


def test_warnings_make_it_a_warn_event() -> None:
    finding = Finding("SHADOWED", "ERROR", "pol_a", "rul_managed", "never matches", "rul_x", "move")
    change = PolicyChange(BEFORE, AFTER, (finding,), MANAGED)
    data = body(events.policy_changed(EventType.POLICY_RULE_REORDER, change, app=APP))
    assert data["severity"] == "WARN" and data["displayMessage"].endswith("(1 warning)")
    assert data["debugContext"]["debugData"]["warnings"] == [finding.to_dict()]
    assert data["target"][-1]["alternateId"] == "web"


def test_created_deleted_and_moved_apps() -> None:
    created = body(
        events.policy_changed(EventType.POLICY_LIFECYCLE_CREATE, PolicyChange(None, BEFORE))
    )
    assert created["debugContext"]["debugData"]["changeDetails"]["before"] is None
    other = dataclasses.replace(BEFORE, id="pol_b", name="Other")
    moved = PolicyChange(BEFORE, AFTER, moved_from=other)
    data = body(events.policy_changed(EventType.POLICY_LIFECYCLE_UPDATE, moved, app=APP))
    assert data["debugContext"]["debugData"]["movedFrom"] == {"id": "pol_b", "name": "Other"}
    deleted = body(
        events.policy_changed(EventType.POLICY_LIFECYCLE_DELETE, PolicyChange(AFTER, None))
    )
    assert deleted["debugContext"]["debugData"]["policy"] == AFTER.to_dict()


def test_zone_events_and_refusals() -> None:
    zone = Zone("nzn_1", "office", ("10.0.0.0/8",))
    data = body(
        events.zone_changed(EventType.ZONE_LIFECYCLE_DELETE, ZoneChange(zone, None, ("pol_a",)))
    )
    assert data["target"][0] == {"id": "nzn_1", "type": "NetworkZone", "alternateId": "office",
                                 "displayName": None}  # fmt: skip
    assert data["debugContext"]["debugData"]["referencedBy"] == ["pol_a"]
    error = CertboundError(ReasonCode.CATCH_ALL_RULE_FIXED, "stays last", {"ruleId": "rul_last"})
    refused = body(events.refused(EventType.POLICY_RULE_DELETE, events.RULE_TARGET, "P x", error))
    assert refused["outcome"] == {"result": "FAILURE", "reason": "CATCH_ALL_RULE_FIXED"}
    assert refused["severity"] == "WARN"
    assert refused["debugContext"]["debugData"]["context"] == {"ruleId": "rul_last"}


def test_the_sign_on_decision() -> None:
    compiled = compile_policy(AFTER, {})
    request = SignOnRequest("app_1", "usr_1", frozenset(), None, NOW, False,
                            "NO_CLIENT_CERTIFICATE", None, None)  # fmt: skip
    decision = compiled.evaluate(request)
    actor = Actor("usr_1", "User", "alice", None)
    data = body(events.sign_on_evaluated(decision, actor=actor, app_target=APP,
                                         http_client=Client("192.0.2.1"), device=None))  # fmt: skip
    assert data["eventType"] == "policy.evaluate_sign_on"
    assert data["outcome"] == {"result": "DENY", "reason": "POLICY_NOT_MATCHED"}
    assert data["policyEvaluationDetail"] == decision.to_dict()
    assert [t["id"] for t in data["target"]] == ["app_1", "pol_a", "rul_last"]
    allowed = compile_policy(
        dataclasses.replace(
            AFTER,
            rules=(CATCH_ALL.__class__("rul_last", "Catch-all", Action.ALLOW, catch_all=True),),
        ),
        {},
    ).evaluate(request)
    ok = body(events.sign_on_evaluated(allowed, actor=actor, app_target=APP,
                                       http_client=Client(), device={"verified": False},
                                       detail={"given": True}))  # fmt: skip
    assert ok["outcome"] == {"result": "ALLOW", "reason": None} and ok["severity"] == "INFO"
    assert ok["policyEvaluationDetail"] == {"given": True}
    assert ok["deviceTrust"] == {"verified": False}
