"""Mapping rules: which user a device certificate belongs to (setting ``device_mapping``).

A rule names one place in the certificate a user name is read from; rules are tried in
order and the first one that yields a value wins (:meth:`MappingRules.map`):

- ``san_email``: the first rfc822Name subject alternative name;
- ``san_upn``: the first Microsoft UPN (otherName ``1.3.6.1.4.1.311.20.2.3``, a UTF8String);
- ``san_uri``: the first uniformResourceIdentifier SAN; ``san_dns``: the first dNSName SAN;
- ``cn``: the subject's (first) common name;
- ``dn:<ATTR>``: the first subject attribute ``ATTR``, a short name (``UID``, ``OU``,
  ``emailAddress``, ``serialNumber``... see :data:`ATTRIBUTES`, case-insensitive) or a dotted
  OID (``dn:2.5.4.45``).

Values are stripped. A value that is empty, longer than :data:`MAX_USER_LENGTH` or holds
control characters is skipped (never cut: a cut name could be someone else's), and the
rule's next value is tried. No rule yielding a value leaves the device unmapped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.oid import ExtensionOID, NameOID, ObjectIdentifier

from certbound.config import ConfigError

# Microsoft's User Principal Name otherName (szOID_NT_PRINCIPAL_NAME).
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
# Longest user name kept; longer values are skipped, not cut.
MAX_USER_LENGTH = 256
# Longest rule text (``dn:`` and a dotted OID), so a rule name fits its column.
MAX_RULE_LENGTH = 64

# Subject attribute short names for ``dn:<ATTR>`` (RFC 4514 and OpenSSL's spellings).
ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "UID": NameOID.USER_ID,
    "DC": NameOID.DOMAIN_COMPONENT,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "title": NameOID.TITLE,
    "GN": NameOID.GIVEN_NAME,
    "givenName": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "surname": NameOID.SURNAME,
    "initials": NameOID.INITIALS,
    "pseudonym": NameOID.PSEUDONYM,
    "generationQualifier": NameOID.GENERATION_QUALIFIER,
    "dnQualifier": NameOID.DN_QUALIFIER,
    "postalCode": NameOID.POSTAL_CODE,
    "businessCategory": NameOID.BUSINESS_CATEGORY,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
}
_BY_LOWER = {name.lower(): name for name in ATTRIBUTES}
_DOTTED = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

Extract = Callable[[x509.Certificate], Iterator[str]]


def _sans(leaf: x509.Certificate) -> list[x509.GeneralName]:
    try:
        ext = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return []
    value = ext.value
    return list(value) if isinstance(value, x509.SubjectAlternativeName) else []


def _san_values(kind: type[x509.GeneralName]) -> Extract:
    def extract(leaf: x509.Certificate) -> Iterator[str]:
        for name in _sans(leaf):
            if isinstance(name, kind) and isinstance(name.value, str):
                yield name.value

    return extract


def upn(name: x509.OtherName) -> str | None:
    """The UPN of a UPN otherName, or None when its value is not one DER UTF8String.

    cryptography hands an otherName's value over as the DER of what its ``[0] EXPLICIT``
    holds; its declarative ASN.1 decoder reads it as exactly one UTF8String (anything else,
    trailing bytes included, raises ValueError)."""
    if name.type_id != UPN_OID:
        return None
    try:
        value = asn1.decode_der(str, name.value)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _upns(leaf: x509.Certificate) -> Iterator[str]:
    for name in _sans(leaf):
        if isinstance(name, x509.OtherName) and (value := upn(name)) is not None:
            yield value


def _subject_values(oid: ObjectIdentifier) -> Extract:
    def extract(leaf: x509.Certificate) -> Iterator[str]:
        for attribute in leaf.subject.get_attributes_for_oid(oid):
            if isinstance(attribute.value, str):
                yield attribute.value

    return extract


_FIXED: dict[str, Extract] = {
    "san_email": _san_values(x509.RFC822Name),
    "san_upn": _upns,
    "san_uri": _san_values(x509.UniformResourceIdentifier),
    "san_dns": _san_values(x509.DNSName),
    "cn": _subject_values(NameOID.COMMON_NAME),
}
RULE_NAMES = (*_FIXED, "dn:<ATTR>")


@dataclass(frozen=True, slots=True)
class Rule:
    """One mapping rule: its canonical name (what ``mapped_by`` records) and its values."""

    name: str
    extract: Extract


def _dn_rule(text: str, attribute: str) -> Rule:
    attribute = attribute.strip()
    if _DOTTED.match(attribute):
        return Rule(f"dn:{attribute}", _subject_values(ObjectIdentifier(attribute)))
    short = _BY_LOWER.get(attribute.lower())
    if short is None:
        known = ", ".join(ATTRIBUTES)
        raise ConfigError(
            f"device_mapping: rule {text!r} names an unknown subject attribute "
            f"{attribute!r}; use a dotted OID or one of {known}"
        )
    return Rule(f"dn:{short}", _subject_values(ATTRIBUTES[short]))


def parse_rule(text: str) -> Rule:
    """One rule from its text; ConfigError naming the rule when it is not one."""
    stripped = text.strip()
    if len(stripped) > MAX_RULE_LENGTH:
        raise ConfigError(f"device_mapping: rule {text!r} is longer than {MAX_RULE_LENGTH}")
    if stripped in _FIXED:
        return Rule(stripped, _FIXED[stripped])
    if stripped[:3].lower() == "dn:":
        return _dn_rule(text, stripped[3:])
    raise ConfigError(f"device_mapping: unknown rule {text!r}; rules are {', '.join(RULE_NAMES)}")


def usable(value: str) -> str | None:
    """The stripped value when it can name a user, else None."""
    value = value.strip()
    if not value or len(value) > MAX_USER_LENGTH:
        return None
    if any(unicodedata.category(char) == "Cc" for char in value):
        return None
    return value


class MappingRules:
    """The ordered mapping rules of ``Settings.device_mapping``."""

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def parse(cls, rules: Sequence[str]) -> MappingRules:
        """The rules from their texts; ConfigError naming the first bad rule."""
        return cls([parse_rule(text) for text in rules])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def map(self, leaf: x509.Certificate) -> tuple[str, str] | None:
        """``(user, rule name)`` from the first rule that yields a value, or None."""
        for rule in self.rules:
            for raw in rule.extract(leaf):
                value = usable(raw)
                if value is not None:
                    return value, rule.name
        return None

    def __repr__(self) -> str:
        return f"MappingRules({list(self.names)!r})"
