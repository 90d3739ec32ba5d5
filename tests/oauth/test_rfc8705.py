"""RFC 8705 matching on real certificates (devpki): tls_client_auth's identity fields and
CA pin (a same-DN impostor CA must not match), self_signed_tls_client_auth's registered
certificates, and the x5t#S256 binding value."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certbound.directory.apps import AuthMethod, ClientMetadata
from certbound.oauth.rfc8705 import (
    bound_thumbprint,
    ca_pin,
    self_signed_matches,
    tls_client_auth_matches,
)
from certbound.pki import devpki
from certbound.pki.certificate import der

SUBJECT = "CN=svc-billing,OU=Payments,O=Certbound Dev"


def _name(dn: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(dn)


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    root = devpki.ca("Root CA")
    intermediate = devpki.ca("Issuing CA", root)
    # Same subject DN as the issuing CA, another key, under the same root.
    impostor = devpki.ca("Issuing CA", root)
    sans = [
        x509.DNSName("Billing.Example.com"),
        x509.UniformResourceIdentifier("spiffe://example.com/billing"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.RFC822Name("billing@example.com"),
    ]
    profile = devpki.Profile(sans=sans)
    leaf = devpki.issue(_name(SUBJECT), intermediate, profile=profile)
    forged = devpki.issue(_name(SUBJECT), impostor, profile=profile)
    return {
        "root": root,
        "intermediate": intermediate,
        "impostor": impostor,
        "leaf": leaf,
        "forged": forged,
        "chain": (leaf.cert, intermediate.cert, root.cert),
        "forged_chain": (forged.cert, impostor.cert, root.cert),
    }


def _meta(pki: dict[str, Any], **fields: Any) -> ClientMetadata:
    values: dict[str, Any] = {"tls_client_auth_ca_pins": (ca_pin(pki["intermediate"].cert),)}
    values.update(fields)
    return ClientMetadata(AuthMethod.TLS_CLIENT_AUTH, **values)


def test_ca_pin_is_sha256_hex_of_the_spki(pki: dict[str, Any]) -> None:
    cert = pki["intermediate"].cert
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    assert ca_pin(cert) == hashlib.sha256(spki).hexdigest()
    assert ca_pin(cert) != ca_pin(pki["impostor"].cert)
    assert pki["impostor"].cert.subject == cert.subject


@pytest.mark.parametrize(
    "field",
    [
        {"tls_client_auth_subject_dn": SUBJECT},
        # Equivalent spellings: spaces after commas, lower-case attribute names.
        {"tls_client_auth_subject_dn": "cn=svc-billing, ou=Payments, o=Certbound Dev"},
        {"tls_client_auth_san_dns": "billing.example.COM"},
        {"tls_client_auth_san_uri": "spiffe://example.com/billing"},
        {"tls_client_auth_san_ip": "2001:db8:0::1"},
        {"tls_client_auth_san_email": "billing@example.com"},
    ],
)
def test_tls_client_auth_matches_each_identity_field(
    pki: dict[str, Any], field: dict[str, str]
) -> None:
    assert tls_client_auth_matches(_meta(pki, **field), pki["chain"]) is None


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ({"tls_client_auth_subject_dn": "CN=svc-billing,O=Certbound Dev"}, "subject DN"),
        ({"tls_client_auth_subject_dn": "CN=SVC-billing,OU=Payments,O=Certbound Dev"}, "subject"),
        ({"tls_client_auth_san_dns": "other.example.com"}, "no dns subjectAltName"),
        ({"tls_client_auth_san_dns": "example.com"}, "no dns"),
        ({"tls_client_auth_san_uri": "spiffe://example.com/Billing"}, "no uri"),
        ({"tls_client_auth_san_uri": "spiffe://example.com/billing/"}, "no uri"),
        ({"tls_client_auth_san_ip": "2001:db8::2"}, "no ip"),
        ({"tls_client_auth_san_ip": "not-an-ip"}, "no ip"),
        ({"tls_client_auth_san_email": "Billing@example.com"}, "no email"),
        # The registered value found in another SAN type does not count.
        ({"tls_client_auth_san_dns": "billing@example.com"}, "no dns"),
    ],
)
def test_tls_client_auth_mismatches(pki: dict[str, Any], field: dict[str, str], words: str) -> None:
    detail = tls_client_auth_matches(_meta(pki, **field), pki["chain"])
    assert detail is not None and words in detail


def test_same_dn_impostor_ca_does_not_match(pki: dict[str, Any]) -> None:
    """keycloak#52801: a CA with the pinned CA's DN but another key issues a certificate
    with the registered subject; the pin (by key) refuses it."""
    meta = _meta(pki, tls_client_auth_subject_dn=SUBJECT)
    assert pki["forged"].cert.subject == pki["leaf"].cert.subject
    assert pki["forged"].cert.issuer == pki["leaf"].cert.issuer
    detail = tls_client_auth_matches(meta, pki["forged_chain"])
    assert detail is not None and "pinned" in detail and "same name" in detail
    assert tls_client_auth_matches(meta, pki["chain"]) is None


def test_pin_may_be_any_ca_above_the_leaf_but_never_the_leaf(pki: dict[str, Any]) -> None:
    root_pinned = _meta(
        pki,
        tls_client_auth_subject_dn=SUBJECT,
        tls_client_auth_ca_pins=(ca_pin(pki["root"].cert),),
    )
    assert tls_client_auth_matches(root_pinned, pki["chain"]) is None
    leaf_pinned = dataclasses.replace(
        root_pinned, tls_client_auth_ca_pins=(ca_pin(pki["leaf"].cert),)
    )
    assert tls_client_auth_matches(leaf_pinned, pki["chain"]) is not None
    no_pins = dataclasses.replace(root_pinned, tls_client_auth_ca_pins=())
    detail = tls_client_auth_matches(no_pins, pki["chain"])
    assert detail is not None and "pins no issuing CA" in detail
    upper = dataclasses.replace(
        root_pinned, tls_client_auth_ca_pins=(ca_pin(pki["root"].cert).upper(),)
    )
    assert tls_client_auth_matches(upper, pki["chain"]) is None


def test_exactly_one_identity_field(pki: dict[str, Any]) -> None:
    none = _meta(pki)
    two = _meta(
        pki, tls_client_auth_subject_dn=SUBJECT, tls_client_auth_san_dns="billing.example.com"
    )
    for meta in (none, two):
        detail = tls_client_auth_matches(meta, pki["chain"])
        assert detail is not None and "exactly one" in detail
    detail = tls_client_auth_matches(_meta(pki, tls_client_auth_subject_dn=SUBJECT), ())
    assert detail == "no validated certificate chain"


def test_leaf_without_sans_does_not_match_a_san_field(pki: dict[str, Any]) -> None:
    bare = devpki.issue(_name(SUBJECT), pki["intermediate"])
    chain = (bare.cert, pki["intermediate"].cert, pki["root"].cert)
    detail = tls_client_auth_matches(_meta(pki, tls_client_auth_san_dns="x.example"), chain)
    assert detail is not None and "has: none" in detail
    assert tls_client_auth_matches(_meta(pki, tls_client_auth_subject_dn=SUBJECT), chain) is None


# --- self_signed_tls_client_auth ------------------------------------------------------------


def _self_signed() -> devpki.Issued:
    return devpki.issue("device-self-signed")


def _self_meta(*keys: dict[str, Any]) -> ClientMetadata:
    return ClientMetadata(AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks={"keys": list(keys)})


def test_bound_thumbprint_is_x5t_s256() -> None:
    leaf = _self_signed()
    digest = hashlib.sha256(der(leaf.cert)).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert bound_thumbprint(der(leaf.cert)) == expected
    assert len(expected) == 43 and "=" not in expected


def test_self_signed_matches_x5t_member_and_x5c() -> None:
    leaf, other = _self_signed(), _self_signed()
    leaf_der, other_der = der(leaf.cert), der(other.cert)
    by_thumbprint = {"kty": "EC", "x5t#S256": bound_thumbprint(leaf_der)}
    by_x5c = {"kty": "EC", "x5c": [base64.b64encode(leaf_der).decode()]}
    unrelated = {"kty": "EC", "x5c": [base64.b64encode(other_der).decode()]}
    assert self_signed_matches(_self_meta(by_thumbprint), leaf_der) is None
    assert self_signed_matches(_self_meta(unrelated, by_x5c), leaf_der) is None
    detail = self_signed_matches(_self_meta(unrelated), leaf_der)
    assert detail is not None and bound_thumbprint(leaf_der) in detail


def test_self_signed_ignores_chain_members_and_garbage() -> None:
    leaf, other = _self_signed(), _self_signed()
    leaf_der = der(leaf.cert)
    # The presented certificate only as a chain member (not the key's certificate).
    second = {
        "kty": "EC",
        "x5c": [base64.b64encode(der(other.cert)).decode(), base64.b64encode(leaf_der).decode()],
    }
    garbage = {"kty": "EC", "x5c": ["%%%not base64"], "x5t#S256": 7}
    assert self_signed_matches(_self_meta(second, garbage), leaf_der) is not None
    empty = ClientMetadata(AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=None)
    detail = self_signed_matches(empty, leaf_der)
    assert detail is not None and "no keys" in detail
