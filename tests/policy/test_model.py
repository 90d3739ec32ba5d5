"""The policy model's JSON: round trips, compact output, normalisation, and POLICY_INVALID
naming the field at fault for every kind of bad input."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from certbound.errors import CertboundError, ReasonCode
from certbound.policy.model import (
    Action,
    Conditions,
    DeviceTrustRequirement,
    GroupConditions,
    Policy,
    Rule,
    SanPattern,
    TimeWindow,
    Zone,
    check_rules,
    glob,
)

FULL_CONDITIONS: dict[str, Any] = {
    "deviceTrust": "VERIFIED",
    "certificate": {
        "issuerCaIds": ["ca_issuing"],
        "issuerSpkiPins": ["ab" * 32],
        "subjectDn": ["CN=laptop-*,O=Acme"],
        "commonName": ["laptop-?", "kiosk-[1]"],
        "serialNumbers": ["0A1B"],
        "sans": [{"type": "email", "pattern": "*@acme.test"}, {"type": "upn", "pattern": "*"}],
        "ekuOids": ["1.3.6.1.5.5.7.3.2"],
        "policyOids": ["2.23.140.1.2.1"],
        "minDaysUntilExpiry": 1,
        "maxDaysUntilExpiry": 400,
    },
    "deviceStatus": ["ACTIVE"],
    "users": {"include": ["usr_a"], "exclude": ["usr_b"]},
    "groups": {"anyOf": ["grp_staff"], "noneOf": ["grp_frozen"]},
    "network": {"include": ["nzn_office"], "exclude": ["nzn_guest"]},
    "timeWindow": {
        "days": ["MON", "FRI"],
        "start": "22:00",
        "end": "06:00",
        "timezone": "Europe/Berlin",
    },
}


def _policy(conditions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "pol_1",
        "name": "Portal",
        "description": "For the portal",
        "isDefault": False,
        "appIds": ["app_portal"],
        "revision": 3,
        "rules": [
            {
                "id": "rul_1",
                "name": "Managed devices",
                "action": "ALLOW",
                "conditions": copy.deepcopy(FULL_CONDITIONS if conditions is None else conditions),
            },
            {"id": "rul_2", "name": "Catch-all", "action": "DENY", "catchAll": True},
        ],
    }


def test_full_policy_round_trips() -> None:
    policy = Policy.from_dict(_policy())

    data = policy.to_dict()

    assert Policy.from_dict(data) == policy
    assert data["rules"][0]["conditions"] == FULL_CONDITIONS
    assert [r["priority"] for r in data["rules"]] == [1, 2]
    assert data["rules"][1] == {
        "id": "rul_2",
        "name": "Catch-all",
        "priority": 2,
        "action": "DENY",
        "conditions": {},
        "catchAll": True,
    }
    assert policy.catch_all.id == "rul_2"
    assert policy.rule("rul_1") is policy.rules[0]
    assert policy.rule("rul_9") is None


def test_conditions_are_compact_and_default_to_no_condition() -> None:
    conditions = Conditions.from_dict({"groups": {"anyOf": ["grp_x"]}})

    assert conditions.to_dict() == {"groups": {"anyOf": ["grp_x"]}}
    assert conditions.device_trust is DeviceTrustRequirement.ANY
    assert not conditions.empty
    assert Conditions.from_dict({}).empty
    assert Conditions().to_dict() == {}
    assert Conditions(groups=GroupConditions(any_of=("grp_x",))) == conditions


def test_dataclasses_round_trip_each_on_its_own() -> None:
    window = TimeWindow(("SAT",), "10:00", "16:00", "America/New_York")
    rule = Rule("rul_x", "X", Action.DENY, Conditions(time_window=window))
    zone = Zone("nzn_x", "X", ("10.0.0.0/8", "2001:db8::/32"))

    assert TimeWindow.from_dict(window.to_dict()) == window
    assert Rule.from_dict(rule.to_dict()) == rule
    assert Rule.from_dict(rule.to_dict(priority=4)) == rule
    assert Zone.from_dict(zone.to_dict()) == zone
    assert SanPattern.from_dict({"type": "dns", "pattern": "*.acme.test"}).type == "dns"


def test_time_window_days_default_to_every_day() -> None:
    window = TimeWindow.from_dict({"start": "08:00", "end": "18:00", "timezone": "UTC"})

    assert window.days == ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def test_zone_cidrs_are_normalised_to_their_network() -> None:
    zone = Zone.from_dict(
        {"id": "nzn_1", "name": "Office", "cidrs": ["10.1.2.3/8", "2001:DB8::1/32", "192.0.2.7"]}
    )

    assert zone.cidrs == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32")


def test_serials_and_pins_are_normalised() -> None:
    conditions = Conditions.from_dict(
        {"certificate": {"serialNumbers": ["0a:bc", "00FF", "123"], "issuerSpkiPins": ["AB" * 32]}}
    )

    assert conditions.certificate.serial_numbers == ("0ABC", "FF", "0123")
    assert conditions.certificate.issuer_spki_pins == ("ab" * 32,)


def test_a_serial_written_twice_is_refused_once_normalised() -> None:
    with pytest.raises(CertboundError, match=r"serialNumbers\[1\]: '0ABC' is listed twice"):
        Conditions.from_dict({"certificate": {"serialNumbers": ["0a:bc", "ABC"]}})


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("laptop-*", "LAPTOP-42", True),
        ("laptop-?", "laptop-42", False),
        ("laptop-??", "laptop-42", True),
        ("kiosk-[1]", "kiosk-[1]", True),
        ("kiosk-[1]", "kiosk-1", False),
        ("*.acme.test", "a.b.acme.test", True),
        ("*.acme.test", "acme.test", False),
        ("a.c", "abc", False),
        ("a**b", "ab", True),
        ("*", "", True),
        ("", "", True),
        ("", "x", False),
        ("a*", "A", True),
        ("*b*", "abc", True),
        ("*b*b", "abcb", True),
        ("*b*b", "abc", False),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acb", False),
        ("ab*ba", "aba", False),
        ("?*?", "x", False),
        ("a*?*c", "abc", True),
    ],
)
def test_globs_are_case_insensitive_with_literal_brackets(
    pattern: str, text: str, matches: bool
) -> None:
    assert glob(pattern)(text) is matches


def test_a_hostile_glob_is_matched_in_linear_time() -> None:
    """``*a*a*...*b`` against a long run of ``a`` backtracks for seconds in a ``.*`` regex."""
    pattern = "*a" * 200 + "*b"
    started = time.process_time()
    for _ in range(20):
        assert glob(pattern)("a" * 1000) is False
        assert glob(pattern)("a" * 500 + "b") is True
    assert time.process_time() - started < 1.0


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


C = ("rules", 0, "conditions")
CERT = (*C, "certificate")
BAD_POLICIES = [
    (_set((*C, "colour"), "blue"), "rules[0].conditions.colour"),
    (_set((*C, "deviceTrust"), "MAYBE"), "rules[0].conditions.deviceTrust"),
    (_set((*C, "deviceStatus"), ["ACTIVE", "LOST"]), "rules[0].conditions.deviceStatus[1]"),
    (_set((*CERT, "ekuOids"), ["1.3.6.x"]), "rules[0].conditions.certificate.ekuOids[0]"),
    (_set((*CERT, "policyOids"), ["3.1"]), "rules[0].conditions.certificate.policyOids[0]"),
    (_set((*CERT, "policyOids"), ["1.02.3"]), "rules[0].conditions.certificate.policyOids[0]"),
    (_set((*CERT, "sans", 0, "type"), "x400"), "rules[0].conditions.certificate.sans[0].type"),
    (_set((*CERT, "sans", 1), {"type": "dns"}), "rules[0].conditions.certificate.sans[1]"),
    (_set((*CERT, "commonName"), [""]), "rules[0].conditions.certificate.commonName[0]"),
    (_set((*CERT, "subjectDn"), ["a\x00b"]), "rules[0].conditions.certificate.subjectDn[0]"),
    (_set((*CERT, "serialNumbers"), ["XYZ"]), "rules[0].conditions.certificate.serialNumbers[0]"),
    (_set((*CERT, "issuerSpkiPins"), ["abc"]), "rules[0].conditions.certificate.issuerSpkiPins[0]"),
    (_set((*CERT, "issuerCaIds"), ["Acme CA"]), "rules[0].conditions.certificate.issuerCaIds[0]"),
    (
        _set((*CERT, "minDaysUntilExpiry"), -1),
        "rules[0].conditions.certificate.minDaysUntilExpiry",
    ),
    (
        _set((*CERT, "maxDaysUntilExpiry"), True),
        "rules[0].conditions.certificate.maxDaysUntilExpiry",
    ),
    (_set((*C, "timeWindow", "start"), "25:00"), "rules[0].conditions.timeWindow.start"),
    (_set((*C, "timeWindow", "end"), "22:00"), "rules[0].conditions.timeWindow.end"),
    (
        _set((*C, "timeWindow", "timezone"), "Mars/Olympus"),
        "rules[0].conditions.timeWindow.timezone",
    ),
    (_set((*C, "timeWindow", "days"), ["FUNDAY"]), "rules[0].conditions.timeWindow.days[0]"),
    (_set((*C, "timeWindow", "days"), []), "rules[0].conditions.timeWindow.days"),
    (_delete((*C, "timeWindow", "start")), "rules[0].conditions.timeWindow.start"),
    (_set((*C, "groups", "anyOf"), "grp_staff"), "rules[0].conditions.groups.anyOf"),
    (_set((*C, "groups", "anyOf"), ["grp_a", "grp_a"]), "rules[0].conditions.groups.anyOf[1]"),
    (_set((*C, "users", "include"), ["alice"]), "rules[0].conditions.users.include[0]"),
    (_set((*C, "network", "exclude"), [7]), "rules[0].conditions.network.exclude[0]"),
    (_set((*C, "network"), []), "rules[0].conditions.network"),
    (_set(("rules", 0, "name"), "  "), "rules[0].name"),
    (_set(("rules", 0, "action"), "MAYBE"), "rules[0].action"),
    (_set(("rules", 0, "priority"), "1"), "rules[0].priority"),
    (_delete(("rules", 0, "id")), "rules[0].id"),
    (_set(("rules", 0, "id"), "rule-1"), "rules[0].id"),
    (_set(("rules", 1, "id"), "rul_1"), "rules[1].id"),
    (_set(("rules", 0, "catchAll"), True), "rules[0].conditions"),
    (_set(("rules", 1, "catchAll"), False), "rules[1]"),
    (_set(("rules", 1, "conditions"), {"deviceTrust": "VERIFIED"}), "rules[1].conditions"),
    (_set(("rules",), []), "rules"),
    (_set(("name",), ""), "name"),
    (_set(("id",), "portal"), "id"),
    (_set(("isDefault",), "yes"), "isDefault"),
    (_set(("revision",), -1), "revision"),
    (_set(("appIds",), [1]), "appIds[0]"),
    (_set(("owner",), "me"), "owner"),
    (_delete(("rules",)), "rules"),
]


@pytest.mark.parametrize(("mutate", "field"), BAD_POLICIES, ids=[f for _, f in BAD_POLICIES])
def test_bad_policy_json_names_the_field(
    mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    data = _policy()
    mutate(data)

    with pytest.raises(CertboundError) as caught:
        Policy.from_dict(data)

    assert caught.value.reason is ReasonCode.POLICY_INVALID
    assert caught.value.detail.startswith(f"{field}: "), caught.value.detail
    assert caught.value.context == {"field": field}


def test_a_catch_all_in_the_middle_is_refused() -> None:
    data = _policy({})
    data["rules"].insert(0, {"id": "rul_0", "name": "Early", "action": "DENY", "catchAll": True})

    with pytest.raises(CertboundError, match=r"rules\[0\]\.catchAll: only the last"):
        Policy.from_dict(data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("not a policy", "(root)"),
        ({"id": "nzn_1", "name": "Office", "cidrs": ["10.0.0.0/33"]}, "cidrs[0]"),
        ({"id": "nzn_1", "name": "Office", "cidrs": ["10.0.0.0/8", "fe80::/x"]}, "cidrs[1]"),
        ({"id": "nzn_1", "name": "Office", "cidrs": ["10.0.0.0/8", "10.1.0.0/8"]}, "cidrs[1]"),
        ({"id": "nzn_1", "name": "Office", "cidrs": "10.0.0.0/8"}, "cidrs"),
        ({"id": "nzn_1", "name": "", "cidrs": []}, "name"),
        ({"id": "zone1", "name": "Office", "cidrs": []}, "id"),
        ({"id": "nzn_1", "name": "Office"}, "cidrs"),
    ],
)
def test_bad_zone_json_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(CertboundError) as caught:
        Zone.from_dict(data)

    assert caught.value.reason is ReasonCode.POLICY_INVALID
    assert caught.value.detail.startswith(f"{field}: ")


def test_check_rules_guards_policies_built_in_code() -> None:
    allow = Rule("rul_a", "A", Action.ALLOW)

    with pytest.raises(CertboundError, match="the last rule must be the catch-all"):
        check_rules((allow,))
    with pytest.raises(CertboundError, match="the last rule must be the catch-all"):
        check_rules(())
    check_rules((allow, Rule("rul_c", "Catch-all", Action.DENY, catch_all=True)))
