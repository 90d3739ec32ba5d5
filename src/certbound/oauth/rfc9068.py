"""RFC 9068 JWT access tokens, certificate-bound per RFC 8705 section 3.

A token is a JWS (compact form) with header ``{"typ": "at+jwt", "alg", "kid"}`` and the
claims ``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``nbf``, ``jti`` (random), ``client_id``
and ``scope``; issued over mTLS it also carries ``cnf: {"x5t#S256": ...}``, the base64url
SHA-256 of the client certificate's DER (:func:`certbound.pki.certificate.x5t_s256`). The
resource-server side (verification) is :mod:`certbound.rs`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from certbound.randomness import random_token

if TYPE_CHECKING:
    from certbound.oauth.keys import SigningKey

TYP = "at+jwt"
# Claims this module sets; ``extra`` may not override them.
REGISTERED = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "cnf"}
)


def access_token_claims(
    *,
    issuer: str,
    client_id: str,
    subject: str,
    audience: str | Sequence[str],
    scope: str,
    lifetime: int,
    now: dt.datetime,
    cnf_x5t_s256: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The claims set of a new access token (``jti`` random)."""
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    clash = REGISTERED & set(extra or ())
    if clash:
        raise ValueError(f"extra claims may not set {', '.join(sorted(clash))}")
    iat = int(now.timestamp())
    aud: str | list[str] = audience if isinstance(audience, str) else list(audience)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": aud,
        "exp": iat + lifetime,
        "iat": iat,
        "nbf": iat,
        "jti": random_token(18),
        "client_id": client_id,
        "scope": scope,
    }
    if cnf_x5t_s256 is not None:
        claims["cnf"] = {"x5t#S256": cnf_x5t_s256}
    claims.update(extra or {})
    return claims


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    client_id: str,
    subject: str,
    audience: str | Sequence[str],
    scope: str,
    lifetime: int,
    now: dt.datetime,
    cnf_x5t_s256: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign a new access token with ``key``; returns the compact JWS and its claims."""
    claims = access_token_claims(
        issuer=issuer,
        client_id=client_id,
        subject=subject,
        audience=audience,
        scope=scope,
        lifetime=lifetime,
        now=now,
        cnf_x5t_s256=cnf_x5t_s256,
        extra=extra,
    )
    return key.signer.sign(claims, TYP), claims
