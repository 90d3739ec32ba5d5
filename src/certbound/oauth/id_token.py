"""OpenID Connect ID tokens (OpenID Connect Core 1.0 sections 2 and 3.1.3.6).

Issued by the code flow (and on refresh) when the granted scope holds ``openid``: a JWS with
header ``{"typ": "JWT", "alg", "kid"}``, signed with the active signing key (ES256 unless it
was rotated to RS256), and the claims ``iss``, ``sub`` (the user id), ``aud`` (the
client_id), ``azp``, ``exp``, ``iat``, ``auth_time`` (when the user signed in), ``nonce``
(the authorization request's, when it sent one) and ``at_hash``: the base64url left half of
the SHA-256 of the access token issued with it (both algorithms hash with SHA-256). With the
``email`` scope it adds ``email``; with ``profile``, ``preferred_username`` and ``name``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certbound.oauth.keys import SigningKey

TYP = "JWT"
_HASHES = {"ES256": hashlib.sha256, "RS256": hashlib.sha256}


def at_hash(access_token: str, alg: str) -> str:
    """OpenID Connect Core 3.1.3.6: base64url of the left half of the hash of the access
    token's ASCII, with the hash of the ID token's ``alg``."""
    digest = _HASHES[alg](access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the ID token is about: the user's id and the profile claims scopes may add."""

    subject: str
    username: str | None = None
    email: str | None = None
    display_name: str | None = None

    def claims(self, scope: str) -> dict[str, Any]:
        granted = scope.split()
        out: dict[str, Any] = {}
        if "email" in granted and self.email:
            out["email"] = self.email
        if "profile" in granted:
            if self.username:
                out["preferred_username"] = self.username
            if self.display_name:
                out["name"] = self.display_name
        return out


def id_token_claims(
    *,
    issuer: str,
    identity: Identity,
    client_id: str,
    scope: str,
    auth_time: int | None,
    nonce: str | None,
    access_token: str,
    alg: str,
    lifetime: int,
    now: dt.datetime,
) -> dict[str, Any]:
    """The claims set of a new ID token."""
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    iat = int(now.timestamp())
    claims: dict[str, Any] = {
        **identity.claims(scope),
        "iss": issuer,
        "sub": identity.subject,
        "aud": client_id,
        "azp": client_id,
        "exp": iat + lifetime,
        "iat": iat,
        "at_hash": at_hash(access_token, alg),
    }
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if nonce is not None:
        claims["nonce"] = nonce
    return claims


def issue_id_token(
    key: SigningKey,
    *,
    issuer: str,
    identity: Identity,
    client_id: str,
    scope: str,
    auth_time: int | None,
    nonce: str | None,
    access_token: str,
    lifetime: int,
    now: dt.datetime,
) -> tuple[str, dict[str, Any]]:
    """Sign a new ID token with ``key``; returns the compact JWS and its claims."""
    claims = id_token_claims(
        issuer=issuer,
        identity=identity,
        client_id=client_id,
        scope=scope,
        auth_time=auth_time,
        nonce=nonce,
        access_token=access_token,
        alg=key.alg,
        lifetime=lifetime,
        now=now,
    )
    return key.signer.sign(claims, TYP), claims
