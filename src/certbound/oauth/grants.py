"""The ``oauth_grants`` table: authorization codes and refresh tokens, stored by hash.

A grant's value (a code or a refresh token) is 32 random bytes, base64url; only its SHA-256
hex is stored, so a copy of the database redeems nothing. Every grant belongs to a
``family``: the code and every refresh token rotated from the tokens issued for it. The
``data`` JSON holds what the grant carries (scope, redirect URI, PKCE challenge, nonce,
``auth_time``) and ``access``: the ``jti`` and ``exp`` of the access tokens issued with it, so
that revoking a family (a replayed code, a reused refresh token, RFC 7009 revocation) also
revokes those access tokens (:class:`~certbound.oauth.rfc7009.Revocations`).

:meth:`Grants.claim` marks a grant used with one conditional ``UPDATE`` (``used_at IS NULL``):
of two concurrent redemptions exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from certbound.clock import Clock, as_utc
from certbound.oauth.rfc7009 import Revocations
from certbound.storage.database import Database
from certbound.storage.models import OAuthGrant

CODE, REFRESH = "code", "refresh"
VALUE_BYTES = 32


def new_value() -> str:
    """A new code or refresh token: 32 random bytes, base64url (43 characters)."""
    return secrets.token_urlsafe(VALUE_BYTES)


def digest(value: str) -> str:
    """How a grant is stored and looked up: the SHA-256 hex of its value."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def new_family() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class IssuedAccess:
    """An access token issued with a grant: what revoking it needs."""

    jti: str
    expires: int  # exp, seconds since the epoch

    def to_dict(self) -> dict[str, Any]:
        return {"jti": self.jti, "exp": self.expires}


@dataclass(frozen=True, slots=True)
class Grant:
    """A stored grant (never its value)."""

    token_hash: str
    kind: str
    family: str
    client_id: str
    user_id: str | None
    cnf: str | None
    data: Mapping[str, Any]
    created: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def expired(self, now: dt.datetime) -> bool:
        return as_utc(self.expires_at) <= now


def _grant(row: OAuthGrant) -> Grant:
    return Grant(
        token_hash=row.token_hash,
        kind=row.kind,
        family=row.family,
        client_id=row.client_id,
        user_id=row.user_id,
        cnf=row.cnf,
        data=json.loads(row.data),
        created=row.created,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked_at=row.revoked_at,
    )


@dataclass(frozen=True, slots=True)
class NewGrant:
    """A grant to store: its value is hashed by :meth:`Grants.add`."""

    value: str
    kind: str
    family: str
    client_id: str
    user_id: str | None
    cnf: str | None
    data: Mapping[str, Any]
    lifetime: int  # seconds


class Grants:
    """The ``oauth_grants`` table, and the revocation of a family's access tokens."""

    def __init__(self, db: Database, clock: Clock, revocations: Revocations) -> None:
        self._db = db
        self._clock = clock
        self._revocations = revocations

    def add(self, grant: NewGrant) -> None:
        with self._db.session() as session:
            session.add(self._row(grant, self._clock.now()))

    def find(self, value: str, kind: str) -> Grant | None:
        """The grant of this kind with this value, None when there is none."""
        with self._db.session() as session:
            row = session.get(OAuthGrant, digest(value))
            if row is None or row.kind != kind:
                return None
            return _grant(row)

    def claim(
        self,
        grant: Grant,
        issued: Sequence[IssuedAccess],
        successor: NewGrant | None = None,
    ) -> bool:
        """Mark ``grant`` used, record the access tokens issued for it, and store its
        ``successor`` (a refresh token), in one transaction. False (nothing changed) when it
        was used or revoked meanwhile."""
        now = self._clock.now()
        data = dict(grant.data)
        data["access"] = [*data.get("access", ()), *(item.to_dict() for item in issued)]
        with self._db.session() as session:
            done = session.execute(
                update(OAuthGrant)
                .where(
                    OAuthGrant.token_hash == grant.token_hash,
                    OAuthGrant.used_at.is_(None),
                    OAuthGrant.revoked_at.is_(None),
                )
                .values(used_at=now, data=json.dumps(data, sort_keys=True))
            )
            if int(done.rowcount or 0) != 1:  # type: ignore[attr-defined]
                return False  # nothing was changed
            if successor is not None:
                session.add(self._row(successor, now))
        return True

    def revoke_family(self, family: str, client_id: str) -> int:
        """Revoke every grant of ``family`` (issued to ``client_id``) and the access tokens
        issued with them; the number of grants newly revoked."""
        now = self._clock.now()
        with self._db.session() as session:
            rows = _family(session, family, client_id)
            issued = [item for row in rows for item in json.loads(row.data).get("access", ())]
            fresh = [row for row in rows if row.revoked_at is None]
            for row in fresh:
                row.revoked_at = now
        for item in issued:
            expires = dt.datetime.fromtimestamp(int(item["exp"]), dt.UTC)
            if expires > now:
                self._revocations.revoke(str(item["jti"]), client_id, expires)
        return len(fresh)

    def _row(self, grant: NewGrant, now: dt.datetime) -> OAuthGrant:
        if grant.lifetime <= 0:
            raise ValueError("a grant's lifetime must be positive")
        return OAuthGrant(
            token_hash=digest(grant.value),
            kind=grant.kind,
            family=grant.family,
            client_id=grant.client_id,
            user_id=grant.user_id,
            cnf=grant.cnf,
            data=json.dumps(dict(grant.data), sort_keys=True),
            created=now,
            expires_at=now + dt.timedelta(seconds=grant.lifetime),
            used_at=None,
            revoked_at=None,
        )


def _family(session: Session, family: str, client_id: str) -> list[OAuthGrant]:
    query = select(OAuthGrant).where(OAuthGrant.family == family, OAuthGrant.client_id == client_id)
    return list(session.scalars(query))
