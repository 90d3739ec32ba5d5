"""Policy analysis: each finding kind, its severity and fix, the coverage rules behind
SHADOWED, and new_findings as the change warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from certbound.policy.analysis import (
    DANGLING_REFERENCE,
    NO_DEVICE_TRUST_RULE,
    SHADOWED,
    UNREACHABLE,
    Finding,
    KnownIds,
    analyse,
    covers,
    new_findings,
)
from certbound.policy.model import Conditions, Policy

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "policy"
KNOWN = KnownIds(
    group_ids=frozenset({"grp_staff", "grp_frozen", "grp_ops"}),
    user_ids=frozenset({"usr_alice", "usr_bob"}),
    ca_ids=frozenset({"ca_corp"}),
    zone_ids=frozenset({"nzn_office", "nzn_vpn"}),
)
MTLS_APP = frozenset({"app_mtls"})


def _rule(i: int, action: str, **conditions: Any) -> dict[str, Any]:
    return {"id": f"rul_{i}", "name": f"Rule {i}", "action": action, "conditions": conditions}


def _policy(
    *rules: dict[str, Any], catch_all: str = "DENY", apps: list[str] | None = None
) -> Policy:
    catch = {"id": "rul_end", "name": "Catch-all", "action": catch_all, "catchAll": True}
    data = {"id": "pol_a", "name": "Apps", "appIds": apps or [], "rules": [*rules, catch]}
    return Policy.from_dict(data)


def _analyse(policy: Policy, requiring: frozenset[str] = frozenset()) -> list[Finding]:
    return analyse(policy, known=KNOWN, apps_requiring_device_trust=requiring)


def _kinds(findings: list[Finding]) -> list[tuple[str, str, str | None, str | None]]:
    return [(f.kind, f.severity, f.rule_id, f.shadowed_by) for f in findings]


def _c(**conditions: Any) -> Conditions:
    return Conditions.from_dict(conditions)


def test_the_seed_mistake_is_an_error() -> None:
    case = json.loads((GOLDEN / "seed_catch_all_above_mtls.json").read_text())
    policy = Policy.from_dict(case["policy"])

    findings = _analyse(policy)

    shadowed = [f for f in findings if f.kind == SHADOWED]
    assert _kinds(shadowed) == [
        (SHADOWED, "ERROR", "rul_2", "rul_1"),
        (SHADOWED, "ERROR", "rul_catchall", "rul_1"),
    ]
    assert "without a verified certificate" in shadowed[0].message
    assert shadowed[0].fix == (
        "Move rule 'Require a device certificate' above rule 'Allow staff apps', and delete "
        "rule 'Allow staff apps' or give it deviceTrust VERIFIED."
    )
    assert "catch-all never decides" in shadowed[1].fix


def test_the_fixed_seed_has_no_finding() -> None:
    case = json.loads((GOLDEN / "seed_fixed_order.json").read_text())

    assert _analyse(Policy.from_dict(case["policy"]), frozenset({"app_portal"})) == []


def test_a_broader_rule_above_with_the_same_action_is_a_warning() -> None:
    policy = _policy(
        _rule(1, "ALLOW", groups={"anyOf": ["grp_staff", "grp_ops"]}),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_staff"]}, network={"include": ["nzn_office"]}),
    )

    findings = _analyse(policy)

    assert _kinds(findings) == [(SHADOWED, "WARNING", "rul_2", "rul_1")]
    assert findings[0].fix == "Move rule 'Rule 2' above rule 'Rule 1', or delete it."


def test_a_broader_rule_above_with_another_action_is_an_error() -> None:
    policy = _policy(
        _rule(1, "DENY", network={"include": ["nzn_office", "nzn_vpn"]}),
        _rule(2, "ALLOW", network={"include": ["nzn_vpn"]}, deviceTrust="VERIFIED"),
    )

    assert _kinds(_analyse(policy)) == [(SHADOWED, "ERROR", "rul_2", "rul_1")]


def test_only_the_first_covering_rule_is_named() -> None:
    policy = _policy(
        _rule(1, "ALLOW", groups={"anyOf": ["grp_staff"]}),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_staff"]}),
        _rule(3, "ALLOW", groups={"anyOf": ["grp_staff"]}, deviceTrust="VERIFIED"),
    )

    assert _kinds(_analyse(policy)) == [
        (SHADOWED, "WARNING", "rul_2", "rul_1"),
        (SHADOWED, "ERROR", "rul_3", "rul_1"),  # staff without a certificate get in
    ]


def _cert(**conditions: Any) -> dict[str, Any]:
    return {"certificate": conditions}


COVERAGE = [
    ({}, {"deviceTrust": "VERIFIED"}, True),
    ({"deviceTrust": "VERIFIED"}, _cert(commonName=["x"]), True),
    ({"deviceTrust": "VERIFIED"}, {"groups": {"anyOf": ["grp_staff"]}}, False),
    ({"deviceTrust": "NOT_VERIFIED"}, {"deviceTrust": "VERIFIED"}, False),
    ({"groups": {"anyOf": ["grp_a"]}}, {"groups": {"anyOf": ["grp_a", "grp_x"]}}, False),
    ({"groups": {"noneOf": ["grp_a"]}}, {"groups": {"noneOf": ["grp_a", "grp_b"]}}, True),
    ({"groups": {"noneOf": ["grp_a", "grp_b"]}}, {"groups": {"noneOf": ["grp_a"]}}, False),
    ({"users": {"exclude": ["usr_b"]}}, {"users": {"include": ["usr_a"]}}, True),
    ({"users": {"exclude": ["usr_b"]}}, {"users": {"include": ["usr_b"]}}, False),
    (_cert(commonName=["dev-*"]), _cert(commonName=["dev-*"]), True),
    (_cert(commonName=["dev-*"]), _cert(commonName=["dev-1*"]), False),
    (_cert(ekuOids=["1.2.3"]), _cert(ekuOids=["1.2.3", "1.2.4"]), True),
    (_cert(ekuOids=["1.2.3", "1.2.4"]), _cert(ekuOids=["1.2.3"]), False),
    (_cert(maxDaysUntilExpiry=30), _cert(maxDaysUntilExpiry=7), True),
    (_cert(maxDaysUntilExpiry=7), _cert(maxDaysUntilExpiry=30), False),
    (_cert(minDaysUntilExpiry=7), _cert(maxDaysUntilExpiry=30), False),
    (_cert(issuerCaIds=["ca_a", "ca_b"]), _cert(issuerCaIds=["ca_a"]), True),
    (_cert(issuerCaIds=["ca_a"]), _cert(issuerSpkiPins=["a" * 64]), False),
    ({"network": {"exclude": ["nzn_a"]}}, {"network": {"include": ["nzn_b"]}}, False),
    ({"timeWindow": {"start": "08:00", "end": "09:00", "timezone": "UTC"}}, {}, False),
    ({"deviceStatus": ["SUSPENDED", "DEACTIVATED"]}, {"deviceStatus": ["SUSPENDED"]}, True),
]


@pytest.mark.parametrize(("earlier", "later", "covered"), COVERAGE)
def test_coverage(earlier: dict[str, Any], later: dict[str, Any], covered: bool) -> None:
    assert covers(_c(**earlier), _c(**later)) is covered


@pytest.mark.parametrize(
    ("conditions", "severity", "words"),
    [
        ({"deviceTrust": "NOT_VERIFIED", "certificate": {"issuerCaIds": ["ca_corp"]}}, "ERROR",
         "NOT_VERIFIED with certificate conditions"),
        ({"groups": {"anyOf": ["grp_staff"], "noneOf": ["grp_staff", "grp_ops"]}}, "ERROR",
         "every id of groups anyOf / noneOf is also excluded: grp_staff"),
        ({"groups": {"anyOf": ["grp_staff", "grp_ops"], "noneOf": ["grp_staff"]}}, "WARNING",
         "grp_staff in both groups anyOf / noneOf"),
        ({"users": {"include": ["usr_bob"], "exclude": ["usr_bob"]}}, "ERROR", "usr_bob"),
        ({"network": {"include": ["nzn_vpn"], "exclude": ["nzn_vpn"]}}, "ERROR", "nzn_vpn"),
        ({"certificate": {"minDaysUntilExpiry": 30, "maxDaysUntilExpiry": 7}}, "ERROR",
         "minDaysUntilExpiry 30 is above maxDaysUntilExpiry 7"),
        ({"deviceTrust": "VERIFIED", "deviceStatus": ["SUSPENDED"]}, "ERROR",
         "a verified device is ACTIVE"),
    ],
)  # fmt: skip
def test_unreachable(conditions: dict[str, Any], severity: str, words: str) -> None:
    policy = _policy(_rule(1, "ALLOW", **conditions))

    findings = _analyse(policy)

    assert _kinds(findings) == [(UNREACHABLE, severity, "rul_1", None)]
    assert words in findings[0].message


def test_an_unreachable_rule_is_not_also_reported_as_shadowed() -> None:
    policy = _policy(
        _rule(1, "ALLOW", groups={"anyOf": ["grp_staff"]}),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_staff"], "noneOf": ["grp_staff"]}),
    )

    assert _kinds(_analyse(policy)) == [(UNREACHABLE, "ERROR", "rul_2", None)]


def test_dangling_references() -> None:
    policy = _policy(
        _rule(1, "ALLOW", groups={"anyOf": ["grp_gone"]}),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_staff"], "noneOf": ["grp_gone"]}),
        _rule(3, "ALLOW", certificate={"issuerCaIds": ["ca_corp", "ca_gone"]}),
        _rule(4, "DENY", network={"include": ["nzn_gone"]}, users={"exclude": ["usr_gone"]}),
    )

    findings = [f for f in _analyse(policy) if f.kind == DANGLING_REFERENCE]

    assert _kinds(findings) == [
        (DANGLING_REFERENCE, "ERROR", "rul_1", None),
        (DANGLING_REFERENCE, "WARNING", "rul_2", None),
        (DANGLING_REFERENCE, "WARNING", "rul_3", None),
        (DANGLING_REFERENCE, "ERROR", "rul_4", None),
    ]
    assert "groups.anyOf: grp_gone" in findings[0].message
    assert "can no longer match" in findings[0].message
    assert "users.exclude: usr_gone; network.include: nzn_gone" in findings[3].message


def test_a_policy_for_an_mtls_app_that_lets_unverified_requests_in() -> None:
    policy = _policy(
        _rule(1, "ALLOW", deviceTrust="VERIFIED"),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_staff"]}),
        apps=["app_mtls", "app_web"],
    )

    findings = _analyse(policy, MTLS_APP)

    assert _kinds(findings) == [(NO_DEVICE_TRUST_RULE, "ERROR", "rul_2", None)]
    assert "app_mtls" in findings[0].message
    assert "app_web" not in findings[0].message
    assert _analyse(policy, frozenset({"app_other"})) == []


def test_an_explicit_deny_for_unverified_devices_closes_the_door() -> None:
    policy = _policy(
        _rule(1, "DENY", deviceTrust="NOT_VERIFIED"),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_staff"]}),
        apps=["app_mtls"],
    )

    assert _analyse(policy, MTLS_APP) == []


def test_a_deny_for_some_unverified_requests_does_not() -> None:
    policy = _policy(
        _rule(1, "DENY", deviceTrust="NOT_VERIFIED", network={"exclude": ["nzn_office"]}),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_staff"]}),
        apps=["app_mtls"],
    )

    assert _kinds(_analyse(policy, MTLS_APP)) == [(NO_DEVICE_TRUST_RULE, "ERROR", "rul_2", None)]


def test_an_allowing_catch_all_for_an_mtls_app() -> None:
    policy = _policy(
        _rule(1, "ALLOW", deviceTrust="VERIFIED"), catch_all="ALLOW", apps=["app_mtls"]
    )

    findings = _analyse(policy, MTLS_APP)

    assert _kinds(findings) == [(NO_DEVICE_TRUST_RULE, "ERROR", "rul_end", None)]
    assert "the catch-all" in findings[0].message
    assert findings[0].fix.startswith("Make the catch-all DENY")


def test_new_findings_lists_what_a_change_adds() -> None:
    before = _policy(
        _rule(1, "ALLOW", deviceTrust="VERIFIED"),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_gone"]}),
    )
    after = _policy(
        _rule(3, "ALLOW"),
        _rule(1, "ALLOW", deviceTrust="VERIFIED"),
        _rule(2, "ALLOW", groups={"anyOf": ["grp_gone"]}),
    )

    added = new_findings(before, after, known=KNOWN, apps_requiring_device_trust=frozenset())

    assert [f.key for f in added] == [
        (SHADOWED, "rul_1", "rul_3"),
        (SHADOWED, "rul_2", "rul_3"),
        (SHADOWED, "rul_end", "rul_3"),
    ]
    assert new_findings(after, after, known=KNOWN, apps_requiring_device_trust=frozenset()) == []
    created = new_findings(None, before, known=KNOWN, apps_requiring_device_trust=frozenset())
    assert [f.kind for f in created] == [DANGLING_REFERENCE]


def test_finding_json() -> None:
    finding = _analyse(_policy(_rule(1, "ALLOW"), _rule(2, "DENY")))[0]

    assert finding.to_dict() == {
        "kind": SHADOWED,
        "severity": "ERROR",
        "policyId": "pol_a",
        "ruleId": "rul_2",
        "message": finding.message,
        "shadowedBy": "rul_1",
        "fix": "Move rule 'Rule 2' above rule 'Rule 1', or delete it.",
    }
