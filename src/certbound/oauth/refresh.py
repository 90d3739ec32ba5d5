"""Refresh tokens (RFC 6749 section 6): opaque, rotated on every use, bound per RFC 8705.

A refresh token is 32 random bytes (base64url), stored hashed (:mod:`certbound.oauth.grants`)
in the family of the authorization code it descends from, and lives
``refresh_token_seconds`` from its issue (each rotation starts a new lifetime).

- **Rotation**: every use marks the token used and issues its successor in the same family.
  A used token presented again means two parties hold it: the whole family is revoked (the
  newest refresh token and the access tokens issued with the family included) and the
  request is refused ``invalid_grant`` REFRESH_TOKEN_REUSED (OAuth 2.0 Security BCP, RFC 9700
  section 4.14.2).
- **Binding** (RFC 8705 section 4): a refresh token issued to a client that came over mutual
  TLS with certificate-bound tokens carries that certificate's ``x5t#S256``. Redeeming it
  without a certificate is ``invalid_grant`` TOKEN_BINDING_MISSING, with another one
  TOKEN_BINDING_MISMATCH; neither consumes the token. The access token it yields is bound to
  the same certificate. (For confidential clients RFC 8705 lets client authentication alone
  bind the refresh token; this server binds them to the certificate as well, so a client
  that replaces its certificate signs in again.)
- **Scope**: a refresh request may narrow the scope, never widen it (``invalid_scope``); the
  successor keeps the original scope.
- **Revocation** (RFC 7009): :meth:`RefreshTokens.revoke` revokes the token's family.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certbound.clock import Clock, as_utc
from certbound.errors import ReasonCode
from certbound.oauth.errors import OAuthError, invalid_request
from certbound.oauth.grants import REFRESH, Grant, Grants, IssuedAccess, NewGrant, new_value


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """A refresh token that passed every check but single use, and what it grants."""

    grant: Grant
    user_id: str
    scope: str  # the scope granted now (the original, or a narrower one requested)
    auth_time: int | None

    @property
    def family(self) -> str:
        return self.grant.family

    @property
    def original_scope(self) -> str:
        return str(self.grant.data.get("scope", ""))


def _invalid_grant(reason: ReasonCode, description: str) -> OAuthError:
    return OAuthError("invalid_grant", reason, description)


class RefreshTokens:
    """Issues, checks, rotates and revokes refresh tokens (``lifetime`` seconds)."""

    def __init__(self, grants: Grants, clock: Clock, *, lifetime: int) -> None:
        if lifetime <= 0:
            raise ValueError("a refresh token's lifetime must be positive")
        self._grants = grants
        self._clock = clock
        self._lifetime = lifetime

    def new(
        self,
        *,
        client_id: str,
        user_id: str,
        family: str,
        cnf: str | None,
        scope: str,
        auth_time: int | None,
    ) -> tuple[str, NewGrant]:
        """A new refresh token: the value, and the row :meth:`Grants.claim` stores (the
        access tokens issued with it are recorded on the grant it was issued for)."""
        value = new_value()
        data = {"scope": scope, "auth_time": auth_time}
        return value, NewGrant(
            value, REFRESH, family, client_id, user_id, cnf, data, self._lifetime
        )

    def check(
        self, client_id: str, form: Mapping[str, str], presented_cnf: str | None
    ) -> RefreshGrant:
        """The request's refresh token for ``client_id``, presented over a connection whose
        client certificate has ``presented_cnf`` (None: no certificate)."""
        value = form.get("refresh_token")
        if not value:
            raise invalid_request("refresh_token is required for the refresh_token grant")
        grant = self._grants.find(value, REFRESH)
        if grant is None or grant.client_id != client_id:
            raise _invalid_grant(
                ReasonCode.GRANT_INVALID, "the refresh token is unknown or another client's"
            )
        if grant.revoked_at is not None:
            raise _invalid_grant(ReasonCode.GRANT_INVALID, "the refresh token was revoked")
        if grant.used_at is not None:
            self._grants.revoke_family(grant.family, client_id)
            raise _reused()
        if grant.expired(self._clock.now()):
            raise _invalid_grant(ReasonCode.GRANT_INVALID, "the refresh token has expired")
        _check_binding(grant.cnf, presented_cnf)
        return RefreshGrant(
            grant,
            user_id=str(grant.user_id),
            scope=_narrowed(str(grant.data.get("scope", "")), form.get("scope")),
            auth_time=grant.data.get("auth_time"),
        )

    def rotate(
        self, refresh: RefreshGrant, issued: Sequence[IssuedAccess], successor: NewGrant
    ) -> None:
        """Mark the token used and store its successor; a token used meanwhile (a
        concurrent reuse) revokes the family and refuses."""
        if not self._grants.claim(refresh.grant, issued, successor):
            self._grants.revoke_family(refresh.family, refresh.grant.client_id)
            raise _reused()

    def introspect(self, value: str) -> dict[str, Any] | None:
        """RFC 7662 members of an active refresh token (not used, revoked or expired), with
        its binding as ``cnf``; None when it is not one."""
        if not value or "." in value:  # ours are opaque; a JWT is an access token
            return None
        grant = self._grants.find(value, REFRESH)
        now = self._clock.now()
        if grant is None or grant.used_at or grant.revoked_at or grant.expired(now):
            return None
        body: dict[str, Any] = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": grant.client_id,
            "sub": grant.user_id,
            "scope": str(grant.data.get("scope", "")),
            "iat": int(as_utc(grant.created).timestamp()),
            "exp": int(as_utc(grant.expires_at).timestamp()),
        }
        if grant.cnf:
            body["cnf"] = {"x5t#S256": grant.cnf}
        return body

    def revoke(self, value: str, client_id: str) -> str | None:
        """RFC 7009: revoke the family of ``client_id``'s refresh token ``value``; its
        family id, or None when it is not one of that client's refresh tokens."""
        grant = self._grants.find(value, REFRESH)
        if grant is None or grant.client_id != client_id:
            return None
        self._grants.revoke_family(grant.family, client_id)
        return grant.family


def _reused() -> OAuthError:
    return _invalid_grant(
        ReasonCode.REFRESH_TOKEN_REUSED,
        "the refresh token was already used: its whole family is revoked; sign in again",
    )


def _check_binding(bound: str | None, presented: str | None) -> None:
    if bound is None:
        return
    if presented is None:
        raise _invalid_grant(
            ReasonCode.TOKEN_BINDING_MISSING,
            "the refresh token is bound to a client certificate: present it (mutual TLS)",
        )
    if not hmac.compare_digest(bound.encode(), presented.encode()):
        raise _invalid_grant(
            ReasonCode.TOKEN_BINDING_MISMATCH,
            "the refresh token is bound to another client certificate",
        )


def _narrowed(original: str, requested: str | None) -> str:
    """RFC 6749 section 6: the requested scope must be within the original grant's."""
    if requested is None:
        return original
    granted = original.split()
    wanted = requested.split()
    extra = [item for item in wanted if item not in granted]
    if extra:
        raise OAuthError(
            "invalid_scope",
            ReasonCode.SCOPE_NOT_ALLOWED,
            f"scope(s) {' '.join(extra)} were not granted with this refresh token",
        )
    return " ".join(dict.fromkeys(wanted))
