"""Mapping rules: each rule on real certificates, rule order, skipped values, bad rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.oid import NameOID, ObjectIdentifier

from certbound.config import ConfigError, Settings
from certbound.devices.mapping import MAX_USER_LENGTH, UPN_OID, MappingRules, upn
from certbound.pki import devpki
from certbound.pki.devpki import Issued

EMAIL = x509.RFC822Name("alice@corp.example")
DNS = x509.DNSName("laptop-7.corp.example")
URI = x509.UniformResourceIdentifier("urn:device:laptop-7")


def upn_name(value: str) -> x509.OtherName:
    """A UPN otherName as Windows CAs issue it: a DER UTF8String."""
    return x509.OtherName(UPN_OID, asn1.encode_der(value))


@pytest.fixture(scope="module")
def issuer() -> Issued:
    return devpki.ca("Mapping Test CA")


def cert(
    issuer: Issued,
    sans: list[x509.GeneralName] | None = None,
    attributes: list[x509.NameAttribute[str]] | None = None,
) -> x509.Certificate:
    name = x509.Name(attributes or [x509.NameAttribute(NameOID.COMMON_NAME, "laptop-7")])
    return devpki.issue(name, issuer, profile=devpki.Profile(sans=sans or [])).cert


def mapped(rules: list[str], leaf: x509.Certificate) -> tuple[str, str] | None:
    return MappingRules.parse(rules).map(leaf)


def test_each_san_rule_reads_its_own_kind(issuer: Issued) -> None:
    leaf = cert(issuer, [DNS, URI, upn_name("bob@corp.example"), EMAIL])
    assert mapped(["san_email"], leaf) == ("alice@corp.example", "san_email")
    assert mapped(["san_upn"], leaf) == ("bob@corp.example", "san_upn")
    assert mapped(["san_uri"], leaf) == ("urn:device:laptop-7", "san_uri")
    assert mapped(["san_dns"], leaf) == ("laptop-7.corp.example", "san_dns")
    assert mapped(["cn"], leaf) == ("laptop-7", "cn")


def test_the_first_rule_that_yields_a_value_wins(issuer: Issued) -> None:
    only_cn = cert(issuer)
    assert mapped(["san_email", "san_upn", "cn"], only_cn) == ("laptop-7", "cn")
    both = cert(issuer, [upn_name("bob@corp.example"), EMAIL])
    assert mapped(["san_upn", "san_email"], both) == ("bob@corp.example", "san_upn")
    assert mapped(["san_email", "san_upn"], both) == ("alice@corp.example", "san_email")


def test_the_first_san_of_a_kind_is_taken(issuer: Issued) -> None:
    leaf = cert(issuer, [x509.RFC822Name("first@corp.example"), EMAIL])
    assert mapped(["san_email"], leaf) == ("first@corp.example", "san_email")


def test_dn_attributes_by_short_name_and_by_oid(issuer: Issued) -> None:
    leaf = cert(
        issuer,
        attributes=[
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.USER_ID, "u12345"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "EMP-0042"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "carol@corp.example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "laptop-7"),
        ],
    )
    assert mapped(["dn:UID"], leaf) == ("u12345", "dn:UID")
    assert mapped(["dn:uid"], leaf) == ("u12345", "dn:UID")  # names are case-insensitive
    assert mapped(["dn:OU"], leaf) == ("Engineering", "dn:OU")
    assert mapped(["dn:emailAddress"], leaf) == ("carol@corp.example", "dn:emailAddress")
    assert mapped(["dn:2.5.4.5"], leaf) == ("EMP-0042", "dn:2.5.4.5")
    assert mapped(["dn:title"], leaf) is None


def test_values_are_stripped_and_empty_or_unusable_ones_skipped(issuer: Issued) -> None:
    leaf = cert(issuer, [x509.RFC822Name("  dave@corp.example  ")])
    assert mapped(["san_email"], leaf) == ("dave@corp.example", "san_email")
    blank_cn = cert(issuer, [EMAIL], [x509.NameAttribute(NameOID.COMMON_NAME, "   ")])
    assert mapped(["cn", "san_email"], blank_cn) == ("alice@corp.example", "san_email")
    control = cert(issuer, attributes=[x509.NameAttribute(NameOID.USER_ID, "eve\nadmin")])
    assert mapped(["dn:UID"], control) is None
    long = cert(issuer, [x509.UniformResourceIdentifier("urn:x:" + "a" * MAX_USER_LENGTH)])
    assert mapped(["san_uri"], long) is None  # skipped, never cut


def test_unmapped_when_no_rule_yields(issuer: Issued) -> None:
    leaf = cert(issuer, [DNS])
    assert mapped(["san_email", "san_upn"], leaf) is None
    assert MappingRules.parse([]).map(leaf) is None


def test_upn_must_be_one_utf8string(issuer: Issued) -> None:
    printable = x509.OtherName(UPN_OID, b"\x13\x03bob")  # PrintableString, not UTF8String
    not_utf8 = x509.OtherName(UPN_OID, b"\x0c\x02\xff\xfe")  # UTF8String of invalid UTF-8
    other_oid = x509.OtherName(ObjectIdentifier("1.3.6.1.5.5.7.8.9"), asn1.encode_der("bob"))
    assert upn(printable) is None and upn(not_utf8) is None and upn(other_oid) is None
    leaf = cert(issuer, [printable, other_oid, not_utf8, upn_name("frank@corp.example")])
    assert mapped(["san_upn"], leaf) == ("frank@corp.example", "san_upn")
    assert mapped(["san_upn"], cert(issuer, [printable])) is None


def test_the_default_rules_parse() -> None:
    default = Settings(data_dir=Path("."), database_url="sqlite://").device_mapping
    assert MappingRules.parse(default).names == ("san_email", "san_upn", "cn")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("san_mail", "unknown rule 'san_mail'"),
        ("dn:Nickname", "rule 'dn:Nickname' names an unknown subject attribute"),
        ("dn:", "rule 'dn:' names an unknown subject attribute"),
        ("dn:3.1.2", "unknown subject attribute"),  # not a dotted OID: arcs start at 0-2
        ("dn:" + "1." * 40 + "1", "longer than"),
    ],
)
def test_a_bad_rule_is_a_config_error_naming_it(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^device_mapping: ") as caught:
        MappingRules.parse(["san_email", rule])
    assert message in str(caught.value)
