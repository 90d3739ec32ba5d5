"""Golden policy cases: tests/golden/policy/NAME.json holds a policy, its zones, one request
and the expected decision, reason, matched rule and every rule's verdict with its failed
conditions. Each case is evaluated by the compiled engine and compared in full; the
expectations were written by hand from the conditions' documented semantics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from certbound.policy.engine import compile_policy
from certbound.policy.model import Policy, Zone
from certbound.policy.request import SignOnRequest

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "policy"
CASES = sorted(GOLDEN.glob("*.json"))
REQUIRED = {
    "first_match_wins",
    "seed_catch_all_above_mtls",
    "seed_fixed_order",
    "deny_rule_policy_denied",
    "ipv6_zone_include",
    "ipv6_zone_exclude",
    "ipv4_mapped_ipv6",
    "group_none_of",
    "users_include_exclude",
    "expiring_certificate",
    "suspended_device",
    "issuer_ca_by_id",
    "issuer_ca_by_spki_pin",
    "san_email_glob",
    "eku_and_policy_oids",
    "time_window_across_midnight",
    "no_user_for_user_rule",
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    assert set(data) == {"description", "policy", "zones", "request", "expected"}, path.name
    return data


def test_the_required_cases_are_present() -> None:
    assert {path.stem for path in CASES} >= REQUIRED
    assert len(CASES) >= 14


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case(path: Path) -> None:
    case = _load(path)
    policy = Policy.from_dict(case["policy"])
    zones = {zone.id: zone for zone in map(Zone.from_dict, case["zones"])}
    request = SignOnRequest.from_dict(case["request"])
    expected = case["expected"]

    decision = compile_policy(policy, zones).evaluate(request)

    assert decision.decision.value == expected["decision"]
    assert (decision.reason and decision.reason.value) == expected["reason"]
    assert decision.matched_rule_id == expected["matchedRuleId"]
    verdicts = [
        {"id": v.id, "verdict": v.verdict.value, "failedConditions": list(v.failed_conditions)}
        for v in decision.rules
    ]
    assert verdicts == expected["verdicts"]
    assert [v.id for v in decision.rules] == [r.id for r in policy.rules]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_detail_replays_to_the_same_decision(path: Path) -> None:
    """The logged form (policyEvaluationDetail, through JSON) rebuilds the same request."""
    case = _load(path)
    policy = Policy.from_dict(case["policy"])
    zones = {zone.id: zone for zone in map(Zone.from_dict, case["zones"])}
    compiled = compile_policy(policy, zones)
    decision = compiled.evaluate(SignOnRequest.from_dict(case["request"]))

    detail = json.loads(json.dumps(decision.to_dict()))

    again = compiled.evaluate(SignOnRequest.from_dict(detail["request"]))
    assert again == decision
    assert detail["decision"] == case["expected"]["decision"]
    assert detail["matchedRuleId"] == case["expected"]["matchedRuleId"]
