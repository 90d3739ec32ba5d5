"""The engine: first match wins, every rule's verdict with every failed condition, reasons,
policyEvaluationDetail, the remembered results (checked against a plain rule-by-rule
evaluation on random requests), and the compiled-policy cache."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import random
from typing import Any

import pytest
from cryptography import x509

from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.policy.engine import (
    CompiledPolicy,
    PolicyCache,
    PolicyDecision,
    RuleVerdict,
    compile_policy,
)
from certbound.policy.model import Action, Policy, Rule, Verdict, Zone
from certbound.policy.request import CertificateFacts, SignOnRequest

NOW = dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)
ZONES = {
    "nzn_office": Zone("nzn_office", "Office", ("192.0.2.0/24", "2001:db8:10::/48")),
    "nzn_blocked": Zone("nzn_blocked", "Blocked", ("203.0.113.0/24",)),
}


@pytest.fixture(scope="module")
def devices() -> list[CertificateFacts]:
    root = devpki.ca("Engine Root CA")
    issuing = devpki.ca("Engine Issuing CA", root)
    out = []
    for i, days in enumerate((3, 200)):
        name = x509.Name.from_rfc4514_string(f"CN=laptop-{i},O=Acme")
        profile = devpki.Profile(
            sans=[x509.RFC822Name(f"user{i}@corp.example")],
            not_after=NOW + dt.timedelta(days=days, hours=1),
        )
        leaf = devpki.issue(name, issuing, profile=profile, now=NOW)
        out.append(CertificateFacts.of((leaf.cert, issuing.cert, root.cert), frozenset({"ca_i"})))
    return out


def _rule(i: int, action: str, **conditions: Any) -> dict[str, Any]:
    return {"id": f"rul_{i}", "name": f"Rule {i}", "action": action, "conditions": conditions}


def _policy(*rules: dict[str, Any], catch_all: str = "DENY") -> Policy:
    catch = {"id": "rul_end", "name": "Catch-all", "action": catch_all, "catchAll": True}
    return Policy.from_dict({"id": "pol_t", "name": "Test", "rules": [*rules, catch]})


OFFICE_HOURS = {
    "days": ["MON", "TUE", "WED", "THU", "FRI"],
    "start": "07:00",
    "end": "19:00",
    "timezone": "Europe/Berlin",
}
MANAGED = {"issuerCaIds": ["ca_i"], "sans": [{"type": "email", "pattern": "*@corp.example"}]}
POLICY = _policy(
    _rule(1, "DENY", deviceStatus=["SUSPENDED"]),
    _rule(2, "DENY", deviceTrust="VERIFIED", certificate={"maxDaysUntilExpiry": 7}),
    _rule(
        3,
        "ALLOW",
        deviceTrust="VERIFIED",
        certificate=MANAGED,
        groups={"anyOf": ["grp_staff"], "noneOf": ["grp_frozen"]},
        network={"include": ["nzn_office"], "exclude": ["nzn_blocked"]},
        timeWindow=OFFICE_HOURS,
    ),
    _rule(4, "ALLOW", users={"include": ["usr_admin"]}, deviceTrust="VERIFIED"),
)


def _request(**changes: Any) -> SignOnRequest:
    values: dict[str, Any] = {
        "app_id": "app_portal",
        "user_id": "usr_alice",
        "group_ids": frozenset({"grp_staff"}),
        "ip": ipaddress.ip_address("192.0.2.10"),
        "at": NOW,
        "device_verified": False,
        "device_reason": "NO_CLIENT_CERTIFICATE",
        "device_status": None,
        "certificate": None,
    }
    values.update(changes)
    return SignOnRequest(**values)


def _verified(facts: CertificateFacts, **changes: Any) -> SignOnRequest:
    base = {"device_verified": True, "device_reason": None, "device_status": "ACTIVE"}
    return _request(certificate=facts, **{**base, **changes})


def _verdicts(decision: PolicyDecision) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(v.id, v.verdict.value, v.failed_conditions) for v in decision.rules]


def test_first_match_decides_and_every_verdict_is_recorded(
    devices: list[CertificateFacts],
) -> None:
    decision = compile_policy(POLICY, ZONES).evaluate(_verified(devices[1]))

    assert decision.decision is Action.ALLOW
    assert decision.allowed
    assert decision.reason is None
    assert (decision.matched_rule_id, decision.matched_rule_name) == ("rul_3", "Rule 3")
    assert _verdicts(decision) == [
        ("rul_1", "NOT_MATCHED", ("deviceStatus",)),
        ("rul_2", "NOT_MATCHED", ("certificate.daysUntilExpiry",)),
        ("rul_3", "MATCHED", ()),
        ("rul_4", "NOT_EVALUATED", ()),
        ("rul_end", "NOT_EVALUATED", ()),
    ]
    assert [v.priority for v in decision.rules] == [1, 2, 3, 4, 5]


def test_every_failing_condition_is_listed(devices: list[CertificateFacts]) -> None:
    request = _request(
        ip=ipaddress.ip_address("203.0.113.5"),
        group_ids=frozenset({"grp_frozen"}),
        at=dt.datetime(2026, 6, 6, 10, 0, tzinfo=dt.UTC),  # a Saturday
    )

    decision = compile_policy(POLICY, ZONES).evaluate(request)

    assert decision.rules[2] == RuleVerdict(
        "rul_3",
        "Rule 3",
        3,
        Verdict.NOT_MATCHED,
        (
            "deviceTrust",
            "certificate.issuerCa",
            "certificate.san",
            "groups.anyOf",
            "groups.noneOf",
            "network.include",
            "network.exclude",
            "timeWindow",
        ),
    )
    assert decision.rules[3].failed_conditions == ("deviceTrust", "users.include")


def test_reasons(devices: list[CertificateFacts]) -> None:
    compiled = compile_policy(POLICY, ZONES)

    expiring = compiled.evaluate(_verified(devices[0]))
    unverified = compiled.evaluate(_request())
    allowing = compile_policy(_policy(catch_all="ALLOW"), ZONES).evaluate(_request())

    assert (expiring.decision, expiring.reason) == (Action.DENY, ReasonCode.POLICY_DENIED)
    assert expiring.matched_rule_id == "rul_2"
    assert (unverified.decision, unverified.reason) == (Action.DENY, ReasonCode.POLICY_NOT_MATCHED)
    assert unverified.matched_rule_id == "rul_end"
    assert not unverified.allowed
    assert (allowing.decision, allowing.reason) == (Action.ALLOW, None)


def test_policy_evaluation_detail(devices: list[CertificateFacts]) -> None:
    request = _verified(devices[0])
    decision = compile_policy(POLICY, ZONES).evaluate(request)

    detail = json.loads(json.dumps(decision.to_dict()))

    assert {k: v for k, v in detail.items() if k not in ("rules", "request")} == {
        "policyId": "pol_t",
        "policyName": "Test",
        "matchedRuleId": "rul_2",
        "matchedRuleName": "Rule 2",
        "decision": "DENY",
        "reason": "POLICY_DENIED",
    }
    assert detail["rules"][0] == {
        "id": "rul_1",
        "name": "Rule 1",
        "priority": 1,
        "verdict": "NOT_MATCHED",
        "failedConditions": ["deviceStatus"],
    }
    assert SignOnRequest.from_dict(detail["request"]) == request


def test_remembered_certificate_results_respect_device_trust(
    devices: list[CertificateFacts],
) -> None:
    """The same certificate facts, once from a verified device and once not."""
    compiled = compile_policy(POLICY, ZONES)
    verified = _verified(devices[1])
    suspended = _verified(devices[1], device_verified=False, device_status="SUSPENDED")
    not_verified = dataclasses.replace(suspended, device_status="ACTIVE")

    assert compiled.evaluate(verified).matched_rule_id == "rul_3"
    assert compiled.evaluate(suspended).matched_rule_id == "rul_1"
    assert compiled.evaluate(not_verified).matched_rule_id == "rul_end"
    assert compiled.evaluate(verified).matched_rule_id == "rul_3"


def _plain(
    compiled: CompiledPolicy, request: SignOnRequest
) -> list[tuple[str, str, tuple[str, ...]]]:
    """Rule by rule, straight from the (name, predicate) pairs: the reference."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    matched = False
    for rule in compiled.rules:
        if matched:
            out.append((rule.rule.id, "NOT_EVALUATED", ()))
            continue
        failed = tuple(name for name, predicate in rule.conditions if not predicate(request))
        matched = not failed
        out.append((rule.rule.id, "NOT_MATCHED" if failed else "MATCHED", failed))
    return out


def _random_request(rng: random.Random, devices: list[CertificateFacts]) -> SignOnRequest:
    groups = frozenset(rng.sample(["grp_staff", "grp_frozen", "grp_x"], rng.randrange(4)))
    ip = rng.choice(
        ["192.0.2.10", "203.0.113.9", "::ffff:192.0.2.77", "2001:db8:10::1", "10.0.0.1", None]
    )
    request = _request(
        user_id=rng.choice(["usr_alice", "usr_admin", None, f"usr_{rng.randrange(50)}"]),
        group_ids=groups,
        ip=None if ip is None else ipaddress.ip_address(ip),
        at=NOW + dt.timedelta(minutes=rng.randrange(0, 14 * 24 * 60, 37)),
    )
    if rng.random() < 0.6:
        status = rng.choice(["ACTIVE", "ACTIVE", "SUSPENDED"])
        trusted = status == "ACTIVE" and rng.random() < 0.9
        request = dataclasses.replace(
            request,
            certificate=rng.choice(devices),
            device_verified=trusted,
            device_status=status,
            device_reason=None if trusted else "DEVICE_SUSPENDED",
        )
    return request


def test_remembered_results_agree_with_plain_evaluation(devices: list[CertificateFacts]) -> None:
    rng = random.Random(1)
    compiled = compile_policy(POLICY, ZONES)
    seen = set()

    for _ in range(3000):
        request = _random_request(rng, devices)
        decision = compiled.evaluate(request)
        assert _verdicts(decision) == _plain(compiled, request), request
        seen.add(decision.matched_rule_id)

    assert seen == {"rul_1", "rul_2", "rul_3", "rul_4", "rul_end"}


def test_many_distinct_requests_stay_correct_past_the_memo_bounds() -> None:
    compiled = compile_policy(_policy(_rule(1, "ALLOW", users={"include": ["usr_7"]})), ZONES)

    for i in range(10_000):
        decision = compiled.evaluate(_request(user_id=f"usr_{i % 5000}"))
        assert decision.allowed is (i % 5000 == 7)


def test_a_rule_without_conditions_matches_everything() -> None:
    compiled = compile_policy(_policy(_rule(1, "ALLOW")), ZONES)

    decision = compiled.evaluate(_request(ip=None, user_id=None, group_ids=frozenset()))

    assert compiled.rules[0].conditions == ()
    assert decision.matched_rule_id == "rul_1"


def test_compiling_a_policy_without_its_catch_all_is_refused() -> None:
    broken = Policy("pol_x", "Broken", None, (Rule("rul_1", "Only", Action.ALLOW),))

    with pytest.raises(CertboundError) as caught:
        compile_policy(broken, ZONES)

    assert caught.value.reason is ReasonCode.POLICY_INVALID


def test_policy_cache_compiles_once_per_revision_and_zone_change() -> None:
    cache = PolicyCache()
    policy = _policy(_rule(1, "ALLOW", network={"include": ["nzn_office"]}))
    first = cache.get(policy, ZONES)

    assert cache.get(policy, ZONES) is first
    assert cache.get(Policy.from_dict(policy.to_dict()), ZONES) is first
    unrelated = {**ZONES, "nzn_new": Zone("nzn_new", "New", ("10.0.0.0/8",))}
    assert cache.get(policy, unrelated) is first

    moved = {**ZONES, "nzn_office": Zone("nzn_office", "Office", ("10.0.0.0/8",))}
    recompiled = cache.get(policy, moved)
    assert recompiled is not first
    assert not recompiled.evaluate(_request()).allowed
    edited = dataclasses.replace(policy, revision=2)
    assert cache.get(edited, moved) is not recompiled
    assert cache.get(edited, moved).revision == 2
