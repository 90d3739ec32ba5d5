"""CompactSigner: what it signs, joserfc verifies; header and claims as given."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, RSAKey

from certbound.oauth.jws import CompactSigner, b64url


def _decode(segment: str) -> dict[str, object]:
    padded = segment + "=" * (-len(segment) % 4)
    loaded: dict[str, object] = json.loads(base64.urlsafe_b64decode(padded))
    return loaded


CLAIMS = {
    "iss": "https://issuer.test",
    "sub": "client",
    "exp": 2_000_000_000,
    "cnf": {"x5t#S256": "abc"},
}


def test_es256_token_verifies_with_joserfc() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    token = CompactSigner(private, "ES256", "k1").sign(CLAIMS, "at+jwt")
    header, payload, signature = token.split(".")
    assert _decode(header) == {"typ": "at+jwt", "alg": "ES256", "kid": "k1"}
    assert _decode(payload) == CLAIMS
    assert len(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))) == 64
    public = ECKey.import_key(private.public_key())
    obj = jws.deserialize_compact(token, public, algorithms=["ES256"])
    assert json.loads(obj.payload) == CLAIMS


def test_rs256_token_verifies_with_joserfc() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = CompactSigner(private, "RS256", "k2").sign(CLAIMS, "JWT")
    public = RSAKey.import_key(private.public_key())
    obj = jws.deserialize_compact(token, public, algorithms=["RS256"])
    assert json.loads(obj.payload) == CLAIMS
    assert _decode(token.split(".")[0])["typ"] == "JWT"


def test_signature_is_checked_by_joserfc() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    token = CompactSigner(private, "ES256", "k1").sign(CLAIMS, "at+jwt")
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(token, ECKey.import_key(other.public_key()), algorithms=["ES256"])


def test_each_signature_differs_and_header_is_reused() -> None:
    signer = CompactSigner(ec.generate_private_key(ec.SECP256R1()), "ES256", "k1")
    first, second = signer.sign(CLAIMS, "at+jwt"), signer.sign(CLAIMS, "at+jwt")
    assert first.split(".")[:2] == second.split(".")[:2]
    assert first != second  # ECDSA nonces are random


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "ES256"),
        (ec.generate_private_key(ec.SECP256R1()), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "HS256"),
        (ec.generate_private_key(ec.SECP256R1()), "none"),
    ],
)
def test_mismatched_key_or_algorithm_is_refused(key: ec.EllipticCurvePrivateKey, alg: str) -> None:
    with pytest.raises(ValueError):
        CompactSigner(key, alg, "k")


def test_b64url_has_no_padding() -> None:
    assert b64url(b"\xff\xfe") == b"__4"
