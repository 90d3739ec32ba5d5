"""Mutual-TLS client authentication and certificate binding (RFC 8705).

- :func:`tls_client_auth_matches` (section 2.1, PKI method): the validated chain's leaf
  carries the ONE identity the client registered (``tls_client_auth_subject_dn`` or a
  ``tls_client_auth_san_*`` field), and a CA of the validated path above the leaf is pinned
  on the client by the SHA-256 of its SubjectPublicKeyInfo. The pin is by key, never by
  name: a second CA with the same subject DN (keycloak#52801) has another key and no pin.
- :func:`self_signed_matches` (section 2.2): the presented certificate is one the client
  registered in its ``jwks`` (an ``x5t#S256`` member, or the first certificate of ``x5c``).
- :func:`bound_thumbprint` (section 3.1): the ``x5t#S256`` a certificate-bound token carries.

Each matcher answers None on a match, else a human detail of what did not match (the caller
refuses with CERTIFICATE_NOT_BOUND_TO_CLIENT). Facts derived from a certificate (CA pins,
the normalised subject DN) are cached by certificate, so a warm request costs a few hashes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
from collections.abc import Callable, Sequence

from cryptography import x509

from certbound.directory import apps
from certbound.directory.apps import IDENTITY_FIELDS, ClientMetadata, normalise_dn
from certbound.errors import CertboundError
from certbound.pki.certificate import x5t_s256

_SAN_TYPES: dict[str, type[x509.GeneralName]] = {
    "tls_client_auth_san_dns": x509.DNSName,
    "tls_client_auth_san_uri": x509.UniformResourceIdentifier,
    "tls_client_auth_san_ip": x509.IPAddress,
    "tls_client_auth_san_email": x509.RFC822Name,
}
_CACHE = 4096


def bound_thumbprint(leaf_der: bytes) -> str:
    """The certificate's ``x5t#S256``: base64url SHA-256 of its DER (RFC 8705 section 3.1)."""
    return x5t_s256(leaf_der)


class _PerCertificate:
    """A fact derived from a certificate, remembered per certificate object.

    Keyed by the object's identity, not its value: hashing a certificate costs as much as
    the fact. Each entry holds the certificate itself, so its id cannot be reused by another
    object while the entry lives. The validator caches its results, so a device's requests
    present the same objects. Bounded: emptied when full."""

    def __init__(self, compute: Callable[[x509.Certificate], str], size: int = _CACHE) -> None:
        self._compute = compute
        self._size = size
        self._entries: dict[int, tuple[x509.Certificate, str]] = {}

    def __call__(self, cert: x509.Certificate) -> str:
        entry = self._entries.get(id(cert))
        if entry is not None and entry[0] is cert:
            return entry[1]
        value = self._compute(cert)
        if len(self._entries) >= self._size:
            self._entries = {}
        self._entries[id(cert)] = (cert, value)
        return value


ca_pin = _PerCertificate(apps.ca_pin)
"""The CA's pin as ``tls_client_auth_ca_pins`` holds it (SHA-256 hex of its SPKI DER)."""


def tls_client_auth_matches(
    metadata: ClientMetadata, verified_chain: Sequence[x509.Certificate]
) -> str | None:
    """None when the validated path (leaf first) matches the client's registered identity
    and pinned CA; else what did not match."""
    if not verified_chain:
        return "no validated certificate chain"
    registered = [(name, getattr(metadata, name)) for name in IDENTITY_FIELDS]
    present = [(name, value) for name, value in registered if value is not None]
    if len(present) != 1:
        return (
            f"the client must register exactly one certificate identity "
            f"({', '.join(IDENTITY_FIELDS)}); it registers {len(present)}"
        )
    name, value = present[0]
    leaf = verified_chain[0]
    detail = _leaf_mismatch(leaf, name, value)
    if detail is not None:
        return detail
    return _ca_mismatch(verified_chain[1:], metadata.tls_client_auth_ca_pins)


def _leaf_mismatch(leaf: x509.Certificate, name: str, value: str) -> str | None:
    if name == "tls_client_auth_subject_dn":
        subject = _subject(leaf)
        if subject == _normalised(value):
            return None
        return f"certificate subject DN {subject!r} is not the registered {value!r}"
    try:
        entries = _sans(leaf, _SAN_TYPES[name])
    except ValueError:
        return "the certificate's subjectAltName extension does not decode"
    kind = name.removeprefix("tls_client_auth_san_")
    if any(_san_equal(kind, value, entry) for entry in entries):
        return None
    shown = ", ".join(str(entry) for entry in entries) or "none"
    return f"no {kind} subjectAltName of the certificate is the registered {value!r} (has: {shown})"


def _ca_mismatch(cas: Sequence[x509.Certificate], pins: Sequence[str]) -> str | None:
    if not pins:
        return "the client pins no issuing CA (tls_client_auth_ca_pins is empty)"
    wanted = {pin.lower() for pin in pins}
    if any(ca_pin(ca) in wanted for ca in cas):
        return None
    issuer = cas[0].subject.rfc4514_string() if cas else "none"
    return (
        f"no CA of the validated path (issuer {issuer!r}) has a key pinned on the client "
        f"(tls_client_auth_ca_pins); a CA with the same name but another key does not count"
    )


def _san_equal(kind: str, registered: str, entry: object) -> bool:
    if kind == "ip":
        try:
            return ipaddress.ip_address(registered) == entry
        except ValueError:
            return False
    if not isinstance(entry, str):
        return False
    if kind == "dns":
        return entry.lower() == registered.lower()
    return entry == registered


def _sans(cert: x509.Certificate, kind: type[x509.GeneralName]) -> list[object]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [name.value for name in names if isinstance(name, kind)]


def _normalised_subject(cert: x509.Certificate) -> str:
    return _normalised(cert.subject.rfc4514_string())


_subject = _PerCertificate(_normalised_subject)


@functools.lru_cache(maxsize=_CACHE)
def _normalised(dn: str) -> str:
    try:
        return normalise_dn(dn)
    except CertboundError:
        return dn


def self_signed_matches(metadata: ClientMetadata, leaf_der: bytes) -> str | None:
    """None when the presented certificate is registered in the client's ``jwks`` (its
    ``x5t#S256``, or the first ``x5c`` certificate); else what did not match."""
    keys = (metadata.jwks or {}).get("keys")
    if not isinstance(keys, list) or not keys:
        return "the client registers no certificates (jwks has no keys)"
    thumbprint = bound_thumbprint(leaf_der)
    for key in keys:
        if isinstance(key, dict) and _registers(key, thumbprint):
            return None
    return f"certificate x5t#S256 {thumbprint} is not registered in the client's jwks"


def _registers(jwk: dict[str, object], thumbprint: str) -> bool:
    member = jwk.get("x5t#S256")
    if isinstance(member, str) and hmac.compare_digest(member.encode(), thumbprint.encode()):
        return True
    chain = jwk.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        return False
    try:
        first = base64.b64decode(chain[0], validate=True)
    except (binascii.Error, ValueError):
        return False
    return bound_thumbprint(first) == thumbprint
