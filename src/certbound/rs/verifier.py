"""Verifying a JWT access token (RFC 9068) and its certificate binding (RFC 8705 s. 3).

:class:`AccessTokenVerifier` checks, in order: the compact JWS form; ``alg`` in the
allow-list the verifier was built with (never taken from the token: ``none`` and HS* are
refused whatever the key); ``typ`` ``at+jwt``; ``kid`` in the issuer's JWKS (one refetch
on an unknown kid) with a key of the algorithm's type; the signature; the required claims;
``iss`` exact; ``aud`` containing the audience; ``exp`` / ``nbf`` / ``iat`` against the
injected clock with ``leeway``; then the binding: ``cnf.x5t#S256`` against the SHA-256 of
the presented certificate. Every refusal is a :class:`TokenRejected` with a reason code.

The signature is checked with ``cryptography`` directly on the parsed JWK (joserfc imports
the keys): a check is one signature verification plus a few dictionary look-ups, which keeps
it within the 0.1 ms budget (``bench/rs_bench.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from certbound.clock import Clock
from certbound.errors import ReasonCode
from certbound.rs.binding import binding_problem, cnf_thumbprint
from certbound.rs.jwks import JwksSource, VerificationKey

MAX_TOKEN_CHARS = 16 * 1024
TYPES = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")


@dataclass(frozen=True, slots=True)
class _Alg:
    kty: str
    curve: str | None
    size: int  # EC: bytes of r and of s
    hash: hashes.HashAlgorithm
    pss: bool = False


SUPPORTED: dict[str, _Alg] = {
    "ES256": _Alg("EC", "P-256", 32, hashes.SHA256()),
    "ES384": _Alg("EC", "P-384", 48, hashes.SHA384()),
    "RS256": _Alg("RSA", None, 0, hashes.SHA256()),
    "PS256": _Alg("RSA", None, 0, hashes.SHA256(), pss=True),
}


class TokenRejected(Exception):  # noqa: N818 (the contract's name)
    """A refused token: ``reason`` (catalogue code), ``error`` (the RFC 6750 error code,
    ``invalid_token``) and ``description`` (what was wrong, safe to send to the client)."""

    def __init__(
        self, reason: ReasonCode, description: str, *, error: str = "invalid_token"
    ) -> None:
        super().__init__(f"{reason.value}: {description}")
        self.reason = reason
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token."""

    claims: dict[str, Any]
    subject: str
    client_id: str
    scope: tuple[str, ...]
    cnf_x5t_s256: str | None


def _invalid(description: str) -> TokenRejected:
    return TokenRejected(ReasonCode.TOKEN_INVALID, description)


def _b64(part: str, what: str) -> bytes:
    if "=" in part:
        raise _invalid(f"the token's {what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise _invalid(f"the token's {what} is not base64url") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64(part, what))
    except ValueError:
        raise _invalid(f"the token's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _invalid(f"the token's {what} is not a JSON object")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class AccessTokenVerifier:
    """Verifies access tokens of ``issuer`` for ``audience`` against ``jwks``."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks: JwksSource,
        algorithms: Sequence[str] = ("ES256", "RS256"),
        leeway: int = 30,
        clock: Clock | None = None,
        require_binding: bool = False,
    ) -> None:
        unknown = [alg for alg in algorithms if alg not in SUPPORTED]
        if unknown or not algorithms:
            raise ValueError(
                f"algorithms must be a non-empty subset of {sorted(SUPPORTED)}; got {unknown}"
            )
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.require_binding = require_binding
        self._jwks = jwks
        self._clock = clock

    def verify(
        self, token: str, client_certificate: bytes | None, *, offline: bool = False
    ) -> AccessToken:
        """The verified token; ``client_certificate``: DER of the presented leaf, or None.
        Raises :class:`TokenRejected`; with ``offline``, WouldBlockError when the JWKS must
        be fetched first; JwksUnavailableError when it cannot be."""
        header_part, payload_part, signature_part = self._split(token)
        header = _json_object(header_part, "header")
        alg = self._algorithm(header)
        key = self._key(header, alg, offline)
        signature = _b64(signature_part, "signature")
        signed = f"{header_part}.{payload_part}".encode("ascii")
        if not _signature_valid(key.key, SUPPORTED[alg], signature, signed):
            raise _invalid(f"bad signature (kid {key.kid}, {alg})")
        claims = _json_object(payload_part, "payload")
        self._check_claims(claims)
        return self._bound(claims, client_certificate)

    def _split(self, token: str) -> tuple[str, str, str]:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise _invalid("the token is not a compact JWS of at most 16 KiB of ASCII")
        parts = token.split(".")
        if len(parts) != 3:
            detail = "encrypted (JWE)" if len(parts) == 5 else f"{len(parts)} parts"
            raise _invalid(f"the token is not a signed JWT in compact form ({detail})")
        return parts[0], parts[1], parts[2]

    def _algorithm(self, header: dict[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            allowed = ", ".join(self.algorithms)
            raise _invalid(f"algorithm {alg!r} is not allowed (this resource accepts {allowed})")
        if "crit" in header:
            raise _invalid("the token header has crit extensions this resource does not know")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in TYPES:
            raise _invalid(f"typ {typ!r} is not at+jwt: not an RFC 9068 access token")
        return alg

    def _key(self, header: dict[str, Any], alg: str, offline: bool) -> VerificationKey:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("the token header has no kid")
        key = self._jwks.key(kid, offline=offline)
        if key is None:
            raise _invalid(f"kid {kid!r} is not in the issuer's JWKS")
        spec = SUPPORTED[alg]
        if key.kty != spec.kty or (spec.curve and key.curve != spec.curve):
            raise _invalid(f"key {kid} ({key.kty} {key.curve or ''}) cannot verify {alg}")
        if key.alg is not None and key.alg != alg:
            raise _invalid(f"key {kid} is for {key.alg}, the token says {alg}")
        return key

    def _check_claims(self, claims: dict[str, Any]) -> None:
        missing = [name for name in REQUIRED if name not in claims]
        if missing:
            raise _invalid(f"required claim(s) missing: {', '.join(missing)}")
        for name in ("iss", "sub", "jti", "client_id"):
            if not isinstance(claims[name], str):
                raise _invalid(f"claim {name} is not a string")
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _number(claims[name]):
                raise _invalid(f"claim {name} is not a number")
        if claims["iss"] != self.issuer:
            raise _invalid(f"issuer {claims['iss']!r} is not {self.issuer!r}")
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in audiences:
            raise _invalid(f"audience {aud!r} does not include {self.audience!r}")
        self._check_times(claims)

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock.now().timestamp() if self._clock is not None else time.time()
        if now >= claims["exp"] + self.leeway:
            raise TokenRejected(
                ReasonCode.TOKEN_EXPIRED,
                f"the token expired {int(now - claims['exp'])} s ago (exp {claims['exp']})",
            )
        nbf = claims.get("nbf")
        if nbf is not None and now + self.leeway < nbf:
            raise _invalid(f"the token is not valid before {nbf} ({int(nbf - now)} s from now)")
        if now + self.leeway < claims["iat"]:
            raise _invalid(f"the token was issued in the future (iat {claims['iat']})")

    def _bound(self, claims: dict[str, Any], certificate: bytes | None) -> AccessToken:
        try:
            thumbprint = cnf_thumbprint(claims)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        if thumbprint is not None:
            problem = binding_problem(thumbprint, certificate)
            if problem is not None:
                raise TokenRejected(*problem)
        elif self.require_binding:
            raise _invalid(
                "the token is not certificate-bound (no cnf.x5t#S256), and this "
                "resource accepts only bound tokens"
            )
        scope = claims.get("scope")
        return AccessToken(
            claims=claims,
            subject=claims["sub"],
            client_id=claims["client_id"],
            scope=tuple(scope.split()) if isinstance(scope, str) else (),
            cnf_x5t_s256=thumbprint,
        )


def _signature_valid(key: Any, alg: _Alg, signature: bytes, signed: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 2 * alg.size:
                return False
            r = int.from_bytes(signature[: alg.size], "big")
            s = int.from_bytes(signature[alg.size :], "big")
            key.verify(utils.encode_dss_signature(r, s), signed, ec.ECDSA(alg.hash))
        elif isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(alg.hash), alg.hash.digest_size)
                if alg.pss
                else padding.PKCS1v15()
            )
            key.verify(signature, signed, pad, alg.hash)
        else:
            return False
    except InvalidSignature:
        return False
    return True
