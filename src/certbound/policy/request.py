"""What a sign-on policy decides on: one sign-on request and the facts of its certificate.

:class:`CertificateFacts` is what certificate conditions read from a validated path,
computed once per path (:meth:`CertificateFacts.of` is memoised on the certificates, so a
device seen again costs a cache look-up). :class:`SignOnRequest` is everything else: app,
user and groups, client IP, time, and the device-trust verdict. Both have a JSON form
(``policyEvaluationDetail.request`` in System Log events) from which :meth:`from_dict`
rebuilds the same value, so a logged request can be replayed against a draft policy;
facts read back from JSON are memoised too (by serial, issuer, expiry and CAs).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from certbound.clock import format_rfc3339, parse_rfc3339
from certbound.devices.mapping import upn
from certbound.directory.apps import ca_pin
from certbound.pki.certificate import serial_hex
from certbound.policy.model import invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CACHE = 4096


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """The leaf's names, serial, SANs (``(type, value)``, type one of dns, email, uri, ip,
    upn), EKU and certificatePolicies OIDs and notAfter; the trust-store ids and SPKI pins
    (SHA-256 hex, as apps pin CAs) of the CAs on the validated path above the leaf."""

    subject_dn: str
    common_name: str | None
    serial_number: str
    sans: tuple[tuple[str, str], ...]
    eku_oids: frozenset[str]
    policy_oids: frozenset[str]
    not_after: dt.datetime
    ca_ids: frozenset[str]
    ca_spki_pins: frozenset[str]
    issuer_dn: str = ""

    @classmethod
    def of(cls, chain: tuple[x509.Certificate, ...], ca_ids: frozenset[str]) -> CertificateFacts:
        """The facts of a validated path (leaf first, as ``Verified.chain``)."""
        return _facts_of(tuple(chain), frozenset(ca_ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "subjectDn": self.subject_dn,
            "issuerDn": self.issuer_dn,
            "commonName": self.common_name,
            "serialNumber": self.serial_number,
            "sans": [{"type": t, "value": v} for t, v in self.sans],
            "ekuOids": sorted(self.eku_oids),
            "policyOids": sorted(self.policy_oids),
            "notAfter": format_rfc3339(self.not_after),
            "caIds": sorted(self.ca_ids),
            "caSpkiPins": sorted(self.ca_spki_pins),
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "certificate") -> CertificateFacts:
        """The facts :meth:`to_dict` wrote (memoised); POLICY_INVALID naming the field."""
        if not isinstance(data, Mapping):
            raise invalid(path, "must be an object")
        key = _facts_key(data)
        cached = None if key is None else _FROM_DICT.get(key)
        if cached is not None:
            return cached
        facts = _facts_from_dict(data, path)
        if key is not None:
            if len(_FROM_DICT) >= _CACHE:
                _FROM_DICT.clear()
            _FROM_DICT[key] = facts
        return facts


def _facts_key(data: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What identifies logged facts (serial, issuer, expiry, CAs), or None if unusable."""
    try:
        key = (
            data["serialNumber"],
            data["issuerDn"],
            data["notAfter"],
            tuple(data["caIds"]),
            tuple(data["caSpkiPins"]),
        )
        hash(key)
    except (KeyError, TypeError):
        return None
    return key


_FROM_DICT: dict[tuple[Any, ...], CertificateFacts] = {}


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _sans(cert: x509.Certificate) -> Iterator[tuple[str, str]]:
    names = _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME) or ()
    for name in names:
        match name:
            case x509.DNSName():
                yield "dns", name.value
            case x509.RFC822Name():
                yield "email", name.value
            case x509.UniformResourceIdentifier():
                yield "uri", name.value
            case x509.IPAddress():
                yield "ip", str(name.value)
            case x509.OtherName():
                value = upn(name)
                if value is not None:
                    yield "upn", value


@functools.lru_cache(maxsize=_CACHE)
def _facts_of(chain: tuple[x509.Certificate, ...], ca_ids: frozenset[str]) -> CertificateFacts:
    leaf = chain[0]
    eku = _extension(leaf, ExtensionOID.EXTENDED_KEY_USAGE) or ()
    policies = _extension(leaf, ExtensionOID.CERTIFICATE_POLICIES) or ()
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = names[0].value if names and isinstance(names[0].value, str) else None
    return CertificateFacts(
        subject_dn=leaf.subject.rfc4514_string(),
        common_name=common_name,
        serial_number=serial_hex(leaf),
        sans=tuple(_sans(leaf)),
        eku_oids=frozenset(oid.dotted_string for oid in eku),
        policy_oids=frozenset(p.policy_identifier.dotted_string for p in policies),
        not_after=leaf.not_valid_after_utc,
        ca_ids=ca_ids,
        ca_spki_pins=frozenset(ca_pin(cert) for cert in chain[1:]),
        issuer_dn=leaf.issuer.rfc4514_string(),
    )


def _text(data: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> Any:
    if key not in data:
        raise invalid(f"{path}.{key}", "is required")
    value = data[key]
    if not isinstance(value, str) and not (optional and value is None):
        raise invalid(f"{path}.{key}", "must be a string" + (" or null" if optional else ""))
    return value


def _texts(data: Mapping[str, Any], key: str, path: str) -> frozenset[str]:
    value = data.get(key, [])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{path}.{key}", "must be a list of strings")
    return frozenset(value)


def _time(value: Any, path: str) -> dt.datetime:
    if not isinstance(value, str):
        raise invalid(path, "must be an RFC 3339 time")
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise invalid(path, f"{value!r} is not an RFC 3339 time") from None


def _san_pairs(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list | tuple):
        raise invalid(path, "must be a list")
    out = []
    for i, item in enumerate(value):
        if not (
            isinstance(item, Mapping)
            and isinstance(item.get("type"), str)
            and isinstance(item.get("value"), str)
        ):
            raise invalid(f"{path}[{i}]", "must be an object with string type and value")
        out.append((item["type"], item["value"]))
    return tuple(out)


def _facts_from_dict(data: Mapping[str, Any], path: str) -> CertificateFacts:
    return CertificateFacts(
        subject_dn=_text(data, "subjectDn", path),
        common_name=_text(data, "commonName", path, optional=True),
        serial_number=_text(data, "serialNumber", path),
        sans=_san_pairs(data.get("sans", []), f"{path}.sans"),
        eku_oids=_texts(data, "ekuOids", path),
        policy_oids=_texts(data, "policyOids", path),
        not_after=_time(data.get("notAfter"), f"{path}.notAfter"),
        ca_ids=_texts(data, "caIds", path),
        ca_spki_pins=_texts(data, "caSpkiPins", path),
        issuer_dn=_text(data, "issuerDn", path) if "issuerDn" in data else "",
    )


@functools.lru_cache(maxsize=65536)
def parse_ip(text: str) -> IPAddress:
    """An IP address from its text (memoised: logged requests repeat addresses)."""
    return ipaddress.ip_address(text)


@dataclass(frozen=True, slots=True)
class SignOnRequest:
    """One sign-on: for which app, by whom (user and the groups they belong to), from where
    (client IP), when (aware UTC), and the device-trust verdict (``device_verified``; when
    false, ``device_reason`` is the reason code). ``certificate`` holds the facts of the
    validated path; certificate conditions read them only when the device is verified."""

    app_id: str | None
    user_id: str | None
    group_ids: frozenset[str]
    ip: IPAddress | None
    at: dt.datetime
    device_verified: bool
    device_reason: str | None
    device_status: str | None
    certificate: CertificateFacts | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "appId": self.app_id,
            "userId": self.user_id,
            "groupIds": sorted(self.group_ids),
            "ip": None if self.ip is None else str(self.ip),
            "at": format_rfc3339(self.at),
            "deviceVerified": self.device_verified,
            "deviceReason": self.device_reason,
            "deviceStatus": self.device_status,
            "certificate": None if self.certificate is None else self.certificate.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "request") -> SignOnRequest:
        """The request :meth:`to_dict` wrote; POLICY_INVALID naming the field at fault."""
        if not isinstance(data, Mapping):
            raise invalid(path, "must be an object")
        verified = data.get("deviceVerified", False)
        if not isinstance(verified, bool):
            raise invalid(f"{path}.deviceVerified", "must be true or false")
        certificate = data.get("certificate")
        return cls(
            app_id=_optional(data, "appId", path),
            user_id=_optional(data, "userId", path),
            group_ids=_texts(data, "groupIds", path),
            ip=_ip(data.get("ip"), f"{path}.ip"),
            at=_time(data.get("at"), f"{path}.at"),
            device_verified=verified,
            device_reason=_optional(data, "deviceReason", path),
            device_status=_optional(data, "deviceStatus", path),
            certificate=None
            if certificate is None
            else CertificateFacts.from_dict(certificate, f"{path}.certificate"),
        )


def _optional(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{path}.{key}", "must be a string or null")
    return value


def _ip(value: Any, path: str) -> IPAddress | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(path, "must be an IP address string or null")
    try:
        return parse_ip(value)
    except ValueError:
        raise invalid(path, f"{value!r} is not an IP address") from None
