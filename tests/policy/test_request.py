"""Certificate facts from real certificates (devpki) and the request's JSON form: what the
conditions read, the per-certificate cache, round trips, and bad logged input."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from certbound.devices.mapping import UPN_OID
from certbound.directory.apps import ca_pin
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import serial_hex
from certbound.policy.request import CertificateFacts, SignOnRequest

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
POLICY_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")
CA_IDS = frozenset({"ca_issuing", "ca_root"})


@pytest.fixture(scope="module")
def chain() -> tuple[x509.Certificate, ...]:
    root = devpki.ca("Policy Root CA")
    issuing = devpki.ca("Policy Issuing CA", root)
    sans = [
        x509.DNSName("laptop-7.corp.example"),
        x509.RFC822Name("alice@corp.example"),
        x509.UniformResourceIdentifier("urn:device:laptop-7"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
        x509.OtherName(UPN_OID, asn1.encode_der("alice@corp.example")),
        x509.DirectoryName(x509.Name.from_rfc4514_string("CN=ignored")),
    ]
    policies = x509.CertificatePolicies([x509.PolicyInformation(POLICY_OID, None)])
    profile = devpki.Profile(
        sans=sans,
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        extra=[(policies, False)],
        not_after=NOW + dt.timedelta(days=90),
    )
    name = x509.Name.from_rfc4514_string("CN=laptop-7,OU=Engineering,O=Acme")
    leaf = devpki.issue(name, issuing, profile=profile, now=NOW)
    return leaf.cert, issuing.cert, root.cert


def test_facts_of_a_real_chain(chain: tuple[x509.Certificate, ...]) -> None:
    leaf, issuing, root = chain

    facts = CertificateFacts.of(chain, CA_IDS)

    assert facts.subject_dn == "CN=laptop-7,OU=Engineering,O=Acme"
    assert facts.issuer_dn == leaf.issuer.rfc4514_string()
    assert facts.common_name == "laptop-7"
    assert facts.serial_number == serial_hex(leaf)
    assert facts.sans == (
        ("dns", "laptop-7.corp.example"),
        ("email", "alice@corp.example"),
        ("uri", "urn:device:laptop-7"),
        ("ip", "2001:db8::7"),
        ("upn", "alice@corp.example"),
    )
    assert facts.eku_oids == {"1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4"}
    assert facts.policy_oids == {POLICY_OID.dotted_string}
    assert facts.not_after == NOW + dt.timedelta(days=90)
    assert facts.ca_ids == CA_IDS
    assert facts.ca_spki_pins == {ca_pin(issuing), ca_pin(root)}


def test_facts_are_cached_per_certificate(chain: tuple[x509.Certificate, ...]) -> None:
    reparsed = tuple(x509.load_der_x509_certificate(c.public_bytes(Encoding.DER)) for c in chain)

    first = CertificateFacts.of(chain, CA_IDS)

    assert CertificateFacts.of(reparsed, CA_IDS) is first
    assert CertificateFacts.of(chain, frozenset({"ca_other"})).ca_ids == {"ca_other"}


def test_a_leaf_without_extensions_has_empty_facts() -> None:
    root = devpki.ca("Bare Root CA")
    leaf = devpki.issue(
        x509.Name.from_rfc4514_string("O=No CN"), root, profile=devpki.Profile(eku=None)
    )

    facts = CertificateFacts.of((leaf.cert, root.cert), frozenset())

    assert facts.common_name is None
    assert facts.sans == ()
    assert facts.eku_oids == frozenset()
    assert facts.policy_oids == frozenset()


def test_facts_json_round_trips_and_is_memoised(chain: tuple[x509.Certificate, ...]) -> None:
    facts = CertificateFacts.of(chain, CA_IDS)

    data = json.loads(json.dumps(facts.to_dict()))
    again = CertificateFacts.from_dict(data)

    assert again == facts
    assert CertificateFacts.from_dict(json.loads(json.dumps(data))) is again
    assert data["caIds"] == ["ca_issuing", "ca_root"]
    assert data["sans"][0] == {"type": "dns", "value": "laptop-7.corp.example"}


def test_facts_json_without_optional_keys(chain: tuple[x509.Certificate, ...]) -> None:
    data = CertificateFacts.of(chain, CA_IDS).to_dict()
    for key in ("issuerDn", "caSpkiPins", "sans", "policyOids"):
        del data[key]

    facts = CertificateFacts.from_dict(data)

    assert (facts.issuer_dn, facts.ca_spki_pins, facts.sans) == ("", frozenset(), ())
    assert facts.ca_ids == CA_IDS
    assert CertificateFacts.from_dict(data) == facts


def _request(**changes: Any) -> SignOnRequest:
    values: dict[str, Any] = {
        "app_id": "app_portal",
        "user_id": "usr_alice",
        "group_ids": frozenset({"grp_b", "grp_a"}),
        "ip": ipaddress.ip_address("2001:db8::7"),
        "at": NOW,
        "device_verified": False,
        "device_reason": "NO_CLIENT_CERTIFICATE",
        "device_status": None,
        "certificate": None,
    }
    values.update(changes)
    return SignOnRequest(**values)


def test_request_json_round_trips(chain: tuple[x509.Certificate, ...]) -> None:
    verified = _request(
        device_verified=True,
        device_reason=None,
        device_status="ACTIVE",
        certificate=CertificateFacts.of(chain, CA_IDS),
        at=NOW + dt.timedelta(microseconds=123),
    )
    for request in (_request(), _request(ip=None, user_id=None, group_ids=frozenset()), verified):
        data = json.loads(json.dumps(request.to_dict()))

        assert SignOnRequest.from_dict(data) == request

    assert _request().to_dict()["groupIds"] == ["grp_a", "grp_b"]
    assert _request().to_dict()["at"] == "2026-06-01T12:00:00Z"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ip": "999.1.1.1"}, "request.ip"),
        ({"ip": 17}, "request.ip"),
        ({"at": "yesterday"}, "request.at"),
        ({"at": None}, "request.at"),
        ({"groupIds": "grp_a"}, "request.groupIds"),
        ({"deviceVerified": "yes"}, "request.deviceVerified"),
        ({"userId": 5}, "request.userId"),
        ({"certificate": []}, "request.certificate"),
        ({"certificate": {"subjectDn": "CN=x"}}, "request.certificate.commonName"),
    ],
)
def test_bad_request_json_names_the_field(change: dict[str, Any], field: str) -> None:
    data = {**_request().to_dict(), **change}

    with pytest.raises(CertboundError) as caught:
        SignOnRequest.from_dict(data)

    assert caught.value.reason is ReasonCode.POLICY_INVALID
    assert caught.value.detail.startswith(f"{field}: "), caught.value.detail


def test_bad_facts_json_names_the_field(chain: tuple[x509.Certificate, ...]) -> None:
    data = CertificateFacts.of(chain, CA_IDS).to_dict()
    for key, value, field in (
        ("notAfter", "soon", "certificate.notAfter"),
        ("sans", [{"type": "dns"}], "certificate.sans[0]"),
        ("ekuOids", [1], "certificate.ekuOids"),
        ("commonName", 3, "certificate.commonName"),
    ):
        with pytest.raises(CertboundError, match="^POLICY_INVALID: " + re.escape(field)) as caught:
            CertificateFacts.from_dict({**data, key: value, "serialNumber": f"{key}00"})
        assert caught.value.reason is ReasonCode.POLICY_INVALID
