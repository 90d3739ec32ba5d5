"""Token introspection (RFC 7662) of this server's own access tokens, with their binding.

:func:`read_own_token` checks that a token is one this server issued and still honours: a
JWT signed by one of the published signing keys with an allowed algorithm (the list is ours,
never the token's), ``typ`` ``at+jwt``, this issuer, not expired, not revoked. Anything else
is simply inactive: introspection never says why (RFC 7662 section 2.2), the System Log does.
A refresh token (opaque) is active while it is neither used, revoked nor expired; its
response names its client, user, scope and lifetime, and its binding as ``cnf``.
:func:`introspection` is the response: ``active`` and, when active, the claims a resource
server needs, including ``cnf`` (RFC 8705 section 3.2), so it can compare the certificate the
token came with.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from certbound.oauth.keys import SigningKeys
from certbound.oauth.refresh import RefreshTokens
from certbound.oauth.rfc7009 import Revocations

ALGORITHMS = ("ES256", "RS256")
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "cnf")


def read_own_token(
    token: str, keys: SigningKeys, issuer: str, now: dt.datetime
) -> dict[str, Any] | None:
    """The claims of one of this server's valid access tokens (revocation not checked)."""
    try:
        decoded = jwt.decode(token, keys.verification_keys(), algorithms=ALGORITHMS)
    except (JoseError, ValueError, TypeError):
        return None
    if decoded.header.get("typ") not in ACCESS_TOKEN_TYPES:
        return None
    claims = decoded.claims
    expires = claims.get("exp")
    if claims.get("iss") != issuer or not isinstance(expires, int | float):
        return None
    if expires <= now.timestamp() or not isinstance(claims.get("jti"), str):
        return None
    return dict(claims)


def introspection(
    token: str,
    keys: SigningKeys,
    revocations: Revocations,
    issuer: str,
    now: dt.datetime,
    *,
    refresh: RefreshTokens | None = None,
) -> dict[str, Any]:
    """The RFC 7662 response for ``token``: one of our access tokens, or (with
    ``refresh``) one of our refresh tokens (``token_type: refresh_token``, its ``cnf``)."""
    if refresh is not None and "." not in token:
        return refresh.introspect(token) or {"active": False}
    claims = read_own_token(token, keys, issuer, now)
    if claims is None or revocations.is_revoked(claims["jti"]):
        return {"active": False}
    body: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    body.update({name: claims[name] for name in _CLAIMS if name in claims})
    return body
