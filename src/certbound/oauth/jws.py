"""Signing Certbound's own tokens as compact JWS (RFC 7515 section 7.1) with ES256 or RS256.

Every token this server issues is a JWS over a JSON claims set with a fixed protected header
(``typ``, ``alg``, ``kid``). :class:`CompactSigner` encodes that header once per key and
claims type, serialises claims with orjson and signs with ``cryptography`` directly: ES256
per RFC 7518 section 3.4 (the DER ECDSA signature turned into the 64-byte ``R || S`` by
``cryptography``'s own :func:`decode_dss_signature`), RS256 per section 3.3 (PKCS #1 v1.5,
SHA-256). It does only this; parsing and verifying any JWS (ours or a client's) is joserfc's
job (:mod:`certbound.rs`, :mod:`certbound.oauth.rfc7523`), and a test checks that joserfc
verifies what is signed here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

SUPPORTED = frozenset({"ES256", "RS256"})
_ES256 = ec.ECDSA(hashes.SHA256())
_SHA256 = hashes.SHA256()
_PKCS1 = padding.PKCS1v15()


def b64url(data: bytes) -> bytes:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class CompactSigner:
    """Signs claims sets for one private key, ``alg`` and ``kid``."""

    __slots__ = ("_alg", "_headers", "_key", "_kid")

    def __init__(self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, alg: str, kid: str):
        if alg == "ES256":
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError("ES256 needs a P-256 private key")
        elif alg == "RS256":
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("RS256 needs an RSA private key")
        else:
            raise ValueError(f"unsupported JWS algorithm {alg!r}")
        self._key = key
        self._alg = alg
        self._kid = kid
        self._headers: dict[str, bytes] = {}

    def sign(self, claims: Mapping[str, Any], typ: str) -> str:
        """The compact JWS of ``claims`` with header ``{"typ", "alg", "kid"}``."""
        header = self._headers.get(typ)
        if header is None:
            encoded = orjson.dumps({"typ": typ, "alg": self._alg, "kid": self._kid})
            header = self._headers[typ] = b64url(encoded)
        signing_input = header + b"." + b64url(orjson.dumps(claims))
        return (signing_input + b"." + b64url(self._signature(signing_input))).decode("ascii")

    def _signature(self, signing_input: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(signing_input, _ES256))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return key.sign(signing_input, _PKCS1, _SHA256)
