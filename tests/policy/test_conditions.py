"""Each condition as a predicate, on real certificates (devpki): certificate attributes,
device, users, groups, network zones (IPv4, IPv6, IPv4-mapped), time windows across
midnight and daylight-saving time, and the sharing of equal predicates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certbound.directory.apps import ca_pin
from certbound.pki import devpki
from certbound.policy.conditions import (
    CONDITION_NAMES,
    READS,
    Compilation,
    ZoneLookup,
    condition_keys,
    predicates,
)
from certbound.policy.model import Conditions, Zone
from certbound.policy.request import CertificateFacts, SignOnRequest

NOW = dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)  # a Wednesday
ZONES = {
    "nzn_office": Zone("nzn_office", "Office", ("192.0.2.0/24", "2001:db8:10::/48")),
    "nzn_lab": Zone("nzn_lab", "Lab", ("192.0.2.128/25",)),
    "nzn_mapped": Zone("nzn_mapped", "Mapped", ("::ffff:198.51.100.0/120",)),
}


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    root = devpki.ca("Conditions Root CA")
    issuing = devpki.ca("Conditions Issuing CA", root)
    other = devpki.ca("Other Issuing CA", root)
    sans = [x509.RFC822Name("Alice@Corp.Example"), x509.DNSName("laptop-7.corp.example")]
    profile = devpki.Profile(sans=sans, not_after=NOW + dt.timedelta(days=10, hours=23))
    name = x509.Name.from_rfc4514_string("CN=laptop-7,OU=Engineering,O=Acme")
    leaf = devpki.issue(name, issuing, profile=profile, now=NOW)
    chain = (leaf.cert, issuing.cert, root.cert)
    return {
        "facts": CertificateFacts.of(chain, frozenset({"ca_issuing", "ca_root"})),
        "issuing": issuing.cert,
        "other": other.cert,
    }


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


def _verified(pki: dict[str, Any], **changes: Any) -> SignOnRequest:
    base = {"device_verified": True, "device_reason": None, "device_status": "ACTIVE"}
    return _request(certificate=pki["facts"], **{**base, **changes})


def _holds(conditions: dict[str, Any], request: SignOnRequest) -> dict[str, bool]:
    pairs = predicates(Conditions.from_dict(conditions), ZONES)
    return {name: predicate(request) for name, predicate in pairs}


def test_condition_names_and_reads_agree() -> None:
    assert tuple(READS) == CONDITION_NAMES


def test_no_condition_is_no_predicate() -> None:
    assert predicates(Conditions(), ZONES) == ()


def test_pairs_come_in_condition_name_order() -> None:
    everything = {
        "timeWindow": {"start": "08:00", "end": "09:00", "timezone": "UTC"},
        "network": {"exclude": ["nzn_lab"], "include": ["nzn_office"]},
        "groups": {"noneOf": ["grp_x"], "anyOf": ["grp_staff"]},
        "users": {"exclude": ["usr_x"], "include": ["usr_alice"]},
        "deviceStatus": ["ACTIVE"],
        "certificate": {
            "maxDaysUntilExpiry": 30,
            "policyOids": ["1.2.3"],
            "ekuOids": ["1.3.6.1.5.5.7.3.2"],
            "sans": [{"type": "dns", "pattern": "*"}],
            "serialNumbers": ["01"],
            "commonName": ["*"],
            "subjectDn": ["*"],
            "issuerCaIds": ["ca_x"],
        },
        "deviceTrust": "VERIFIED",
    }

    names = [name for name, _ in predicates(Conditions.from_dict(everything), ZONES)]

    assert names == list(CONDITION_NAMES)


def test_device_trust(pki: dict[str, Any]) -> None:
    verified, unverified = _verified(pki), _request()

    assert _holds({"deviceTrust": "VERIFIED"}, verified) == {"deviceTrust": True}
    assert _holds({"deviceTrust": "VERIFIED"}, unverified) == {"deviceTrust": False}
    assert _holds({"deviceTrust": "NOT_VERIFIED"}, unverified) == {"deviceTrust": True}
    assert _holds({"deviceTrust": "NOT_VERIFIED"}, verified) == {"deviceTrust": False}


def test_issuer_by_ca_id_or_spki_pin(pki: dict[str, Any]) -> None:
    request = _verified(pki)

    def issuer(**cert: Any) -> bool:
        return _holds({"certificate": cert}, request)["certificate.issuerCa"]

    assert issuer(issuerCaIds=["ca_root"])
    assert not issuer(issuerCaIds=["ca_other"])
    assert issuer(issuerSpkiPins=[ca_pin(pki["issuing"])])
    assert not issuer(issuerSpkiPins=[ca_pin(pki["other"])])
    assert issuer(issuerCaIds=["ca_other"], issuerSpkiPins=[ca_pin(pki["issuing"])])


def test_certificate_names_and_globs(pki: dict[str, Any]) -> None:
    request = _verified(pki)
    cert = {
        "subjectDn": ["CN=laptop-*,OU=ENGINEERING,O=Acme"],
        "commonName": ["kiosk-*", "LAPTOP-?"],
        "serialNumbers": [pki["facts"].serial_number],
        "sans": [{"type": "email", "pattern": "*@corp.example"}],
    }

    assert set(_holds({"certificate": cert}, request).values()) == {True}
    cert = {
        "subjectDn": ["CN=laptop-?,O=Acme"],
        "commonName": ["laptop-??"],
        "serialNumbers": ["01"],
        "sans": [{"type": "dns", "pattern": "*@corp.example"}, {"type": "upn", "pattern": "*"}],
    }
    assert set(_holds({"certificate": cert}, request).values()) == {False}


def test_eku_needs_all_and_policies_any(pki: dict[str, Any]) -> None:
    request = _verified(pki)
    client, email = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION

    both = {"ekuOids": [client.dotted_string, email.dotted_string]}
    assert not _holds({"certificate": both}, request)["certificate.eku"]
    assert _holds({"certificate": {"ekuOids": [client.dotted_string]}}, request)["certificate.eku"]
    no_policy = {"policyOids": ["1.2.3"]}
    assert not _holds({"certificate": no_policy}, request)["certificate.policy"]


@pytest.mark.parametrize(
    ("bounds", "holds"),
    [
        ({"maxDaysUntilExpiry": 10}, True),  # 10 days 23 hours: floor 10
        ({"maxDaysUntilExpiry": 9}, False),
        ({"minDaysUntilExpiry": 10}, True),
        ({"minDaysUntilExpiry": 11}, False),
        ({"minDaysUntilExpiry": 5, "maxDaysUntilExpiry": 20}, True),
    ],
)
def test_days_until_expiry_is_floored(
    pki: dict[str, Any], bounds: dict[str, int], holds: bool
) -> None:
    found = _holds({"certificate": bounds}, _verified(pki))

    assert found == {"certificate.daysUntilExpiry": holds}


def test_certificate_conditions_need_a_verified_device(pki: dict[str, Any]) -> None:
    cert = {"commonName": ["*"], "issuerCaIds": ["ca_root"], "maxDaysUntilExpiry": 100}
    suspended = _verified(pki, device_verified=False, device_reason="DEVICE_SUSPENDED")

    assert set(_holds({"certificate": cert}, _verified(pki)).values()) == {True}
    assert set(_holds({"certificate": cert}, suspended).values()) == {False}
    assert set(_holds({"certificate": cert}, _request()).values()) == {False}


def test_device_status_needs_a_device(pki: dict[str, Any]) -> None:
    statuses = {"deviceStatus": ["SUSPENDED", "DEACTIVATED"]}

    assert _holds(statuses, _verified(pki, device_status="SUSPENDED"))["deviceStatus"]
    assert not _holds(statuses, _verified(pki))["deviceStatus"]
    assert not _holds(statuses, _request())["deviceStatus"]


def test_users_and_groups() -> None:
    conditions = {
        "users": {"include": ["usr_alice", "usr_bob"], "exclude": ["usr_bob"]},
        "groups": {"anyOf": ["grp_staff"], "noneOf": ["grp_frozen"]},
    }
    alice, bob = _request(), _request(user_id="usr_bob")
    frozen = _request(group_ids=frozenset({"grp_staff", "grp_frozen"}))
    nobody = _request(user_id=None, group_ids=frozenset())

    assert set(_holds(conditions, alice).values()) == {True}
    assert _holds(conditions, bob)["users.exclude"] is False
    assert _holds(conditions, frozen)["groups.noneOf"] is False
    assert _holds(conditions, nobody) == {
        "users.include": False,
        "users.exclude": True,
        "groups.anyOf": False,
        "groups.noneOf": True,
    }


@pytest.mark.parametrize(
    ("ip", "zones"),
    [
        ("192.0.2.10", {"nzn_office"}),
        ("192.0.2.200", {"nzn_office", "nzn_lab"}),
        ("::ffff:192.0.2.200", {"nzn_office", "nzn_lab"}),
        ("2001:db8:10:ffff::1", {"nzn_office"}),
        ("2001:db8:11::1", set()),
        ("198.51.100.7", {"nzn_mapped"}),
        ("::ffff:198.51.100.7", {"nzn_mapped"}),
        ("198.51.101.7", set()),
        ("::192.0.2.10", set()),  # IPv4-compatible, not IPv4-mapped
    ],
)
def test_zone_lookup(ip: str, zones: set[str]) -> None:
    lookup = ZoneLookup(ZONES)
    address = ipaddress.ip_address(ip)

    assert lookup.zones_of(address) == zones
    assert lookup.zones_of(address) == zones  # memoised


def test_network_include_exclude_and_missing_ip() -> None:
    conditions = {"network": {"include": ["nzn_office"], "exclude": ["nzn_lab"]}}

    assert _holds(conditions, _request()) == {"network.include": True, "network.exclude": True}
    lab = _request(ip=ipaddress.ip_address("192.0.2.200"))
    assert _holds(conditions, lab) == {"network.include": True, "network.exclude": False}
    no_ip = _request(ip=None)
    assert _holds(conditions, no_ip) == {"network.include": False, "network.exclude": True}


def test_unknown_zones_match_no_address() -> None:
    conditions = {"network": {"include": ["nzn_gone"], "exclude": ["nzn_gone"]}}

    assert _holds(conditions, _request()) == {"network.include": False, "network.exclude": True}


NIGHT = {"days": ["FRI"], "start": "22:00", "end": "06:00", "timezone": "America/New_York"}


@pytest.mark.parametrize(
    ("at", "holds"),
    [
        ("2026-06-06T02:00:00+00:00", True),  # Fri 22:00 EDT: opens (start inclusive)
        ("2026-06-06T01:59:00+00:00", False),  # Fri 21:59 EDT
        ("2026-06-06T09:59:00+00:00", True),  # Sat 05:59 EDT: the Friday window, next morning
        ("2026-06-06T10:00:00+00:00", False),  # Sat 06:00 EDT: closed (end exclusive)
        ("2026-06-07T03:00:00+00:00", False),  # Sat 23:00 EDT: Saturday is not listed
        ("2026-06-05T07:00:00+00:00", False),  # Fri 03:00 EDT: Thursday's night, not listed
        ("2026-01-10T04:30:00+00:00", True),  # Fri 23:30 EST (winter, UTC-5)
        ("2026-01-09T04:30:00+00:00", False),  # Thu 23:30 EST
    ],
)
def test_time_window_across_midnight(at: str, holds: bool) -> None:
    request = _request(at=dt.datetime.fromisoformat(at))

    assert _holds({"timeWindow": NIGHT}, request) == {"timeWindow": holds}


def test_time_window_follows_daylight_saving_time() -> None:
    office = {"days": ["MON"], "start": "08:00", "end": "09:00", "timezone": "Europe/Berlin"}
    # 2026-03-30 (Monday after the switch): 08:30 CEST is 06:30 UTC.
    summer = _request(at=dt.datetime(2026, 3, 30, 6, 30, tzinfo=dt.UTC))
    # 2026-03-23 (Monday before): 08:30 CET is 07:30 UTC.
    winter = _request(at=dt.datetime(2026, 3, 23, 7, 30, tzinfo=dt.UTC))

    assert _holds({"timeWindow": office}, summer) == {"timeWindow": True}
    assert _holds({"timeWindow": office}, winter) == {"timeWindow": True}
    assert _holds({"timeWindow": office}, dataclasses.replace(winter, at=summer.at)) == {
        "timeWindow": True
    }
    early = dataclasses.replace(summer, at=dt.datetime(2026, 3, 30, 5, 59, tzinfo=dt.UTC))
    assert _holds({"timeWindow": office}, early) == {"timeWindow": False}


def test_equal_conditions_share_one_predicate() -> None:
    compilation = Compilation(ZONES)
    first = Conditions.from_dict(
        {"groups": {"anyOf": ["grp_a", "grp_b"]}, "deviceTrust": "VERIFIED"}
    )
    second = Conditions.from_dict({"groups": {"anyOf": ["grp_b", "grp_a"]}})
    third = Conditions.from_dict({"groups": {"noneOf": ["grp_a", "grp_b"]}})

    a = dict(predicates(first, compilation))
    b = dict(predicates(second, compilation))
    c = dict(predicates(third, compilation))

    assert a["groups.anyOf"] is b["groups.anyOf"]
    assert c["groups.noneOf"] is not a["groups.anyOf"]
    assert len(compilation.predicates) == 3
    assert condition_keys(second) == [("groups.anyOf", frozenset({"grp_a", "grp_b"}))]
